"""One structure rendered under a dozen random augmentations, stacked, for eyes to check."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch

from xrdid.instrument import Augment, Instrument, Renderer, StickBatch, get_instrument
from xrdid.io import atomic_path


def plot_augmentations(
    sticks_row_d,
    f2m,
    instrument: Instrument | str | dict,
    augment: Augment | dict | None,
    out_png: str | Path,
    n: int = 12,
    seed: int = 0,
    *,
    title: str | None = None,
) -> None:
    """Write ``out_png``: the clean pattern (bottom, black) and ``n`` augmented renders offset above it.

    sticks_row_d, f2m: one structure's sticks (d in Å, |F|²·multiplicity), any array-like.
    Cropped (masked) parts of each trace are left out and shaded grey; stick positions of the primary
    wavelength are marked under the clean trace.
    """
    inst = get_instrument(instrument)
    aug = augment if isinstance(augment, Augment) else Augment.from_dict(augment)
    d = torch.as_tensor(np.asarray(sticks_row_d, dtype=np.float32)).reshape(1, -1)
    f = torch.as_tensor(np.asarray(f2m, dtype=np.float32)).reshape(1, -1)
    gen = torch.Generator().manual_seed(seed)
    clean, _ = Renderer(inst, Augment(enabled=False))(StickBatch(d, f))
    y, mask = Renderer(inst, aug)(StickBatch(d.expand(n, -1), f.expand(n, -1)), gen)
    grid = inst.grid()
    offset = 1.1
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.62 * (n + 1)))
    colours = plt.cm.viridis(np.linspace(0.05, 0.85, n))
    for i in range(n):
        base = offset * (i + 1)
        yi = np.where(mask[i].numpy() > 0, y[i].numpy(), np.nan)
        ax.plot(grid, base + yi, lw=0.7, color=colours[i])
        cut = mask[i].numpy() == 0
        if cut.any():
            ax.fill_between(grid, base, base + 1, where=cut, color="0.85", lw=0, step="mid")
        ax.text(grid[-1] + 0.01 * (grid[-1] - grid[0]), base + 0.1, f"#{i + 1}", fontsize=8, va="bottom")
    ax.plot(grid, clean[0].numpy(), lw=0.8, color="black")
    ax.text(grid[-1] + 0.01 * (grid[-1] - grid[0]), 0.1, "clean", fontsize=8, va="bottom")
    lam = inst.wavelengths_A[0]
    s = lam / (2 * d[0].numpy())
    ok = (f[0].numpy() > 0) & (s < 1)
    tt = np.degrees(2 * np.arcsin(s[ok]))
    tt = tt[(tt >= grid[0]) & (tt <= grid[-1])]
    ax.vlines(tt, -0.12, -0.04, color="crimson", lw=0.6)
    ax.set_xlim(grid[0], grid[-1] + 0.06 * (grid[-1] - grid[0]))
    ax.set_ylim(-0.2, offset * (n + 1) + 0.1)
    ax.set_yticks([])
    ax.set_xlabel(f"2θ (°), λ = {', '.join(f'{v:.4f}' for v in inst.wavelengths_A)} Å")
    ax.set_ylabel("intensity (normalised, offset)")
    ax.set_title(title or f"{inst.name}: {n} random augmentations (seed {seed}); grey = cropped, red = sticks")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_augmentations_from_table(
    sticks: str | Path, instrument: Instrument | str | dict, augment: Augment | dict | None, out_png: str | Path, *, seed: int = 0
) -> str:
    """The augmentation figure for one structure of a sticks table: the first test-split structure with
    at least 10 sticks in range (ids sorted, so the choice is stable). Returns its id."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    inst = get_instrument(instrument)
    table = pq.read_table(sticks, columns=["id", "formula", "space_group", "d", "f2m", "split"])
    table = table.filter(pc.equal(table["split"], "test")) if "test" in set(table["split"].to_pylist()) else table
    rows = sorted(table.to_pylist(), key=lambda r: r["id"])
    if not rows:
        raise ValueError(f"{sticks}: no structures to draw")
    pick = next((r for r in rows if sum(d >= inst.d_min_A for d in r["d"]) >= 10), rows[0])
    title = f"{pick['formula']} ({pick['id']}, space group {pick['space_group']}) on {inst.name}: clean and {12} augmented"
    plot_augmentations(pick["d"], pick["f2m"], inst, augment, out_png, n=12, seed=seed, title=title)
    return pick["id"]
