"""The figure of a mixture fit: measured, calculated, each phase's contribution, the difference curve,
tick marks per phase and the unexplained peaks (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np

from xrdid.io import atomic_path
from xrdid.mixtures.fit import MixtureFit


def fit_figure(fit: MixtureFit, title: str = ""):
    """A matplotlib Figure: the fit on top (phase contributions over the background), the difference
    y_obs − y_calc below it, and a row of tick marks per phase (with its weight fraction) under that."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(fit.phases)
    fig = plt.figure(figsize=(11, 6.5 + 0.25 * n))
    gs = fig.add_gridspec(3, 1, height_ratios=[5, 1.4, 0.35 + 0.3 * max(n, 1)], hspace=0.06)
    ax, axd, axt = (fig.add_subplot(gs[i]) for i in range(3))
    x = fit.two_theta
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ax.plot(x, fit.y_obs, lw=0.6, color="0.15", label="measured")
    ax.plot(x, fit.y_calc, lw=0.8, color="tab:red", label=f"fit (Rwp {fit.rwp:.3f})")
    ax.plot(x, fit.background, lw=0.8, color="0.55", ls="--", label="background")
    curves = fit.phase_curves if fit.phase_curves is not None else np.zeros((0, x.size))
    for i, (p, c) in enumerate(zip(fit.phases, curves)):
        ax.plot(x, fit.background + c, lw=0.7, color=colours[(i + 2) % len(colours)],
                label=f"{p.formula} ({p.space_group or '?'}) {100 * p.weight_fraction:.1f} wt%")
    if fit.stand_in_curves is not None:
        for p, c in zip(fit.stand_ins, fit.stand_in_curves):
            ax.plot(x, fit.background + c, lw=0.7, color="0.45", ls="-.",
                    label=f"{p.formula} ({p.space_group or '?'}): withdrawn, a stand-in")
    for u in fit.unexplained:
        ax.axvline(u["two_theta_deg"], color="tab:purple", lw=0.6, ls=":", alpha=0.8)
    if fit.unexplained:
        ax.plot([], [], color="tab:purple", lw=0.6, ls=":", label=f"unexplained peaks ({len(fit.unexplained)})")
    ax.set_ylabel("intensity")
    ax.legend(fontsize=8, loc="upper right")
    # A long verdict (a stand-in withdrawn, unexplained peaks) wraps instead of running off the figure.
    ax.set_title("\n".join(textwrap.wrap(title + (": " if title else "") + fit.verdict, 150)), fontsize=9)
    diff = fit.y_obs - fit.y_calc
    axd.plot(x, diff, lw=0.6, color="tab:blue")
    axd.axhline(0, color="0.5", lw=0.5)
    axd.set_ylabel("obs − calc", fontsize=8)
    for i, ticks in enumerate(fit.ticks):
        if ticks:
            t = np.asarray(ticks)
            strong = t[:, 1] >= 1.0  # reflections above 1 % of the phase's strongest
            axt.vlines(t[strong, 0], n - i - 0.85, n - i - 0.85 + 0.25 + 0.5 * t[strong, 1] / 100,
                       color=colours[(i + 2) % len(colours)], lw=0.8)
    axt.set_ylim(0, max(n, 1))
    axt.set_yticks([n - i - 0.5 for i in range(n)], [p.formula for p in fit.phases], fontsize=7)
    axt.set_xlabel("2θ (°)")
    for a in (ax, axd, axt):
        a.set_xlim(x[0], x[-1])
    for a in (ax, axd):
        a.tick_params(labelbottom=False)
    return fig


def save_fit_figure(fit: MixtureFit, out: str | os.PathLike, title: str = "") -> Path:
    """Write :func:`fit_figure` to ``out`` (format from the extension), atomically."""
    import matplotlib.pyplot as plt

    out = Path(out)
    fig = fit_figure(fit, title)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=110, format=out.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return out


def fit_figure_data_url(fit: MixtureFit, title: str = "") -> str:
    """:func:`fit_figure` as a ``data:image/png;base64,…`` URL (for the web page)."""
    import base64
    import io

    import matplotlib.pyplot as plt

    fig = fit_figure(fit, title)
    try:
        buf = io.BytesIO()
        fig.savefig(buf, dpi=90, format="png")
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
