r"""Lattices as reciprocal metrics: the algebra every indexing step shares.

A reflection hkl of a cell with reciprocal metric tensor G* lies at

    Q(hkl) = 1/d² = hᵀ G* h = A h² + B k² + C l² + D hk + E hl + F kl

(Å⁻², ``Q`` here is always 1/d², not 2π/d). The six numbers p6 = (A, B, C, D, E, F) are linear in the
data, so a lattice system is a linear subspace of them: p6 = T p with the system's free parameters p
(:data:`SYSTEMS`): cubic (a*²), tetragonal (a*², c*²), hexagonal axes (1/a², c*²: A = B = D = 4/(3a²)),
orthorhombic (a*², b*², c*²), monoclinic with b unique (A, B, C, E) and triclinic (all six). Rhombohedral
lattices are indexed on hexagonal axes with the R centring (−h + k + l = 3n, obverse).

Centring (:data:`CENTRINGS`) removes lines: I (h + k + l even), F (h, k, l all even or all odd),
A/B/C (k + l, h + l, h + k even), R (obverse −h + k + l = 3n; reverse h − k + l = 3n).

Cells go out in the conventional setting of their lattice and are compared as lattices
(:func:`same_lattice`): both reduced to a primitive Niggli cell (pymatgen) and matched up to an integer
change of basis (``Lattice.find_mapping``), so two descriptions of one lattice compare equal.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Lattice systems searched, highest symmetry first. "hexagonal" covers hP; rhombohedral is hR on hexagonal axes.
SYSTEMS = ("cubic", "tetragonal", "hexagonal", "rhombohedral", "orthorhombic", "monoclinic", "triclinic")
_T = {
    "cubic": [[1], [1], [1], [0], [0], [0]],
    "tetragonal": [[1, 0], [1, 0], [0, 1], [0, 0], [0, 0], [0, 0]],
    "hexagonal": [[4 / 3, 0], [4 / 3, 0], [0, 1], [4 / 3, 0], [0, 0], [0, 0]],
    "orthorhombic": [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]],
    "monoclinic": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
    "triclinic": np.eye(6).tolist(),
}
_T["rhombohedral"] = _T["hexagonal"]
TRANSFORM = {k: np.asarray(v, np.float64) for k, v in _T.items()}
N_PARAMS = {k: v.shape[1] for k, v in TRANSFORM.items()}
# Centrings possible in each system's conventional cell (P first; the search keeps the most restrictive
# one that every indexed line obeys).
CENTRINGS = {
    "cubic": ("P", "I", "F"),
    "tetragonal": ("P", "I"),
    "hexagonal": ("P", "R"),  # R: a rhombohedral lattice on hexagonal axes
    "rhombohedral": ("R",),
    "orthorhombic": ("P", "C", "A", "B", "I", "F"),
    "monoclinic": ("P", "C", "A", "I"),
    "triclinic": ("P",),
}
# Pearson-style lattice symbols (first letter of the Bravais lattice).
_LETTER = {"cubic": "c", "tetragonal": "t", "hexagonal": "h", "rhombohedral": "h", "orthorhombic": "o", "monoclinic": "m", "triclinic": "a"}
# Crystal systems whose space groups a lattice system can carry (trigonal groups: hP or hR).
CRYSTAL_SYSTEMS_OF = {
    "cubic": ("cubic",),
    "tetragonal": ("tetragonal",),
    "hexagonal": ("hexagonal", "trigonal"),
    "rhombohedral": ("trigonal",),
    "orthorhombic": ("orthorhombic",),
    "monoclinic": ("monoclinic",),
    "triclinic": ("triclinic",),
}
# Lattice points per conventional cell.
_MULTIPLICITY = {"P": 1, "I": 2, "A": 2, "B": 2, "C": 2, "F": 4, "R": 3}


def bravais_symbol(system: str, centring: str) -> str:
    """e.g. ("cubic", "F") → "cF", ("rhombohedral", "R") → "hR"."""
    return _LETTER[system] + ("R" if system == "rhombohedral" else centring)


def forms6(hkl: np.ndarray) -> np.ndarray:
    """(h², k², l², hk, hl, kl) per row of ``hkl`` (n, 3) → (n, 6) float64."""
    h, k, l = (np.asarray(hkl, np.float64)[:, i] for i in range(3))
    return np.column_stack([h * h, k * k, l * l, h * k, h * l, k * l])


def centring_allows(hkl: np.ndarray, centring: str) -> np.ndarray:
    """Boolean mask: which reflections the centring allows (module docstring)."""
    h, k, l = (np.asarray(hkl)[:, i].astype(np.int64) for i in range(3))
    if centring == "P":
        return np.ones(len(h), bool)
    if centring == "I":
        return (h + k + l) % 2 == 0
    if centring == "F":
        return ((h % 2) == (k % 2)) & ((k % 2) == (l % 2))
    if centring == "A":
        return (k + l) % 2 == 0
    if centring == "B":
        return (h + l) % 2 == 0
    if centring == "C":
        return (h + k) % 2 == 0
    if centring == "R":
        return (-h + k + l) % 3 == 0
    if centring == "R_reverse":
        return (h - k + l) % 3 == 0
    raise ValueError(f"unknown centring {centring!r}")


@lru_cache(maxsize=64)
def hkl_box(h: int, k: int, l: int) -> np.ndarray:
    """Reflections with |h| ≤ h, |k| ≤ k, |l| ≤ l, one of each ±pair (Friedel), without 000: (n, 3) int."""
    r = [np.arange(-m, m + 1) for m in (h, k, l)]
    g = np.stack(np.meshgrid(*r, indexing="ij"), -1).reshape(-1, 3)
    # Keep the first nonzero index positive.
    first = np.where(g[:, 0] != 0, g[:, 0], np.where(g[:, 1] != 0, g[:, 1], g[:, 2]))
    return g[first > 0]


def metric_from_p6(p6) -> np.ndarray:
    """The reciprocal metric tensor G* (3, 3) of p6 = (A, B, C, D, E, F)."""
    A, B, C, D, E, F = (float(v) for v in p6)
    return np.array([[A, D / 2, E / 2], [D / 2, B, F / 2], [E / 2, F / 2, C]])


def p6_from_metric(g: np.ndarray) -> np.ndarray:
    return np.array([g[0, 0], g[1, 1], g[2, 2], 2 * g[0, 1], 2 * g[0, 2], 2 * g[1, 2]])


def is_positive_definite(p6: np.ndarray) -> np.ndarray:
    """Row-wise for (n, 6): is G* positive definite (a real lattice)? Sylvester's criterion."""
    A, B, C, D, E, F = (p6[..., i] for i in range(6))
    m2 = A * B - D * D / 4
    det = A * (B * C - F * F / 4) - D / 2 * (D / 2 * C - F / 2 * E / 2) + E / 2 * (D / 2 * F / 2 - B * E / 2)
    return (A > 0) & (m2 > 0) & (det > 0)


def parameters(p6) -> tuple[float, float, float, float, float, float]:
    """a, b, c (Å), α, β, γ (°) of the real cell whose reciprocal metric is p6."""
    g = np.linalg.inv(metric_from_p6(p6))
    a, b, c = np.sqrt(np.diag(g))
    al = math.degrees(math.acos(np.clip(g[1, 2] / (b * c), -1, 1)))
    be = math.degrees(math.acos(np.clip(g[0, 2] / (a * c), -1, 1)))
    ga = math.degrees(math.acos(np.clip(g[0, 1] / (a * b), -1, 1)))
    return float(a), float(b), float(c), al, be, ga


def p6_from_parameters(a, b, c, alpha, beta, gamma) -> np.ndarray:
    """p6 of a real cell given by its parameters (Å, °)."""
    ca, cb, cg = (math.cos(math.radians(x)) for x in (alpha, beta, gamma))
    g = np.array([[a * a, a * b * cg, a * c * cb], [a * b * cg, b * b, b * c * ca], [a * c * cb, b * c * ca, c * c]])
    return p6_from_metric(np.linalg.inv(g))


def volume(p6) -> float:
    """Cell volume in Å³: 1/sqrt(det G*)."""
    return float(1.0 / math.sqrt(max(np.linalg.det(metric_from_p6(p6)), 1e-300)))


def real_lengths(p6: np.ndarray) -> np.ndarray:
    """Row-wise a, b, c (Å) for (n, 6) p6: sqrt of the diagonal of G = G*⁻¹ (cofactors over det)."""
    A, B, C, D, E, F = (p6[..., i] for i in range(6))
    d, e, f = D / 2, E / 2, F / 2
    det = A * (B * C - f * f) - d * (d * C - f * e) + e * (d * f - B * e)
    det = np.where(det > 0, det, np.nan)
    return np.sqrt(np.stack([(B * C - f * f) / det, (A * C - e * e) / det, (A * B - d * d) / det], -1))


def to_pymatgen(p6):
    from pymatgen.core import Lattice

    return Lattice.from_parameters(*parameters(p6))


def primitive_lattice(p6, centring: str):
    """The primitive lattice (pymatgen) of the conventional cell ``p6`` with ``centring``."""
    from pymatgen.core import Lattice

    m = to_pymatgen(p6).matrix
    P = {
        "P": np.eye(3),
        "I": np.array([[-0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5]]),
        "F": np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]),
        "C": np.array([[0.5, 0.5, 0], [-0.5, 0.5, 0], [0, 0, 1]]),
        "A": np.array([[1, 0, 0], [0, 0.5, 0.5], [0, -0.5, 0.5]]),
        "B": np.array([[0.5, 0, 0.5], [0, 1, 0], [-0.5, 0, 0.5]]),
        "R": np.array([[2 / 3, 1 / 3, 1 / 3], [-1 / 3, 1 / 3, 1 / 3], [-1 / 3, -2 / 3, 1 / 3]]),
    }[centring]
    return Lattice(P @ m)


def niggli(lattice):
    """Niggli-reduced lattice (pymatgen), with a tolerance loose enough for refined cells."""
    return lattice.get_niggli_reduced_lattice(tol=1e-3)


def same_lattice(lat1, lat2, *, ltol: float = 0.005, angle_tol_rel: float = 0.005) -> bool:
    """Are two (primitive) lattices the same within ``ltol`` (fraction of the lengths) and
    ``angle_tol_rel`` (fraction of the angles)? Compared as Niggli cells, up to a change of basis, so
    volumes must agree too (a supercell is not the same lattice)."""
    return same_reduced(niggli(lat1), niggli(lat2), ltol=ltol, angle_tol_rel=angle_tol_rel)


def same_reduced(n1, n2, *, ltol: float = 0.005, angle_tol_rel: float = 0.005) -> bool:
    """:func:`same_lattice` of two lattices already Niggli-reduced (:func:`niggli`). Their sorted lengths are
    the lattices' three successive minima, so lengths apart by more than 3 ``ltol`` rule a match out
    before pymatgen's search for a mapping."""
    if abs(n1.volume / n2.volume - 1) > 3 * ltol:
        return False
    if np.any(np.abs(np.sort(n1.abc) / np.sort(n2.abc) - 1) > 3 * ltol):
        return False
    angle_tol = angle_tol_rel * 90.0
    try:
        return n1.find_mapping(n2, ltol=ltol, atol=angle_tol) is not None
    except Exception:  # pymatgen raises on degenerate inputs; such a pair is not a match
        return False


@dataclass(frozen=True)
class LatticeType:
    """Lattice system, centring and the conventional cell of a lattice found by spglib (metric symmetry)."""

    system: str
    centring: str
    p6: np.ndarray


def lattice_symmetry(lattice, *, symprec_rel: float = 2e-3) -> LatticeType:
    """The Bravais lattice of a lattice (its metric symmetry) and its conventional cell, from spglib on one
    atom at the origin; ``symprec_rel`` scales spglib's distance tolerance with the cell size."""
    import spglib

    cell = (lattice.matrix, [[0.0, 0.0, 0.0]], [1])
    prec = symprec_rel * float(np.cbrt(abs(lattice.volume)))
    ds = spglib.get_symmetry_dataset(cell, symprec=prec, angle_tolerance=0.5)
    if ds is None:
        return LatticeType("triclinic", "P", p6_from_metric(np.linalg.inv(lattice.matrix @ lattice.matrix.T)))
    number = int(ds.number)
    symbol = str(ds.international)
    conv = np.asarray(ds.std_lattice, np.float64)
    # std_lattice is rotated by spglib; the metric is what matters.
    p6 = p6_from_metric(np.linalg.inv(conv @ conv.T))
    system = _system_of_number(number)
    centring = symbol[0]
    if system == "trigonal":
        system = "rhombohedral" if centring == "R" else "hexagonal"
    if system == "rhombohedral":
        centring = "R"
    return LatticeType(system, centring, p6)


def _system_of_number(n: int) -> str:
    for hi, name in ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"), (167, "trigonal"), (194, "hexagonal")):
        if n <= hi:
            return name
    return "cubic"


def multiplicity(centring: str) -> int:
    return _MULTIPLICITY[centring.split("_")[0]]


# The parity class (mod 2, in the coordinates of a and c) of the in-plane part of a monoclinic centring vector
# (b unique): C ½(a + b), A ½(b + c), I ½(a + b + c).
_MONOCLINIC_PARITY = {"C": (1, 0), "A": (0, 1), "I": (1, 1)}


def monoclinic_setting(p6, centring: str) -> tuple[np.ndarray, np.ndarray]:
    """The conventional cell of the monoclinic lattice with conventional cell ``p6`` (b unique) and ``centring``
    P, C, A or I: (p6', T), T the integer matrix whose rows are the new axes in the old ones (a' = T₀₀a + T₀₂c,
    b' = ±b, c' = T₂₀a + T₂₂c; det T = +1, so the handedness is kept), the new indices h' = T h. A centred
    lattice goes out C-centred (mC), a primitive one as mP.

    The translations perpendicular to b are the integer combinations of a and c in any of the three
    centrings (each centring vector has ½b), and a cell on two of them is C-centred exactly when a' is
    congruent (mod 2) to the centring vector's part in the ac plane (twice it: a for C, c for A, a + c
    for I). The rule: a' the shortest such translation (mP: the shortest of all), c' the shortest one
    completing the basis (|a'·c'| ≤ a'²/2, hence of the cells with this a', the one with β closest to
    90°), the signs chosen so that β ≥ 90° (c' → −c') and det T = +1 (b' → −b). A → C is then mostly the
    swap a' = c, c' = a (b' = −b); I → C puts the body diagonal's projection a + c (or a − c, the shorter
    of the class) as a'. C cells are reduced by the same rule, so every description of one mC lattice
    goes out as one cell. An mP cell whose a and c are reduced already (|a·c| ≤ min(a², c²)/2, β ≤ 120°)
    is kept as it is (T = 1 when β ≥ 90°): both orders of a and c are conventional."""
    g = np.linalg.inv(metric_from_p6(p6))
    m = np.array([[g[0, 0], g[0, 2]], [g[0, 2], g[2, 2]]])

    def norm2(x):
        return float(x @ m @ x)

    # Gauss-reduce (a, c) first: the shortest vector of a class mod 2 is then within one step of the
    # reduced basis (u, w, u ± w), so a small search finds it however oblique the found cell.
    u, w = np.array([1, 0]), np.array([0, 1])
    for _ in range(100):
        if norm2(u) > norm2(w):
            u, w = w, u
        n = round(float(u @ m @ w) / norm2(u))
        if n == 0:
            break
        w = w - n * u
    if centring == "P" and abs(m[0, 1]) <= min(m[0, 0], m[1, 1]) / 2 * (1 + 1e-9):
        x = np.array([1, 0])  # reduced already: a and c kept, in their order
    else:
        par = _MONOCLINIC_PARITY.get(centring)
        best = None
        for i, j in itertools.product(range(-2, 3), repeat=2):
            x = i * u + j * w
            if (par is not None and np.any((x - par) % 2)) or math.gcd(int(x[0]), int(x[1])) != 1:
                continue
            key = (round(norm2(x), 9), tuple(-x))  # ties (special metrics) broken the same way every time
            if best is None or key < best[0]:
                best = (key, x)
        x = best[1]
    # A completing vector y (x₀y₁ − x₁y₀ = ±1, extended Euclid), then shortened along x.
    y = _completing(x)
    y = y - round(float(x @ m @ y) / norm2(x)) * x
    if float(x @ m @ y) > 0:  # β < 90°: c' → −c'
        y = -y
    s = 1 if x[0] * y[1] - x[1] * y[0] > 0 else -1  # b' = ±b: det T = +1
    T = np.array([[x[0], 0, x[1]], [0, s, 0], [y[0], 0, y[1]]], dtype=np.int64)
    return (np.array(p6, np.float64) if np.array_equal(T, np.eye(3)) else transformed(p6, T)), T


# Orthorhombic A and B cells as C cells by a cyclic change of axes (det +1): A (a' = b, b' = c, c' = a), B (a' = c,
# b' = a, c' = b); the centred face becomes the ab face.
ORTHORHOMBIC_C_SETTING = {"A": np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]]), "B": np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]])}


def transformed(p6, T) -> np.ndarray:
    """p6 of the cell whose axes are the rows of ``T`` in the axes of ``p6``'s cell (indices h' = T h)."""
    g = np.linalg.inv(metric_from_p6(p6))
    T = np.asarray(T, np.float64)
    return p6_from_metric(np.linalg.inv(T @ g @ T.T))


def _completing(x) -> np.ndarray:
    """An integer y with x₀y₁ − x₁y₀ = ±1 for a primitive integer vector x (extended Euclid)."""
    a, b = int(x[0]), int(x[1])
    old_r, r, old_s, s_, old_t, t = a, b, 1, 0, 0, 1
    while r != 0:
        q = old_r // r
        old_r, r = r, old_r - q * r
        old_s, s_ = s_, old_s - q * s_
        old_t, t = t, old_t - q * t
    # old_s·a + old_t·b = ±1, so y = (−old_t, old_s) has a·y₁ − b·y₀ = ±1.
    return np.array([-old_t, old_s])
