"""`snakemake --report` on the tiny run: one HTML page with the figures, the metrics table, captions and
run statistics."""

from __future__ import annotations

import json

import pytest
from test_workflow import TINY, make_project, snakemake

from xrdid.report import metrics_rows, metrics_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    path = make_project(tmp_path_factory.mktemp("report"), TINY)
    snakemake(path)
    snakemake(path, "--report", "results/report.html")
    return path


def test_report_has_figures_table_captions_and_statistics(tiny_report):
    page = (tiny_report / "results" / "report.html").read_text()
    for name in ("curves.png", "confusion_space_group.png", "confusion_crystal_system.png", "metrics.html"):
        assert name in page, name
    for caption in ("Training curves", "Row-normalised confusion matrix", "expected calibration error"):
        assert caption in page, caption
    for category in ("Training", "Evaluation"):
        assert category in page
    # Run statistics: every rule that ran, with its runtime.
    for rule in ("simulate_chunk", "train_cnn", "evaluate_cnn", "tabulate_metrics"):
        assert rule in page, rule


def test_metrics_table_matches_metrics_json(tiny_report):
    res = tiny_report / "results" / TINY["dataset"] / "evaluate"
    metrics = json.loads((res / "metrics.json").read_text())
    table = (res / "metrics.html").read_text()
    assert f"{100 * metrics['space_group']['accuracy']:.1f} %" in table
    assert f"{100 * metrics['crystal_system']['majority_class_accuracy']:.1f} %" in table
    assert f"{metrics['n_structures']} structures" in table


def test_metrics_rows_leave_missing_values_out():
    metrics = {"CNN": {"n_structures": 3,
                       "space_group": {"n": 3, "accuracy": 0.5, "top5_accuracy": 1.0, "majority_class_accuracy": 1 / 3},
                       "crystal_system": {"n": 3, "accuracy": 1.0}}}
    rows = metrics_rows(metrics)
    assert [(r["model"], r["head"], r["n"]) for r in rows] == [("CNN", "space group", 3), ("CNN", "crystal system", 3)]
    assert "top5_accuracy" not in rows[1]


def test_metrics_table_names_an_unreadable_file(tmp_path):
    with pytest.raises(ValueError, match=r"missing\.json: cannot read the metrics of 'CNN'"):
        metrics_table({"CNN": tmp_path / "missing.json"}, tmp_path / "out.html")
