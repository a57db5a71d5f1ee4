"""Training curves and confusion matrices as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns

from xrdid.io import atomic_path


def _save(fig, out: str | Path) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_curves(history: str | Path, out: str | Path) -> None:
    """Loss (train and validation) and validation accuracies per epoch."""
    h = pl.read_csv(history)
    sns.set_theme(style="whitegrid", context="notebook")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(h["epoch"], h["train_loss"], marker="o", label="train")
    ax1.plot(h["epoch"], h["val_loss"], marker="o", label="validation")
    ax1.set(xlabel="epoch", ylabel="loss (space group + crystal system)", title="Loss")
    ax1.legend()
    for col, label in (
        ("val_crystal_system_acc", "crystal system"),
        ("val_space_group_top5", "space group top-5"),
        ("val_space_group_acc", "space group"),
    ):
        ax2.plot(h["epoch"], 100 * h[col], marker="o", label=label)
    ax2.set(xlabel="epoch", ylabel="validation accuracy (%)", ylim=(0, 100), title="Validation accuracy")
    ax2.legend()
    _save(fig, out)


def _read_confusion(path: str | Path) -> tuple[np.ndarray, list[str]]:
    frame = pl.read_csv(path)
    labels = frame.columns[1:]
    return frame.select(labels).to_numpy().astype(float), labels


def plot_confusion(confusion: str | Path, out: str | Path, *, title: str) -> None:
    """Row-normalised confusion matrix; a 230×230 matrix is drawn without cell annotations."""
    matrix, labels = _read_confusion(confusion)
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    sns.set_theme(style="white", context="notebook")
    small = len(labels) <= 12
    fig, ax = plt.subplots(figsize=(7.5, 6.5) if small else (11, 10))
    sns.heatmap(
        norm, ax=ax, cmap="viridis", vmin=0, vmax=1, square=True, annot=small, fmt=".2f",
        xticklabels=labels if small else 20, yticklabels=labels if small else 20,
        cbar_kws={"label": "fraction of true class"},
    )
    n = int(matrix.sum())
    acc = np.trace(matrix) / max(n, 1)
    ax.set(xlabel="predicted", ylabel="true", title=f"{title} — accuracy {100 * acc:.1f} % (n = {n})")
    if not small:
        # Ticks every 20 classes, labelled with space-group numbers.
        ticks = np.arange(0, len(labels), 20)
        ax.set_xticks(ticks + 0.5, [labels[i] for i in ticks])
        ax.set_yticks(ticks + 0.5, [labels[i] for i in ticks])
    _save(fig, out)




def plot_synthetic_vs_measured(synthetic_metrics: str | Path, measured_metrics: str | Path, out: str | Path, *, label: str) -> None:
    """Side by side: accuracy on the synthetic test split and on a measured set, and the measured
    per-crystal-system accuracy."""
    import json

    syn = json.loads(Path(synthetic_metrics).read_text())
    mea = json.loads(Path(measured_metrics).read_text())
    k = mea.get("top_k", 5)
    names = ["space group", f"space group top-{k}", "crystal system"]
    syn_vals = [syn["space_group"]["accuracy"], syn["space_group"].get(f"top{k}_accuracy", np.nan), syn["crystal_system"]["accuracy"]]
    mea_vals = [mea["space_group_accuracy"], mea["space_group_top_k_accuracy"], mea["crystal_system_accuracy"]]
    sns.set_theme(style="whitegrid", context="notebook")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
    x = np.arange(len(names))
    b1 = ax1.bar(x - 0.2, [100 * v for v in syn_vals], 0.4, label=f"synthetic test split (n = {syn['n_structures']})")
    b2 = ax1.bar(x + 0.2, [100 * v for v in mea_vals], 0.4, label=f"{label} (n = {mea['n_patterns']})")
    ax1.bar_label(b1, fmt="%.0f", fontsize=9)
    ax1.bar_label(b2, fmt="%.0f", fontsize=9)
    ax1.set_xticks(x, names)
    ax1.set(ylabel="accuracy (%)", ylim=(0, 105), title="Synthetic vs. measured")
    ax1.legend(loc="upper left", fontsize=9)
    per = mea.get("per_crystal_system", {})
    systems = list(per)
    if systems:
        vals = [100 * per[s]["crystal_system_accuracy"] for s in systems]
        bars = ax2.barh(systems, vals, color=sns.color_palette()[1])
        ax2.bar_label(bars, labels=[f"{v:.0f} % (n = {per[s]['n']})" for v, s in zip(vals, systems)], fontsize=9)
        ax2.set(xlim=(0, 125), xlabel="crystal-system accuracy (%)", title=f"{label}: per true crystal system")
        ax2.invert_yaxis()
    else:
        ax2.axis("off")
    _save(fig, out)


def plot_scaling(history: str | Path, out: str | Path) -> None:
    """Accuracy on the validation split's real structures against training patterns seen (log scale):
    the scaling curve, plain and Materials Project-weighted (``history.csv``'s ``val_real_*`` columns)."""
    h = pl.read_csv(history)
    if "val_real_space_group_acc" not in h.columns or h["val_real_space_group_acc"].null_count() == len(h):
        raise ValueError(f"{history}: no real-structure validation columns (the data has no real source)")
    if "patterns_seen" not in h.columns:
        raise ValueError(f"{history}: no patterns_seen column")
    h = h.drop_nulls("val_real_space_group_acc")
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for col, label, style in (
        ("val_real_crystal_system_acc", "crystal system", "-"),
        ("val_real_space_group_acc", "space group", "-"),
        ("val_real_mp_crystal_system_acc", "crystal system, MP-weighted", "--"),
        ("val_real_mp_space_group_acc", "space group, MP-weighted", "--"),
    ):
        ax.plot(h["patterns_seen"], 100 * h[col], style, marker="o", markersize=3, label=label)
    ax.set_xscale("log")
    ax.set(xlabel="training patterns seen", ylabel="accuracy on unseen real structures (%)", ylim=(0, 100),
           title=f"Scaling: real validation structures (n = {int(h['val_real_n'][-1])})")
    ax.legend(fontsize=8)
    _save(fig, out)


def plot_real_recall(metrics: str | Path, out: str | Path) -> None:
    """Per-crystal-system recall on the real split (Materials Project-weighted), with and without the
    label prior, one panel per instrument (``evaluate_real_split``'s JSON)."""
    import json

    data = json.loads(Path(metrics).read_text())
    instruments = data["instruments"]
    if not instruments:
        raise ValueError(f"{metrics}: no instrument was evaluated (no real structures in the split?)")
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, len(instruments), figsize=(6 * len(instruments), 4.2), squeeze=False)
    for ax, (name, res) in zip(axes[0], instruments.items(), strict=True):
        systems = list(res["with_prior"]["materials_project_weighted"]["crystal_system_recall"])
        x = np.arange(len(systems))
        for k, (label, key) in enumerate((("without prior", "without_prior"), ("with prior", "with_prior"))):
            recall = res[key]["materials_project_weighted"]["crystal_system_recall"]
            ax.bar(x + (k - 0.5) * 0.38, [100 * recall[s] for s in systems], width=0.38, label=label)
        w = res["with_prior"]["materials_project_weighted"]
        ax.set_xticks(x, systems, rotation=35, ha="right")
        ax.set(ylim=(0, 100), ylabel="recall (%), MP-weighted",
               title=f"{name}: SG {100 * w['space_group_top1']:.0f} %, top-5 {100 * w['space_group_top5']:.0f} %, CS {100 * w['crystal_system']:.0f} %")
        ax.legend(fontsize=8)
    _save(fig, out)
