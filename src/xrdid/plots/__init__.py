"""Figures (seaborn/matplotlib, Agg backend): training curves and confusion matrices."""

from xrdid.plots.figures import plot_confusion, plot_curves

__all__ = ["plot_confusion", "plot_curves"]
