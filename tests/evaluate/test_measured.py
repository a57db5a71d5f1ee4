"""Evaluation on measured patterns: labels (numbers, CIFs, the folder convention), scoring, failures."""

import json

import numpy as np
import pytest

from xrdid.evaluate.measured import evaluate_measured, read_measured_labels
from xrdid.instrument import get_instrument
from xrdid.models import CNNConfig, XRDClassifier, save_checkpoint
from xrdid.plots import plot_synthetic_vs_measured


def _write_xy(path, wavelength=None, n=2000):
    x = np.linspace(10, 80, n)
    y = 10 + 1000 * np.exp(-0.5 * ((x - 31.7) / 0.05) ** 2) + 400 * np.exp(-0.5 * ((x - 45.4) / 0.05) ** 2)
    head = f"# wavelength = {wavelength}\n" if wavelength else ""
    path.write_text(head + "\n".join(f"{a:.4f} {b:.2f}" for a, b in zip(x, y)))


@pytest.fixture
def measured_set(tmp_path, nacl):
    folder = tmp_path / "measured"
    folder.mkdir()
    _write_xy(folder / "abc__I.xy", wavelength=1.5406)
    nacl.to(filename=str(folder / "iucr__abc__I.cif"))
    _write_xy(folder / "nowl__I.xy")  # no wavelength anywhere: must be reported, not guessed
    _write_xy(folder / "num__I.xy")
    labels = folder / "labels.csv"
    labels.write_text("file,wavelength_A,space_group\nabc__I.xy,,\nnowl__I.xy,,14\nnum__I.xy,1.5406,62|225\n")
    return folder, labels


def test_labels_from_numbers_and_cifs(measured_set):
    folder, labels = measured_set
    items = {i.file.name: i for i in read_measured_labels(folder, labels)}
    assert items["abc__I.xy"].space_groups == {225} and items["abc__I.xy"].cifs == ["iucr__abc__I.cif"]
    assert items["num__I.xy"].space_groups == {62, 225} and items["num__I.xy"].wavelength_A == 1.5406
    assert items["nowl__I.xy"].crystal_systems == {"monoclinic"}


def test_evaluate_measured_scores_and_records_failures(tmp_path, measured_set):
    folder, labels = measured_set
    model = XRDClassifier(CNNConfig(n_points=512, stem_channels=8, stage_channels=(8, 16), hidden=32))
    save_checkpoint(model, get_instrument({"preset": "cu", "n_points": 512}), tmp_path / "ck")
    metrics = evaluate_measured(
        checkpoint=tmp_path / "ck", folder=folder, labels=labels,
        predictions_out=tmp_path / "pred.csv", metrics_out=tmp_path / "m.json",
    )
    assert metrics["n_patterns"] == 3 and metrics["n_classified"] == 2
    assert "nowl__I.xy" in metrics["failures"] and "wavelength" in metrics["failures"]["nowl__I.xy"]
    assert 0.0 <= metrics["crystal_system_accuracy"] <= 2 / 3
    assert json.loads((tmp_path / "m.json").read_text())["n_patterns"] == 3
    assert (tmp_path / "pred.csv").read_text().count("\n") == 4

    synthetic = {"n_structures": 10, "space_group": {"accuracy": 0.5, "top5_accuracy": 0.8}, "crystal_system": {"accuracy": 0.9}}
    (tmp_path / "syn.json").write_text(json.dumps(synthetic))
    plot_synthetic_vs_measured(tmp_path / "syn.json", tmp_path / "m.json", tmp_path / "cmp.png", label="test")
    assert (tmp_path / "cmp.png").read_bytes()[:4] == b"\x89PNG"
