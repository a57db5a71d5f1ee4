r"""Label priors: what real samples look like, and how a model trained on another mix answers for them.

A classifier trained on labels drawn with frequencies :math:`p_{train}(g)` and calibrated on them
estimates :math:`p_{train}(g \mid x)`. For samples drawn from the real world, with label frequencies
:math:`p_{real}(g)`, Bayes' rule gives :math:`p_{real}(g \mid x) ∝ p_{train}(g \mid x)\,p_{real}(g)/p_{train}(g)`
(Saerens, Latinne & Decaestecker, Neural Comput. 14 (2002) 21). A model's calibration is never perfect
and the real frequencies are an estimate, so the log-ratio is applied with a strength α ∈ [0, 1],
chosen on a validation set weighted like real samples (:func:`choose_strength`): α = 0 is the model's
own answer, α = 1 the full correction.

The real-world frequencies are those of Materials Project: how many of ~88,700 structures have each
space group (:func:`xrdid.structures.wyckoff.real_space_group_counts`, from pyxtal's table). A set of
real structures is made to stand in for real samples by weighting each of its structures by
:math:`p_{MP}(g)/n(g)`, n(g) the set's structures of group g (:func:`mp_weights`).
"""

from __future__ import annotations

import numpy as np

from xrdid.labels import CRYSTAL_SYSTEMS, N_SPACE_GROUPS, space_group_to_system_map

# Strengths tried by choose_strength.
STRENGTHS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
# Additive smoothing of label counts (a group absent from one side keeps a finite ratio).
PSEUDOCOUNT = 1.0


def mp_space_group_frequencies() -> np.ndarray:
    """Materials Project's space-group frequencies (230 values summing to 1, group 1 first)."""
    from xrdid.structures.wyckoff import real_space_group_counts

    counts = real_space_group_counts() + PSEUDOCOUNT
    return counts / counts.sum()


def log_ratio(target_counts, train_counts, *, pseudocount: float = PSEUDOCOUNT) -> np.ndarray:
    """log p_target(c) − log p_train(c) per class, from label counts (or frequencies) with smoothing."""
    t = np.asarray(target_counts, dtype=np.float64)
    r = np.asarray(train_counts, dtype=np.float64)
    if t.shape != r.shape or t.shape not in ((N_SPACE_GROUPS,), (len(CRYSTAL_SYSTEMS),)):
        raise ValueError(f"need 230 counts each (space groups 1-230) or 7 (crystal systems), got {t.shape} and {r.shape}")
    # Frequencies are brought to the same scale as counts before smoothing, so the pseudocount means
    # the same for both: a total of 100,000 labels.
    t = t / t.sum() * 1e5 + pseudocount
    r = r / r.sum() * 1e5 + pseudocount
    return np.log(t / t.sum()) - np.log(r / r.sum())


def materials_project_ratios(train_counts) -> tuple[np.ndarray, np.ndarray]:
    """Space-group and crystal-system log-ratios of Materials Project's frequencies against a training
    set's space-group counts (230 values, e.g. a checkpoint's ``train_space_group_counts``)."""
    real = mp_space_group_frequencies()
    train = np.asarray(train_counts, dtype=np.float64)
    systems = space_group_to_system_map()
    per_system = [np.bincount(systems, weights=c, minlength=len(CRYSTAL_SYSTEMS)) for c in (real, train)]
    return log_ratio(real, train), log_ratio(*per_system)


def mp_weights(space_groups) -> np.ndarray:
    """Per-sample weights (summing to 1) that make a set of samples with these space groups (numbers
    1–230) stand for Materials Project's frequencies: p_MP(g)/n(g), renormalised over the groups present."""
    g = np.asarray(space_groups, dtype=np.int64)
    if g.size == 0:
        return np.zeros(0)
    freq = mp_space_group_frequencies()
    n = np.bincount(g - 1, minlength=N_SPACE_GROUPS)
    w = freq[g - 1] / n[g - 1]
    return w / w.sum()


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _system_sums(sg_p: np.ndarray) -> np.ndarray:
    """(S, 7) summed space-group probabilities of each crystal system."""
    out = np.zeros((sg_p.shape[0], len(CRYSTAL_SYSTEMS)))
    np.add.at(out.T, space_group_to_system_map(), sg_p.T)
    return out


def weighted_scores(sg_logp: np.ndarray, cs_logp: np.ndarray, sg_true: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """Weighted accuracies and log-loss of log-probabilities (S, 230) and (S, 7) against space groups
    ``sg_true`` (numbers 1–230); per-crystal-system recall of the crystal-system head."""
    if sg_logp.shape[1:] != (N_SPACE_GROUPS,) or cs_logp.shape[1:] != (len(CRYSTAL_SYSTEMS),):
        raise ValueError(f"need (S, 230) space-group and (S, 7) crystal-system log-probabilities, got {sg_logp.shape} and {cs_logp.shape}")
    sg_true = np.asarray(sg_true, dtype=np.int64)
    w = np.full(len(sg_true), 1 / max(len(sg_true), 1)) if weights is None else np.asarray(weights, float) / np.sum(weights)
    cs_true = space_group_to_system_map()[sg_true - 1]
    sg_p, cs_p = _softmax(sg_logp), _softmax(cs_logp)
    top5 = np.argsort(-sg_p, axis=1)[:, :5]
    cs_pred = cs_p.argmax(1)
    recall = {}
    for c, name in enumerate(CRYSTAL_SYSTEMS):
        sel = cs_true == c
        if sel.any():
            recall[name] = float(np.sum(w[sel] * (cs_pred[sel] == c)) / np.sum(w[sel]))
    rows = np.arange(len(sg_true))
    return {
        "n": len(sg_true),
        # Kish's effective sample size of the weights: how many equally weighted samples they are worth.
        "effective_n": float(1.0 / np.sum(w * w)) if len(w) else 0.0,
        "space_group_top1": float(np.sum(w * (sg_p.argmax(1) == sg_true - 1))),
        "space_group_top5": float(np.sum(w * (top5 == (sg_true - 1)[:, None]).any(1))),
        "crystal_system": float(np.sum(w * (cs_pred == cs_true))),
        # The crystal system whose space groups hold the most probability (the space-group head's answer).
        "crystal_system_from_space_groups": float(np.sum(w * (_system_sums(sg_p).argmax(1) == cs_true))),
        "space_group_log_loss": float(-np.sum(w * np.log(np.clip(sg_p[rows, sg_true - 1], 1e-12, None)))),
        "crystal_system_recall": recall,
    }


def with_prior(sg_logp: np.ndarray, cs_logp: np.ndarray, sg_ratio: np.ndarray, cs_ratio: np.ndarray, strength: float):
    """Log-probabilities (unnormalised) after the prior log-ratios at ``strength``."""
    return sg_logp + strength * np.asarray(sg_ratio)[None, :], cs_logp + strength * np.asarray(cs_ratio)[None, :]


def choose_strength(
    sg_logp: np.ndarray, cs_logp: np.ndarray, sg_true, sg_ratio: np.ndarray, cs_ratio: np.ndarray,
    strengths=STRENGTHS,
) -> tuple[float, list[dict]]:
    """The strength whose Materials Project-weighted space-group log-loss is lowest on these samples
    (calibrated log-probabilities of the model), and the weighted scores at every strength tried.

    The log-loss is the criterion because it is a proper score and varies smoothly with α on a few
    hundred samples, where top-1 counts jump by whole patterns.
    """
    weights = mp_weights(sg_true)
    table = []
    for a in strengths:
        s, c = with_prior(sg_logp, cs_logp, sg_ratio, cs_ratio, a)
        table.append({"strength": float(a), **weighted_scores(s, c, sg_true, weights)})
    best = min(table, key=lambda r: r["space_group_log_loss"])
    return best["strength"], table


def answer_log_probs(
    sg_logp: np.ndarray, cs_logp: np.ndarray, sg_ratio: np.ndarray, cs_ratio: np.ndarray, *, sg_strength: float,
    cs_strength: float, triclinic_offset: float = 0.0, consistent: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (S, 230) and (S, 7) log-probabilities of the answer ``xrdid predict`` gives with a label
    prior of strength ``sg_strength`` on the space-group head and ``cs_strength`` on the crystal-system
    head, δ = ``triclinic_offset`` added to triclinic's crystal-system log-probability, and with
    ``consistent`` the space groups' crystal-system sums set to the crystal-system answer
    (:func:`xrdid.predict.consistent_space_groups`); from a model's calibrated log-probabilities without a
    prior, as ``python -m xrdid.evaluate.real_split --logits`` saves them."""
    sg = sg_logp + sg_strength * np.asarray(sg_ratio)[None, :]
    cs = cs_logp + cs_strength * np.asarray(cs_ratio)[None, :]
    cs[:, CRYSTAL_SYSTEMS.index("triclinic")] += triclinic_offset
    cs = cs - np.logaddexp.reduce(cs, axis=1, keepdims=True)
    sg = sg - np.logaddexp.reduce(sg, axis=1, keepdims=True)
    if consistent:
        import torch

        from xrdid.predict import consistent_space_groups

        p = consistent_space_groups(torch.from_numpy(np.exp(sg)), torch.from_numpy(np.exp(cs))).numpy()
        sg = np.log(np.clip(p, 1e-30, None))
    return sg, cs
