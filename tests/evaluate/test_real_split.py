"""The evaluation on real structures of unseen types: its saved log-probabilities score as its JSON says."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from xrdid.evaluate.real_split import evaluate_real_split
from xrdid.priors import weighted_scores


def test_saved_log_probabilities_reproduce_the_scores_without_prior(tiny_vae, sticks_table, tmp_path):
    df = pd.read_parquet(sticks_table)
    df["source"], df["split"] = "prototypes", "val"  # every crystal a real one of the validation split
    sticks = tmp_path / "sticks.parquet"
    df.to_parquet(sticks)
    # A label prior in the checkpoint, so the answer with it differs from the saved one without it.
    model = tmp_path / "model"
    shutil.copytree(tiny_vae, model)
    meta = json.loads((model / "model.json").read_text())
    meta["prior_log_ratio"] = np.random.default_rng(0).normal(0, 2, 230).tolist()
    (model / "model.json").write_text(json.dumps(meta))
    out, logits = tmp_path / "real.json", tmp_path / "logits.npz"
    result = evaluate_real_split(model, sticks, out=out, logits=logits, split="val", instruments=("cu", "mars"), draws=1)
    assert json.loads(out.read_text()) == result
    z = np.load(logits)
    n = len(df)
    assert z["sg_logp"].shape == (2 * n, 230) and z["cs_logp"].shape == (2 * n, 7)
    assert sorted(set(z["instrument"])) == ["cu", "mars"] and len(set(z["id"])) == n
    assert np.exp(z["sg_logp"]).sum(1) == pytest.approx(np.ones(2 * n))
    for name in ("cu", "mars"):
        s = z["instrument"] == name
        scores = weighted_scores(z["sg_logp"][s], z["cs_logp"][s], z["space_group"][s], z["mp_weight"][s])
        reported = result["instruments"][name]["without_prior"]["materials_project_weighted"]
        assert scores.pop("crystal_system_recall") == pytest.approx(reported.pop("crystal_system_recall"))
        assert scores == pytest.approx(reported)


def test_tta_reaches_the_scores(tiny_vae, sticks_table, tmp_path, monkeypatch):
    """``tta``: the saved log-probabilities are the variants' mean; one identity variant repeated scores as none."""
    from xrdid import tta
    from xrdid.tta import Variant

    df = pd.read_parquet(sticks_table)
    df["source"], df["split"] = "prototypes", "val"
    sticks = tmp_path / "sticks.parquet"
    df.to_parquet(sticks)
    runs = {}
    for label, n, variants in (("plain", 1, tta.VARIANTS), ("identity", 3, (Variant(),) * 3), ("tta", 3, tta.VARIANTS)):
        monkeypatch.setattr(tta, "VARIANTS", variants)
        logits = tmp_path / f"{label}.npz"
        result = evaluate_real_split(tiny_vae, sticks, out=tmp_path / f"{label}.json", logits=logits, split="val", instruments=("cu",),
                                     draws=1, tta=n)
        assert result["tta"] == n
        runs[label] = np.load(logits)["sg_logp"]
    assert runs["identity"] == pytest.approx(runs["plain"], abs=1e-6)
    assert np.abs(runs["tta"] - runs["plain"]).max() > 1e-4  # the tiny model answers nearly uniformly
