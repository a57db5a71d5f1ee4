"""Figures of the VAE: its latent map and reconstructions of test and measured patterns.

* :func:`plot_latent_map` — the posterior means μ of the test split's patterns projected on their first two
  principal components (fitted on the test patterns), coloured by crystal system, with the measured patterns
  overlaid (black stars, labelled, coloured by their novelty score's level);
* :func:`plot_reconstructions` — a few test patterns and measured patterns with the VAE's reconstruction
  (decoded from μ, squared back from √y) and their novelty score.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch

from xrdid.data import StickTable
from xrdid.instrument import Augment, Instrument, Renderer
from xrdid.io import atomic_path
from xrdid.labels import CRYSTAL_SYSTEMS
from xrdid.novelty import load_novelty
from xrdid.train.loop import model_input
from xrdid.train.vae import subset_index


def _save(fig, out) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def _test_inputs(novelty, sticks, limit: int, seed: int):
    inst = Instrument.from_dict(novelty.meta["instrument"])
    table = StickTable.from_parquet(sticks, split="test", d_min_A=inst.d_min_A)
    if len(table) > limit:
        keep = torch.randperm(len(table), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        table = subset_index(table, keep)
    renderer = Renderer(inst, Augment.from_dict(novelty.meta.get("augment")))
    x = torch.cat([model_input(*renderer(table.batch(torch.arange(s, min(s + 256, len(table))))[0], torch.Generator().manual_seed(seed + s)))
                   for s in range(0, len(table), 256)])
    return inst, table, x


def _measured_inputs(novelty, measured: dict | None) -> tuple[list[str], torch.Tensor | None]:
    """Names and model inputs of every classifiable pattern of the measured sets (name → {folder, labels})."""
    if not measured:
        return [], None
    from xrdid.evaluate.measured import read_measured_labels
    from xrdid.novelty import input_bundle
    from xrdid.predict import PredictionError, prepare
    from xrdid.readers import PatternError, read_pattern

    bundle = input_bundle(novelty)
    names, xs = [], []
    for spec in measured.values():
        for item in read_measured_labels(spec["folder"], spec["labels"]):
            try:
                y, mask = prepare(bundle, read_pattern(item.file, wavelength_A=item.wavelength_A), wavelength_A=item.wavelength_A)
            except (PatternError, PredictionError):
                continue
            names.append(item.file.stem.split("__")[0])
            xs.append(model_input(torch.as_tensor(y)[None], torch.as_tensor(mask)[None]))
    return names, (torch.cat(xs) if xs else None)


@torch.no_grad()
def plot_latent_map(*, vae: str | Path, sticks: str | Path, out: str | Path, measured: dict | None = None,
                    limit: int = 3000, seed: int = 5) -> None:
    """The latent map of the module docstring."""
    novelty = load_novelty(vae)
    _inst, table, x = _test_inputs(novelty, sticks, limit, seed)
    mu = novelty.vae.encode(x)[0]
    centre = mu.mean(0)
    _u, _s, v = torch.pca_lowrank(mu - centre, q=2, center=False)
    xy = ((mu - centre) @ v).numpy()
    fig, ax = plt.subplots(figsize=(8, 6.5))
    colours = plt.get_cmap("tab10")
    for c, name in enumerate(CRYSTAL_SYSTEMS):
        sel = (table.crystal_system == c).numpy()
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.5, color=colours(c), label=f"{name} ({int(sel.sum())})")
    names, mx = _measured_inputs(novelty, measured)
    if mx is not None:
        pts = ((novelty.vae.encode(mx)[0] - centre) @ v).numpy()
        score = novelty.scores(mx)["score"]
        ax.scatter(pts[:, 0], pts[:, 1], marker="*", s=160, c=score, cmap="RdYlGn_r", vmin=0, vmax=1,
                   edgecolors="black", linewidths=0.8, label="measured (colour: novelty)", zorder=5)
        for (px, py), name in zip(pts, names):
            ax.annotate(name, (px, py), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="latent principal component 1", ylabel="latent principal component 2",
           title=f"VAE latent space: {len(table)} test patterns by crystal system")
    ax.legend(fontsize=7, markerscale=2, loc="best")
    _save(fig, out)


@torch.no_grad()
def plot_reconstructions(*, vae: str | Path, sticks: str | Path, out: str | Path, measured: dict | None = None,
                         n_test: int = 3, n_measured: int = 3, seed: int = 5) -> None:
    """Reconstructions of the module docstring: ``n_test`` test patterns, ``n_measured`` measured ones."""
    novelty = load_novelty(vae)
    inst, table, x = _test_inputs(novelty, sticks, n_test, seed)
    labels = [f"test: {table.ids[i]}" for i in range(len(table))]
    names, mx = _measured_inputs(novelty, measured)
    if mx is not None:
        x = torch.cat([x, mx[:n_measured]])
        labels += [f"measured: {n}" for n in names[:n_measured]]
    t_hat = torch.sigmoid(novelty.vae.decode(novelty.vae.encode(x)[0]))
    score = novelty.scores(x)["score"]
    grid = inst.grid()
    fig, axes = plt.subplots(len(x), 1, figsize=(9, 1.9 * len(x)), sharex=True, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        covered = x[i, 1].numpy() > 0
        y = np.where(covered, x[i, 0].numpy(), np.nan)
        ax.plot(grid, y, lw=0.7, color="black", label="pattern")
        ax.plot(grid, np.where(covered, t_hat[i].numpy() ** 2, np.nan), lw=0.9, color="tab:red", alpha=0.8, label="VAE reconstruction")
        ax.set_title(f"{labels[i]} — novelty {score[i]:.2f}", fontsize=8, loc="left")
        ax.set_ylabel("I / max", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel(f"2θ (°, λ = {inst.wavelength_A:.4f} Å)")
    fig.tight_layout()
    _save(fig, out)


def plot_vae(*, vae: str | Path, sticks: str | Path, latent_map: str | Path, reconstructions: str | Path,
             measured: dict | None = None) -> None:
    """Both figures of the module docstring (the workflow's ``plot_vae``)."""
    plot_latent_map(vae=vae, sticks=sticks, out=latent_map, measured=measured)
    plot_reconstructions(vae=vae, sticks=sticks, out=reconstructions, measured=measured)
