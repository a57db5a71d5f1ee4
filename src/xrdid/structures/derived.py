r"""Crystals derived from real ones: the same structure type with other elements, cell and coordinates.

A real structure fixes a structure type — its space group, its occupied Wyckoff positions, how its
atoms pack. Each derived crystal keeps all of that and changes what a real family of isotypic compounds
changes (solid solutions, substitutions, temperature and pressure):

1. **Elements.** Each element (not H) is replaced, with probability ``substitute``, by a chemically
   similar one: an element of the allowed list whose Mendeleev number (Pettifor's chemical scale, as
   pymatgen gives it) is within ``max_mendeleev_distance``, drawn with weight
   :math:`\exp(-|ΔM|/3)`, that can take an oxidation state of the same sign (a cation stays a cation)
   and whose atomic radius is within a factor 1.35. The map is one-to-one, so no two orbits merge and
   the Wyckoff arrangement is kept.
2. **Cell.** Scaled isotropically by the cube root of the change of :math:`\sum r^3` (atomic radii),
   then strained by a random symmetric strain tensor averaged over the crystal's point-group
   rotations, :math:`\bar ε = \frac{1}{|G|}\sum_{R∈G} R ε R^T` (Cartesian), with components uniform in
   ±``strain``: a strain the symmetry allows, so a cubic cell is only rescaled, a tetragonal one changes
   c/a, a monoclinic one a, b, c and β.
3. **Free coordinates.** Each orbit's representative atom is displaced by a random vector (Gaussian,
   ``jitter_A`` Å rms per Cartesian component) projected onto the subspace its site symmetry allows
   (the mean of :math:`W δ` over the operations that fix the site), and the displacement is carried to
   every atom of the orbit by the operation that maps the representative onto it; special positions do
   not move, general ones do, and the space group is kept.

A draw whose shortest interatomic distance falls below ``min_distance_ratio`` of the parent's (scaled by
the cell change) is redrawn with half the jitter, up to three times. Every crystal is relabelled by
spglib (a supergroup can appear where a substitution happens to make two orbits equivalent), and carries
its parent's id, formula and space group, so the split keeps a structure type and all its derived
crystals on one side. Seeds derive from the parent's id, so the same parents give the same crystals in
any order and with any number of workers.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from xrdid.structures.synthetic import DEFAULT_ELEMENTS
from xrdid.structures.table import StructureError, describe_structure, write_structure_tables
from xrdid.structures.workers import map_tasks

log = logging.getLogger(__name__)

SOURCE = "derived"
_KEEP = frozenset({"H", "D"})  # too weak a scatterer to matter, and too unlike anything else to replace


@dataclass(frozen=True)
class DeriveSpec:
    """How many crystals to derive from each parent, and how far they may move from it.

    ``per_structure``: crystals per parent, one number or one per parent source ({source: number};
    a source not listed gets none).
    """

    per_structure: int | dict[str, int] = 10
    seed: int = 0
    substitute: float = 0.7
    max_mendeleev_distance: float = 10.0
    strain: float = 0.04
    jitter_A: float = 0.05
    min_distance_ratio: float = 0.7
    max_atoms: int = 200
    elements: Sequence[str] = DEFAULT_ELEMENTS
    symprec: float = 0.01

    def __post_init__(self):
        counts = self.per_structure.values() if isinstance(self.per_structure, dict) else [self.per_structure]
        if any(int(c) < 0 for c in counts) or not any(int(c) > 0 for c in counts):
            raise ValueError("derived: per_structure must be at least 1 (for at least one source)")
        if not 0 <= self.substitute <= 1:
            raise ValueError("derived: substitute is a probability (0-1)")
        if self.strain < 0 or self.jitter_A < 0:
            raise ValueError("derived: strain and jitter_A must be ≥ 0")


@functools.cache
def _element(symbol: str) -> tuple[float, frozenset[int], float] | None:
    """(Mendeleev number, signs of common oxidation states, atomic radius Å) or None when unknown."""
    import warnings

    from pymatgen.core import Element

    try:
        e = Element(symbol)
    except ValueError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for elements without tabulated data
        radius, mendeleev = e.atomic_radius, e.mendeleev_no
    if mendeleev is None or radius is None:
        return None
    signs = frozenset(int(np.sign(s)) for s in e.common_oxidation_states if s != 0) or frozenset({0})
    return float(mendeleev), signs, float(radius)


def substitution_candidates(symbol: str, allowed: Sequence[str], max_distance: float) -> tuple[list[str], np.ndarray]:
    """Elements that may replace ``symbol`` and their relative weights (see the module docstring)."""
    mine = _element(symbol)
    if symbol in _KEEP or mine is None:
        return [], np.zeros(0)
    m, signs, radius = mine
    names, weights = [], []
    for other in allowed:
        props = _element(other)
        if other == symbol or other in _KEEP or props is None:
            continue
        m2, signs2, r2 = props
        if abs(m2 - m) > max_distance or not (signs & signs2) or not (1 / 1.35 <= r2 / radius <= 1.35):
            continue
        names.append(other)
        weights.append(np.exp(-abs(m2 - m) / 3.0))
    return names, np.asarray(weights, dtype=float)


def substitute_elements(elements: Sequence[str], spec: DeriveSpec, rng: np.random.Generator) -> dict[str, str]:
    """A one-to-one map of the crystal's elements (unchanged ones map to themselves)."""
    mapping: dict[str, str] = {}
    used = set(elements)
    for el in rng.permutation(sorted(elements)):
        el = str(el)
        mapping[el] = el
        if rng.random() >= spec.substitute:
            continue
        names, weights = substitution_candidates(el, spec.elements, spec.max_mendeleev_distance)
        keep = [i for i, n in enumerate(names) if n not in used]
        if not keep:
            continue
        w = weights[keep] / weights[keep].sum()
        new = names[keep[int(rng.choice(len(keep), p=w))]]
        mapping[el] = new
        used.discard(el)
        used.add(new)
    return mapping


def symmetric_strain(lattice: np.ndarray, rotations: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Lattice (rows a, b, c) after a random strain averaged over the point group (module docstring)."""
    eps = rng.uniform(-amount, amount, size=(3, 3))
    eps = (eps + eps.T) / 2
    # Cartesian r = L^T f, so a fractional rotation W acts as R = L^T W L^-T.
    lt = lattice.T
    lt_inv = np.linalg.inv(lt)
    cart = [lt @ w @ lt_inv for w in rotations]
    eps_sym = sum(r @ eps @ r.T for r in cart) / len(cart)
    return lattice @ (np.eye(3) + eps_sym)  # rows a_i → (I + ε) a_i, ε symmetric


def _wrap(x: np.ndarray) -> np.ndarray:
    return x - np.round(x)


def symmetric_displacements(frac: np.ndarray, lattice: np.ndarray, dataset, sigma_A: float, rng: np.random.Generator) -> np.ndarray:
    """Fractional displacements of every atom, random per orbit and consistent with the symmetry."""
    rotations, translations = np.asarray(dataset.rotations, float), np.asarray(dataset.translations, float)
    equivalent = np.asarray(dataset.equivalent_atoms)
    inv_lattice = np.linalg.inv(lattice)
    out = np.zeros_like(frac)
    for rep in np.unique(equivalent):
        images = (rotations @ frac[rep]) + translations  # (n_ops, 3): where each operation sends the representative
        fixes = np.all(np.abs(_wrap(images - frac[rep])) < 1e-3, axis=1)
        delta = rng.normal(0.0, sigma_A, size=3) @ inv_lattice  # Cartesian Å → fractional
        delta = (rotations[fixes] @ delta).mean(axis=0)  # projected onto the site-symmetry subspace
        for j in np.flatnonzero(equivalent == rep):
            k = int(np.argmin(np.abs(_wrap(images - frac[j])).max(axis=1)))
            out[j] = rotations[k] @ delta
    return out


def _cubed_radius(symbol: str) -> float:
    props = _element(symbol)
    return props[2] ** 3 if props else 1.0


def _min_distance(structure) -> float:
    if len(structure) < 2:
        return float(min(structure.lattice.abc))
    d = structure.distance_matrix
    np.fill_diagonal(d, np.inf)
    return float(min(d.min(), min(structure.lattice.abc)))


def derive_seed(base_seed: int, parent_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{base_seed}:derived:{parent_id}".encode(), digest_size=8).digest(), "little")


def derive_count(spec: DeriveSpec, source: str) -> int:
    """Crystals to derive from a parent of ``source``."""
    if isinstance(spec.per_structure, dict):
        return int(spec.per_structure.get(source, 0))
    return int(spec.per_structure)


def derive_from(parent: dict, spec: DeriveSpec) -> tuple[list[dict], list[dict]]:
    """The crystals derived from one structures-table row (:func:`derive_count`), and failure records."""
    import spglib
    from pymatgen.core import Lattice, Structure

    from xrdid.structures.table import structure_from_row

    rng = np.random.default_rng(derive_seed(spec.seed, parent["id"]))
    rows, failures = [], []
    count = derive_count(spec, parent.get("source", ""))
    if count == 0:
        return rows, failures
    try:
        base = structure_from_row(parent)
        if len(base) > spec.max_atoms:
            raise StructureError(f"{len(base)} atoms, above max_atoms={spec.max_atoms}")
        lattice, frac = base.lattice.matrix, base.frac_coords
        species = [site.specie.symbol for site in base]
        numbers = [site.specie.Z for site in base]
        dataset = spglib.get_symmetry_dataset((lattice, frac, numbers), symprec=spec.symprec)
        if dataset is None:
            raise StructureError("spglib found no symmetry for the parent")
        d0 = _min_distance(base)
    except Exception as exc:
        return [], [{"id": f"{parent['id']}~*", "source": SOURCE, "reason": f"parent unusable: {type(exc).__name__}: {exc}"}]
    for k in range(count):
        id = f"{parent['id']}~d{k}"
        try:
            mapping = substitute_elements(sorted(set(species)), spec, rng)
            new_species = [mapping[s] for s in species]
            volume_ratio = sum(_cubed_radius(mapping[s]) for s in species) / sum(_cubed_radius(s) for s in species)
            scale = float(np.clip(volume_ratio, 0.6, 1.6)) ** (1 / 3)
            new_lattice = symmetric_strain(lattice * scale, dataset.rotations, spec.strain, rng)
            jitter = spec.jitter_A
            for _attempt in range(4):
                moved = frac + symmetric_displacements(frac, new_lattice, dataset, jitter, rng)
                structure = Structure(Lattice(new_lattice), new_species, moved)
                if _min_distance(structure) >= spec.min_distance_ratio * d0 * scale:
                    break
                jitter /= 2
            else:
                raise StructureError(f"atoms closer than {spec.min_distance_ratio:g} × the parent's shortest distance after 4 draws")
            rows.append(describe_structure(structure, id=id, source=SOURCE, symprec=spec.symprec, parent=parent))
        except StructureError as exc:
            failures.append({"id": id, "source": SOURCE, "reason": str(exc)})
        except Exception as exc:  # one draw never stops the source
            failures.append({"id": id, "source": SOURCE, "reason": f"{type(exc).__name__}: {exc}"})
    return rows, failures


def _derive_task(task: tuple[dict, DeriveSpec]) -> tuple[list[dict], list[dict]]:
    return derive_from(*task)


def derive_structures(
    parents: Sequence[str | Path], spec: DeriveSpec, *, out: str | Path, failed_out: str | Path, workers: int = 1
) -> tuple[int, int]:
    """Derive ``spec.per_structure`` crystals from every row of the ``parents`` structures tables."""
    columns = ["id", "source", "formula", "space_group", "lattice", "species", "frac_coords", "occupancies"]
    parent_rows = []
    for path in parents:
        names = pq.read_schema(path).names
        # The arrays; the CIF only from an older table that has none.
        wanted = [c for c in columns if c in names] + (["cif"] if "lattice" not in names and "cif" in names else [])
        parent_rows += pq.read_table(path, columns=wanted).to_pylist()
    tasks = [(row, spec) for row in parent_rows]
    t0 = time.perf_counter()
    results = map_tasks(_derive_task, tasks, workers, chunksize=4)
    rows = [r for rs, _ in results for r in rs]
    failures = [f for _, fs in results for f in fs]
    elapsed = time.perf_counter() - t0
    relabelled = sum(r["space_group"] != r["parent_space_group"] for r in rows)
    log.info(
        "derived %d crystals from %d parents in %.0f s (%.1f/s, %d workers); %d failed; %d in another space group than their parent",
        len(rows), len(parent_rows), elapsed, len(rows) / max(elapsed, 1e-9), workers, len(failures), relabelled,
    )
    return write_structure_tables(rows, failures, out, failed_out)
