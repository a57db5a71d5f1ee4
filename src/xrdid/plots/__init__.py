"""Figures (seaborn/matplotlib, Agg backend): training curves and confusion matrices."""

from xrdid.plots.figures import plot_confusion, plot_curves, plot_synthetic_vs_measured

__all__ = ["plot_confusion", "plot_curves", "plot_synthetic_vs_measured"]
