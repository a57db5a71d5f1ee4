"""Label priors: Materials Project weights, weighted scores computed by hand, and the choice of strength."""

from __future__ import annotations

import numpy as np
import pytest

from xrdid.priors import (
    choose_strength,
    log_ratio,
    materials_project_ratios,
    mp_space_group_frequencies,
    mp_weights,
    weighted_scores,
)


def test_mp_weights_give_each_group_its_materials_project_share():
    groups = np.array([14, 14, 14, 225, 230, 230])
    w = mp_weights(groups)
    assert w.sum() == pytest.approx(1.0)
    f = mp_space_group_frequencies()
    present = f[[13, 224, 229]] / f[[13, 224, 229]].sum()
    assert [w[groups == g].sum() for g in (14, 225, 230)] == pytest.approx(present.tolist())
    assert w[0] == w[1] == w[2]  # equal within a group
    assert mp_weights([]).size == 0


def test_weighted_scores_by_hand():
    # Three samples, classes shown as log-probabilities; sample 2 is right, 1 in the top 5, 3 wrong.
    sg = np.full((3, 230), -50.0)
    sg[0, [0, 1, 2, 3, 4]] = [-0.1, -3, -4, -5, -6]  # true 14 (index 13): not in its top 5
    sg[1, 13] = -0.01  # true 14: top-1
    sg[2, [224, 13]] = [-0.2, -2.0]  # true 225 (index 224): top-1
    sg[0, 13] = -7.0
    cs = np.full((3, 7), -50.0)
    cs[0, 0], cs[1, 1], cs[2, 1] = 0.0, 0.0, 0.0  # triclinic, monoclinic, monoclinic
    truth = [14, 14, 225]
    plain = weighted_scores(sg, cs, truth)
    assert plain["space_group_top1"] == pytest.approx(2 / 3)
    assert plain["space_group_top5"] == pytest.approx(2 / 3)
    assert plain["crystal_system"] == pytest.approx(1 / 3)
    # The space-group head puts sample 1 in triclinic (index 0), samples 2 and 3 right.
    assert plain["crystal_system_from_space_groups"] == pytest.approx(2 / 3)
    assert plain["crystal_system_recall"] == {"monoclinic": 0.5, "cubic": 0.0}
    assert plain["effective_n"] == pytest.approx(3.0)
    w = weighted_scores(sg, cs, truth, weights=[0.5, 0.25, 0.25])
    assert w["space_group_top1"] == pytest.approx(0.5)
    assert w["effective_n"] == pytest.approx(1 / (0.25 + 2 * 0.0625))
    assert w["crystal_system_recall"]["monoclinic"] == pytest.approx(0.25 / 0.75)
    # Swapped heads are caught: crystal-system log-probs where space-group ones belong fail loudly.
    with pytest.raises(ValueError, match="need \\(S, 230\\) space-group"):
        weighted_scores(cs, sg, truth)


def _two_class_logp(p14: float, n: int) -> np.ndarray:
    logp = np.full((n, 230), -40.0)
    logp[:, 13], logp[:, 229] = np.log(p14), np.log(1 - p14)
    return logp


def test_full_strength_for_a_model_that_cannot_tell_and_was_trained_balanced():
    # Half P2_1/c, half Ia-3d samples, a model that says 50/50 for all (a balanced-training likelihood):
    # on real samples (MP-weighted) the prior is all the information there is, so α = 1 wins.
    truth = np.array([14] * 10 + [230] * 10)
    sg_ratio, cs_ratio = materials_project_ratios(np.full(230, 100.0))
    cs = np.zeros((20, 7))
    strength, table = choose_strength(_two_class_logp(0.5, 20), cs, truth, sg_ratio, cs_ratio)
    assert strength == 1.0
    losses = [r["space_group_log_loss"] for r in table]
    assert losses == sorted(losses, reverse=True)


def test_no_strength_for_a_model_that_already_answers_with_the_real_frequencies():
    # The model already predicts Materials Project's odds between the two groups: the weighted log-loss
    # is a proper score, minimal at those odds, so adding the prior again (double counting) loses.
    f = mp_space_group_frequencies()
    p14 = f[13] / (f[13] + f[229])
    truth = np.array([14] * 10 + [230] * 10)
    sg_ratio, cs_ratio = materials_project_ratios(np.full(230, 100.0))
    strength, _ = choose_strength(_two_class_logp(p14, 20), np.zeros((20, 7)), truth, sg_ratio, cs_ratio)
    assert strength == 0.0


def test_log_ratio_is_scale_free_and_checks_shapes():
    a = log_ratio(np.arange(1, 231), np.full(230, 5.0))
    b = log_ratio(np.arange(1, 231) / 10.0, np.full(230, 0.01))
    assert np.allclose(a, b)
    assert a[229] > 0 > a[0]
    with pytest.raises(ValueError, match="230 counts each"):
        log_ratio(np.ones(10), np.ones(10))
