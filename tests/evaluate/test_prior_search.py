"""Choosing the label prior's strengths from saved log-probabilities: the offline answer is predict's, the
grid search obeys its criterion and constraint, the paired bootstrap measures the change."""

import json
import shutil

import numpy as np
import pytest
import torch

from xrdid.evaluate.prior_search import main, paired_bootstrap, score_setting, search
from xrdid.labels import CRYSTAL_SYSTEMS
from xrdid.priors import answer_log_probs

MONO, CUBIC = CRYSTAL_SYSTEMS.index("monoclinic"), CRYSTAL_SYSTEMS.index("cubic")


@pytest.mark.parametrize("consistent", [True, False])
def test_offline_answer_is_predicts_answer(tiny_vae, tmp_path, consistent):
    from xrdid.predict import load_model

    rng = np.random.default_rng(1)
    sg_ratio, cs_ratio = rng.normal(0, 1, 230), rng.normal(0, 1, 7)
    model = tmp_path / "model"
    shutil.copytree(tiny_vae, model)
    meta = json.loads((model / "model.json").read_text())
    # The checkpoint stores α·ratio: strengths 0.5 (space groups) and 1.5 (crystal systems).
    meta["prior_log_ratio"], meta["crystal_system_prior_log_ratio"] = (0.5 * sg_ratio).tolist(), (1.5 * cs_ratio).tolist()
    (model / "model.json").write_text(json.dumps(meta))
    bundle = load_model(model, consistent=consistent, triclinic_offset=0.7)
    sg_logits, cs_logits = torch.randn(6, 230) * 3, torch.randn(6, 7) * 2
    sg_p, cs_p = bundle.probabilities(sg_logits, cs_logits)
    t = bundle.model.temperature.detach()
    sg_logp = torch.log_softmax(sg_logits / t[0], -1).double().numpy()
    cs_logp = torch.log_softmax(cs_logits / t[1], -1).double().numpy()
    sg, cs = answer_log_probs(sg_logp, cs_logp, sg_ratio, cs_ratio, sg_strength=0.5, cs_strength=1.5, triclinic_offset=0.7,
                              consistent=consistent)
    assert np.exp(sg) == pytest.approx(sg_p.double().numpy(), abs=1e-5)
    assert np.exp(cs) == pytest.approx(cs_p.double().numpy(), abs=1e-5)


def test_crystal_system_strength_acts_on_its_own_head():
    rng = np.random.default_rng(2)
    sg_logp, cs_logp = rng.normal(0, 2, (5, 230)), rng.normal(0, 2, (5, 7))
    sg_ratio, cs_ratio = rng.normal(0, 1, 230), rng.normal(0, 1, 7)
    a = answer_log_probs(sg_logp, cs_logp, sg_ratio, cs_ratio, sg_strength=0.0, cs_strength=1.0)
    b = answer_log_probs(sg_logp, cs_logp, sg_ratio, cs_ratio, sg_strength=1.5, cs_strength=1.0)
    assert a[1] == pytest.approx(b[1])  # the crystal-system answer ignores the space-group strength
    assert not np.allclose(a[0], b[0])
    c = answer_log_probs(sg_logp, cs_logp, sg_ratio, cs_ratio, sg_strength=1.5, cs_strength=0.0)
    assert c[1] == pytest.approx(cs_logp - np.logaddexp.reduce(cs_logp, axis=1, keepdims=True))


def _logits(n_mono=8, n_cubic=2) -> dict:
    """Two instruments, the same patterns: the crystal-system head prefers cubic by 0.3 on every pattern
    (right for the cubic ones, wrong for the monoclinic ones); P2₁/c and Fm-3m lead their systems. The
    weights give each system half."""
    n = n_mono + n_cubic
    cs = np.full((n, 7), -20.0)
    cs[:, MONO], cs[:, CUBIC] = -0.3, 0.0
    sg = np.full((n, 230), -10.0)
    sg[:, [13, 224]] = 0.0
    truth = np.array([14] * n_mono + [225] * n_cubic)
    one = {"sg_logp": sg, "cs_logp": cs, "space_group": truth, "mp_weight": np.array([0.5 / n_mono] * n_mono + [0.5 / n_cubic] * n_cubic), "id": np.array([f"c{i}" for i in range(n)])}
    both = {k: np.concatenate([v, v]) for k, v in one.items()}
    both["instrument"] = np.array(["cu"] * n + ["mars"] * n)
    return both


def test_search_takes_the_best_criterion_within_the_recall_constraint():
    logits = _logits()
    sg_ratio, cs_ratio = np.zeros(230), np.zeros(7)
    cs_ratio[MONO] = 1.0  # from α_CS = 0.5 on, every pattern is answered monoclinic
    reference = {"sg_strength": 0.0, "cs_strength": 0.0, "triclinic_offset": 0.0}
    grid = {"sg_strengths": (0.0,), "cs_strengths": (0.0, 0.25, 0.5, 1.0), "offsets": (0.0,)}
    best, table = search(logits, sg_ratio, cs_ratio, reference=reference, max_recall_drop=0.05, **grid)
    assert len(table) == 4
    # All monoclinic (80 % right, 50 % weighted) beats all cubic (20 %, 50 % weighted), but cubic recall
    # would fall from 1 to 0.
    assert [s["allowed"] for s in table] == [True, True, False, False]
    assert best["cs_strength"] == 0.0 and best["criterion"] == pytest.approx(0.35)
    assert best["rows"]["cu/plain"]["crystal_system"] == pytest.approx(0.2)
    assert best["rows"]["cu/materials_project_weighted"]["crystal_system"] == pytest.approx(0.5)
    best, _ = search(logits, sg_ratio, cs_ratio, reference=reference, max_recall_drop=1.0, **grid)
    # Without the constraint: 0.5 and 1 tie at 80 %; the one closer to the reference wins.
    assert best["cs_strength"] == 0.5 and best["criterion"] == pytest.approx(0.65)
    assert best["rows"]["mars/materials_project_weighted"]["crystal_system_recall"] == {"monoclinic": 1.0, "cubic": 0.0}


def test_paired_bootstrap_measures_the_change():
    logits = _logits()
    sg_ratio, cs_ratio = np.zeros(230), np.zeros(7)
    cs_ratio[MONO] = 1.0
    reference = {"sg_strength": 0.0, "cs_strength": 0.0, "triclinic_offset": 0.0}
    setting = {"sg_strength": 0.0, "cs_strength": 1.0, "triclinic_offset": 0.0}
    boot = paired_bootstrap(logits, sg_ratio, cs_ratio, setting, reference, n_boot=500)
    new, old = score_setting(logits, sg_ratio, cs_ratio, setting), score_setting(logits, sg_ratio, cs_ratio, reference)
    assert set(boot) == set(new["rows"])
    for row, d in boot.items():
        for key in ("space_group_top1", "crystal_system"):
            assert d[key]["delta"] == pytest.approx(new["rows"][row][key] - old["rows"][row][key])
            if row.endswith("plain"):
                assert d[key]["delta"] == pytest.approx(0.6)
                # Each crystal changes by +1 (8) or −1 (2): SD 0.8, so the SE of the mean of 10 is 0.8/√10 ≈ 0.25.
                assert 0.15 < d[key]["se"] < 0.35
            else:
                assert d[key]["delta"] == pytest.approx(0.0)  # half the weight gained, half lost
    same = paired_bootstrap(logits, sg_ratio, cs_ratio, reference, reference, n_boot=50)
    assert all(v["delta"] == 0 and v["se"] == 0 for d in same.values() for v in d.values())


def test_cli_search_and_score(tmp_path):
    path = tmp_path / "logits.npz"
    np.savez(path, **_logits())
    assert main(["search", "--logits", str(path), "--out", str(tmp_path / "s.json")]) == 0
    result = json.loads((tmp_path / "s.json").read_text())
    assert len(result["grid"]) == 7 * 7 * 5 and result["reference"]["cs_strength"] == 1.0
    assert main(["score", "--logits", str(path), "--out", str(tmp_path / "t.json"), "--setting", "1", "0", "0", "--bootstrap", "50"]) == 0
    result = json.loads((tmp_path / "t.json").read_text())
    assert result["setting"]["cs_strength"] == 0.0 and set(result["paired_bootstrap"]) == set(result["setting"]["rows"])
