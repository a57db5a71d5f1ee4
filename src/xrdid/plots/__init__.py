"""Figures (seaborn/matplotlib, Agg backend): training curves, confusion matrices, real-structure evaluation."""

from xrdid.plots.figures import plot_confusion, plot_curves, plot_real_recall, plot_scaling, plot_synthetic_vs_measured

__all__ = ["plot_confusion", "plot_curves", "plot_real_recall", "plot_scaling", "plot_synthetic_vs_measured"]
