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
