r"""Systematic absences of the 230 space groups, and how well a group's allowed reflections index a cell's lines.

* **Absences** (:func:`allowed_reflections`): from the general position of pyxtal's ``Group(n)`` (standard
  setting, centring translations included). For operations (R, t), x ↦ Rx + t, a reflection h is
  systematically absent when Σ over the operations with hR = h of exp(2πi h·t) vanishes (the sum of a
  character over the stabiliser of h: zero unless every phase is 1). Site-specific absences (Si's 222)
  are not group absences and stay allowed. Cached on a box |h|, |k|, |l| ≤ ``HMAX``; beyond it a
  reflection counts as allowed. The 230 masks ship bit-packed in ``xrdid/data/absences.npz`` (12 kB), so
  a process does not recompute them (~70 ms a group); rewrite it with ``python -m xrdid.indexing.extinctions``
  after changing ``HMAX`` or the computation (a file for another ``HMAX`` is ignored).
* **Settings**: an indexed cell is in *a* conventional setting (mC and oC cells C-centred, but their a, c
  or axis order not the group's), the group's conditions in its standard one. The check tries each setting of the crystal system — the 6 axis permutations of orthorhombic
  groups, the 3 cell choices × 2 axis orders of monoclinic ones (b unique), 1 otherwise — as integer
  matrices S with h_std = S h_cell, and keeps the best.
* **Group fit** (:func:`group_fit`): of the first ``N_PEAKS`` observed lines (zero shift corrected),
  ``matched`` is the √intensity-weighted fraction lying within the tolerance of a line the group allows;
  ``missing`` is the fraction of allowed lines (lines closer than the tolerance merged) from the start of
  the measured range to the ``N_WINDOW``-th observed line with no observed line within the tolerance.
  Absences are what tell groups of one lattice apart, so allowed low-angle lines that are not seen
  count against a group.
* **Lattices for a group** (:func:`cells_for_system`): a group of crystal system S is checked on the
  indexed cells of a lattice S can have (trigonal: hP or hR) and on higher-symmetry cells re-expressed in
  S (cubic and tetragonal cells as orthorhombic; those and orthorhombic ones as monoclinic with each axis
  unique; any cell as triclinic, reduced), since a crystal's lattice can be metrically more symmetric.
"""

from __future__ import annotations

import itertools
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from xrdid.indexing.lattice import TRANSFORM, forms6, hkl_box, niggli, p6_from_metric, real_lengths
from xrdid.labels import crystal_system

HMAX = 12
N_PEAKS = 20
N_WINDOW = 10


@lru_cache(maxsize=1)
def _box() -> np.ndarray:
    r = np.arange(-HMAX, HMAX + 1)
    return np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)


# The 230 groups' masks, stored by :func:`write_absences` (``python -m xrdid.indexing.extinctions``): computing
# them from pyxtal takes ~70 ms a group, ~16 s of CPU in a process that ranks all 230 once (``xrdid predict --rerank``).
ABSENCES_FILE = Path(__file__).resolve().parents[1] / "data" / "absences.npz"


@cache
def _stored_masks() -> np.ndarray | None:
    """The stored masks, (230, box) bool, or None when the file is missing or was written for another HMAX."""
    try:
        with np.load(ABSENCES_FILE) as z:
            if int(z["hmax"]) != HMAX:
                return None
            return np.unpackbits(z["allowed"], axis=1, count=len(_box())).astype(bool)
    except (OSError, KeyError, ValueError):
        return None


@cache
def allowed_reflections(number: int) -> np.ndarray:
    """Boolean mask over the box |h|, |k|, |l| ≤ HMAX (C order): True where group ``number`` allows hkl
    (from :data:`ABSENCES_FILE` when it holds them, else :func:`computed_allowed_reflections`)."""
    stored = _stored_masks()
    if stored is not None:
        return stored[int(number) - 1]
    return computed_allowed_reflections(number)


def write_absences(path: Path = ABSENCES_FILE) -> Path:
    """Compute the 230 groups' masks and store them (bit-packed) for :func:`allowed_reflections`."""
    from xrdid.io import atomic_path

    masks = np.stack([computed_allowed_reflections(n) for n in range(1, 231)])
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no ".npz" to the name
        np.savez_compressed(f, hmax=np.int64(HMAX), allowed=np.packbits(masks, axis=1))
    return Path(path)


def computed_allowed_reflections(number: int) -> np.ndarray:
    """:func:`allowed_reflections` from the general position of pyxtal's ``Group(number)`` (module docstring)."""
    from pyxtal.symmetry import Group

    hkl = _box()
    total = np.zeros(len(hkl), np.complex128)
    for op in Group(int(number)).Wyckoff_positions[0].ops:
        rot = np.rint(op.rotation_matrix).astype(np.int64)
        fixed = np.all(hkl @ rot == hkl, axis=1)
        total[fixed] += np.exp(2j * np.pi * (hkl[fixed] @ np.asarray(op.translation_vector, np.float64)))
    out = np.abs(total) > 1e-6
    out[np.all(hkl == 0, axis=1)] = False
    return out


def is_allowed(number: int, hkl: np.ndarray) -> np.ndarray:
    """Does group ``number`` (standard setting) allow each row of ``hkl``? Beyond the box: True."""
    hkl = np.asarray(hkl, np.int64)
    inside = np.all(np.abs(hkl) <= HMAX, axis=1)
    n = 2 * HMAX + 1
    idx = ((hkl[:, 0] + HMAX) * n + (hkl[:, 1] + HMAX)) * n + (hkl[:, 2] + HMAX)
    out = np.ones(len(hkl), bool)
    out[inside] = allowed_reflections(int(number))[idx[inside]]
    return out


@cache
def settings(system: str) -> tuple[np.ndarray, ...]:
    """Integer matrices S (h_std = S h_cell) of the settings tried for a crystal system (module doc)."""
    eye = np.eye(3, dtype=np.int64)
    if system == "orthorhombic":
        return tuple(eye[list(p)] for p in itertools.permutations(range(3)))
    if system == "monoclinic":
        # Cell choices 1→2→3 in the ac plane (direct vectors a' = c, c' = −a − c; indices transform alike),
        # and the a ↔ c swap (b → −b keeps the handedness; irrelevant for absences).
        c2 = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, -1]])
        swap = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]])
        base = [eye, c2, c2 @ c2]
        return tuple(base + [b @ swap for b in base])
    return (eye,)


def _sqrt_weights(intensity: np.ndarray) -> np.ndarray:
    w = np.sqrt(np.maximum(np.asarray(intensity, np.float64), 0.0))
    return w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / max(len(w), 1))


class CellLines:
    """A cell's calculated lines against a pattern's observed ones, computed once for all groups."""

    def __init__(self, p6: np.ndarray, system: str, q_obs: np.ndarray, tol_q: np.ndarray, weight: np.ndarray, q_lo: float):
        self.system = system
        n = min(N_PEAKS, len(q_obs))
        self.q_obs, self.tol, self.weight = q_obs[:n], tol_q[:n], _sqrt_weights(weight[:n])
        self.q_lo = q_lo
        w = min(N_WINDOW, n)
        self.q_window = float(self.q_obs[w - 1] + self.tol[w - 1]) if n else 0.0
        q_max = float(self.q_obs[-1] + self.tol[-1]) if n else 0.0
        lengths = real_lengths(np.asarray(p6)[None])[0]
        hm = tuple(int(min(HMAX, np.ceil(v * np.sqrt(q_max)))) for v in lengths)
        hkl = hkl_box(*hm)
        qc = forms6(hkl) @ p6
        keep = qc <= q_max
        self.hkl, self.qc = hkl[keep], qc[keep]
        order = np.argsort(self.qc)
        self.hkl, self.qc = self.hkl[order], self.qc[order]

    def fit(self, allowed: np.ndarray) -> tuple[float, float]:
        """(matched, missing) for a mask over this cell's calculated lines (module docstring)."""
        qa = self.qc[allowed]
        if len(qa) == 0 or len(self.q_obs) == 0:
            return 0.0, 1.0
        j = np.clip(np.searchsorted(qa, self.q_obs), 1, max(len(qa) - 1, 1))
        near = np.minimum(np.abs(self.q_obs - qa[np.clip(j - 1, 0, len(qa) - 1)]), np.abs(self.q_obs - qa[np.clip(j, 0, len(qa) - 1)]))
        matched = float(self.weight[near <= self.tol].sum())
        win = qa[(qa >= self.q_lo) & (qa <= self.q_window)]
        if len(win) == 0:
            return matched, 0.0
        tol_w = np.interp(win, self.q_obs, self.tol)
        cluster = np.concatenate([[0], np.cumsum(np.diff(win) > tol_w[1:])])
        n_clusters = int(cluster[-1]) + 1
        seen_line = (np.abs(win[:, None] - self.q_obs[None, :]) <= np.maximum(tol_w[:, None], self.tol[None, :])).any(axis=1)
        seen = np.zeros(n_clusters, bool)
        np.logical_or.at(seen, cluster, seen_line)
        return matched, float((~seen).sum()) / n_clusters

    def group_fit(self, number: int) -> tuple[float, float]:
        """The best (matched − missing, by matched − missing) over the settings of the group's system."""
        best = None
        for S in settings(crystal_system(number)):
            allowed = is_allowed(number, self.hkl @ S.T)
            m, miss = self.fit(allowed)
            if best is None or m - miss > best[0] - best[1] + 1e-12:
                best = (m, miss)
        return best


def _embed(p6: np.ndarray, perm) -> np.ndarray:
    """p6 of the same lattice with the axes permuted (new axis i = old axis perm[i])."""
    g = np.array([[p6[0], p6[3] / 2, p6[4] / 2], [p6[3] / 2, p6[1], p6[5] / 2], [p6[4] / 2, p6[5] / 2, p6[2]]])
    g = g[np.ix_(perm, perm)]
    return p6_from_metric(g)


def cells_for_system(cells, system: str) -> list[tuple[np.ndarray, object]]:
    """(p6 in a setting of crystal system ``system``, source cell) for every indexed cell usable for a group
    of that crystal system (module docstring)."""
    from xrdid.indexing.lattice import CRYSTAL_SYSTEMS_OF, primitive_lattice

    out = []
    for c in cells:
        lat_sys = c.system
        if system in CRYSTAL_SYSTEMS_OF[lat_sys] or system == "orthorhombic" and lat_sys in ("cubic", "tetragonal") or system == "tetragonal" and lat_sys == "cubic":
            out.append((c.p6, c))
        elif system == "monoclinic" and lat_sys in ("cubic", "tetragonal", "orthorhombic"):
            for perm in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
                out.append((_embed(c.p6, perm), c))
        elif system == "triclinic":
            lat = niggli(primitive_lattice(c.p6, c.centring))
            rec = lat.reciprocal_lattice_crystallographic.matrix
            out.append((p6_from_metric(rec @ rec.T), c))
    return out


def triclinic_p6(p6) -> np.ndarray:
    return TRANSFORM["triclinic"] @ np.asarray(p6)


if __name__ == "__main__":
    print(write_absences())
