"""Scoring phase identification against labelled mixtures, and the fixed tuning / held-out split.

Scoring, per mixture: the true phases, each with the library entries that count as it (``|``-separated
polymorph candidates; none: the phase is not in the library, so not findable), and the phases found.

- a found phase is right if its library entry is a candidate of a true phase;
- recall = true phases found / findable true phases; precision = right / found;
- the set is exact when every findable true phase is found and every phase found is right;
- weight-fraction error (wt%, mean absolute over the true phases) where the set is exact, all true
  phases are findable and nominal fractions are known; the prediction for a true phase is the summed
  fraction of the found phases that match it.

Split: the development mixtures are divided once, before any result is looked at, by the parity of
the SHA-256 of the mixture id: even → ``tune`` (thresholds may be chosen on these), odd → ``held_out``
(reported only). The rule depends on nothing but the id, so it is the same on every machine and for
every future mixture.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath


def split_of(mixture_id: str) -> str:
    """``"tune"`` or ``"held_out"``: the parity of SHA-256(id)."""
    return "tune" if int(hashlib.sha256(mixture_id.encode()).hexdigest(), 16) % 2 == 0 else "held_out"


def _name(entry: str) -> str:
    return PurePosixPath(entry.split("#")[0]).name


@dataclass
class MixtureScore:
    n_true: int
    n_findable: int
    n_found: int
    n_right: int  # found phases that are right
    n_recalled: int  # findable true phases found
    exact: bool
    wt_error: float | None  # mean |Δw| in wt% where the set is exact and fractions are known
    matched: list = field(default_factory=list)  # per found phase: index of the true phase, or None


def score_mixture(
    true_candidates: list[list[str]],
    found: list[tuple[str, float]],
    nominal_fractions: list[float] | None = None,
) -> MixtureScore:
    """Score one mixture: ``true_candidates`` per true phase (library file names; [] if not findable),
    ``found`` as (library id, weight fraction), ``nominal_fractions`` per true phase (0–1) or None."""
    cands = [{_name(c) for c in cs if c} for cs in true_candidates]
    matched = []
    pred = [0.0] * len(cands)
    for fid, w in found:
        j = next((k for k, c in enumerate(cands) if _name(fid) in c), None)
        matched.append(j)
        if j is not None:
            pred[j] += w
    hit = {j for j in matched if j is not None}
    findable = {k for k, c in enumerate(cands) if c}
    n_right = sum(j is not None for j in matched)
    exact = hit == findable and n_right == len(found)
    wt = None
    if exact and nominal_fractions and len(findable) == len(cands):
        wt = 100.0 * sum(abs(p - f) for p, f in zip(pred, nominal_fractions)) / len(cands)
    return MixtureScore(n_true=len(cands), n_findable=len(findable), n_found=len(found), n_right=n_right,
                        n_recalled=len(hit), exact=exact, wt_error=wt, matched=matched)


def summarise(scores: list[MixtureScore]) -> dict:
    """Totals: recall of findable phases, precision, exact sets, mean wt% error where the set is exact."""
    found = sum(s.n_found for s in scores)
    findable = sum(s.n_findable for s in scores)
    wt = [s.wt_error for s in scores if s.wt_error is not None]
    return {
        "mixtures": len(scores),
        "findable_found": sum(s.n_recalled for s in scores),
        "findable": findable,
        "recall": sum(s.n_recalled for s in scores) / findable if findable else float("nan"),
        "found": found,
        "right": sum(s.n_right for s in scores),
        "precision": sum(s.n_right for s in scores) / found if found else float("nan"),
        "exact": sum(s.exact for s in scores),
        "exact_fraction": sum(s.exact for s in scores) / len(scores) if scores else float("nan"),
        "wt_error_mixtures": len(wt),
        "wt_error_wt_pct": sum(wt) / len(wt) if wt else float("nan"),
    }
