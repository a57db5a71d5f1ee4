"""CNN vs the VAE's latent classifier: one row per model and test set, written in every format."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from xrdid.evaluate.compare import FIELDS, MODELS, write_comparison

MEASURED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "measured"


def test_comparison_on_tiny_data(tiny_vae, sticks_table, tmp_path):
    out = {k: tmp_path / f"c.{k}" for k in ("json", "csv", "md", "html", "png")}
    result = write_comparison(cnn=tiny_vae, vae=tiny_vae, sticks=sticks_table, json_out=out["json"], csv_out=out["csv"],
                              markdown_out=out["md"], html_out=out["html"], figure_out=out["png"], prototypes=False)
    sets = {r["test_set"] for r in result["rows"]}
    assert sets == {"synthetic test split"}
    assert [r["model"] for r in result["rows"]] == list(MODELS)
    for r in result["rows"]:
        assert 0 <= r["space_group_top1"] <= r["space_group_top5"] <= 1 and r["latency_ms"] > 0 and r["parameters"] > 0
    rows = list(csv.DictReader(out["csv"].open()))
    assert list(rows[0]) == FIELDS and len(rows) == 2
    assert json.loads(out["json"].read_text())["rows"] == result["rows"]
    assert "VAE latent classifier" in out["md"].read_text() and "<table>" in out["html"].read_text()
    assert out["png"].stat().st_size > 1000


def test_comparison_needs_the_same_grid(tiny_vae, sticks_table, tmp_path):
    from xrdid.instrument import get_instrument
    from xrdid.models import CNNConfig, XRDClassifier, save_checkpoint

    save_checkpoint(XRDClassifier(CNNConfig(n_points=1024, stem_channels=8, stage_channels=(8, 16), hidden=32)),
                    get_instrument({"preset": "cu", "n_points": 1024}), tmp_path / "cnn")
    with pytest.raises(ValueError, match="grid differs"):
        write_comparison(cnn=tmp_path / "cnn", vae=tiny_vae, sticks=sticks_table, json_out=tmp_path / "a", csv_out=tmp_path / "b",
                         markdown_out=tmp_path / "c", html_out=tmp_path / "d", figure_out=tmp_path / "e.png", prototypes=False)


@pytest.mark.skipif(not MEASURED.is_dir(), reason="development data (../shared/data) not present")
def test_measured_patterns_and_prototypes(tiny_vae, sticks_table, tmp_path):
    from xrdid.evaluate.compare import compare_models

    folder = tmp_path / "measured"
    folder.mkdir()
    rows = list(csv.DictReader((MEASURED / "index.csv").open()))[:3]
    for r in rows:
        for f in MEASURED.glob("*" + r["file"].split("__")[0] + "*"):
            shutil.copy(f, folder / f.name)
    with open(folder / "index.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    result = compare_models(cnn=tiny_vae, vae=tiny_vae, sticks=sticks_table, prototype_limit=4,
                            measured={"iucr": {"folder": folder, "labels": folder / "index.csv"}})
    sets = {r["test_set"]: r["n"] for r in result["rows"]}
    assert sets["AFLOW prototypes"] >= 4 and 1 <= sets["measured: iucr"] <= 3
    assert sets["measured: iucr"] + len(result["skipped"]["iucr"]) == 3
