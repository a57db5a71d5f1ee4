"""Random symmetric crystals for all 230 space groups, seeded, the embedded default source.

Two generators: ``wyckoff`` (default, :mod:`xrdid.structures.wyckoff`: direct placement on pyxtal's
Wyckoff positions, about 100 crystals per second per core) and ``pyxtal`` (``pyxtal.from_random``, about
one per second per core, bounded by a wall-clock limit because a few of its calls stall for minutes).

Each structure's id is ``syn-{requested group:03d}-{index:05d}``; its random seed derives from that id
and the base seed alone, so the same config gives the same crystals whatever the number of workers.
Every crystal is labelled by spglib on the generated structure (``space_group``), not by the group
that was requested (kept as ``space_group_source``): pyxtal often returns a supergroup.
Failures are recorded in the failures table.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import signal
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xrdid.structures.table import StructureError, describe_structure, write_structure_tables
from xrdid.structures.workers import map_tasks
from xrdid.structures.wyckoff import check_species_weights, draw_n_species

log = logging.getLogger(__name__)

# Elements drawn for random crystals: stable, not noble gases, up to Bi, as in common training sets.
DEFAULT_ELEMENTS: tuple[str, ...] = ("H", "Li", "Be", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi")


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate: ``per_group`` crystals for each of ``space_groups``."""

    space_groups: Sequence[int]
    per_group: int
    seed: int = 0
    max_elements: int = 3
    # Relative weights of 1..max_elements distinct elements per crystal; None: uniform.
    species_weights: tuple[float, ...] | None = None
    # Share of wyckoff-generator crystals whose occupied Wyckoff positions follow real crystals'
    # combinations (xrdid.structures.wyckoff.wyckoff_statistics); the rest are random.
    wyckoff_statistics: float = 0.0
    max_atoms: int = 48  # atoms in the conventional cell
    elements: Sequence[str] = DEFAULT_ELEMENTS
    symprec: float = 0.01
    timeout_s: float = 5.0
    max_attempts: int = 8
    # Structures derived from each pyxtal crystal (the crystal itself included) by substituting its
    # elements and straining its lattice within the metric of its crystal system: the same Wyckoff
    # arrangement with other scattering powers and cell shape, at a fraction of pyxtal's cost.
    variants: int = 1
    variant_strain: float = 0.08
    generator: str = "wyckoff"  # wyckoff | pyxtal

    def __post_init__(self):
        # Checked here too, so a bad value stops the run before any worker starts.
        if self.species_weights is not None:
            check_species_weights(self.species_weights, self.max_elements)


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):  # pragma: no cover - only reached on a stalled pyxtal call
    raise _Timeout()


def structure_seed(base_seed: int, structure_id: str) -> int:
    digest = hashlib.blake2b(f"{base_seed}:{structure_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _composition(group, rng: np.random.Generator, spec: SyntheticSpec) -> tuple[list[str], list[int]] | None:
    """Random species and numbers of atoms that Wyckoff multiplicities of ``group`` can realise."""
    mults = sorted({w.multiplicity for w in group.Wyckoff_positions})
    n_species = draw_n_species(rng, spec.max_elements, spec.species_weights)
    species = [str(e) for e in rng.choice(np.asarray(spec.elements), size=n_species, replace=False)]
    counts = []
    for _ in species:
        # One or two orbits per species, favouring small multiplicities so cells stay small.
        n_orbits = 1 if rng.random() < 0.6 else 2
        weights = 1.0 / np.asarray(mults, dtype=float)
        picks = rng.choice(mults, size=n_orbits, p=weights / weights.sum())
        counts.append(int(picks.sum()))
    if sum(counts) > spec.max_atoms:
        return None
    return species, counts


@functools.lru_cache(maxsize=1)
def _share_pyxtal_tolerances() -> None:
    """Make pyxtal build its default tolerance matrix once per process, not once per call.

    ``pyxtal.symmetry`` calls ``check_images(..., tol=...)`` without a ``tm``, so every call builds
    ``Tol_matrix(prototype="atomic")`` (about 10 ms of pure Python), which was most of generation time.
    Passing the same default matrix built once gives identical results.
    """
    from pyxtal import symmetry
    from pyxtal.tolerance import Tol_matrix

    shared = Tol_matrix(prototype="atomic")
    original = symmetry.check_images

    @functools.wraps(original)
    def check_images(*args, tm=None, **kwargs):
        return original(*args, tm=shared if tm is None else tm, **kwargs)

    symmetry.check_images = check_images


def _variant(structure, rng: np.random.Generator, spec: SyntheticSpec):
    """A sibling of ``structure``: new elements, and a lattice strained within its metric constraints.

    Cell lengths that are equal stay equal (one factor for them), angles of 90° or 120° stay fixed and
    the others move by up to 3°, so the symmetry is kept; the caller re-checks it with spglib anyway.
    """
    from pymatgen.core import Lattice, Structure

    lengths = np.array(structure.lattice.abc)
    angles = np.array(structure.lattice.angles)
    new_lengths = lengths.copy()
    done = np.zeros(3, bool)
    for i in range(3):
        if done[i]:
            continue
        same = np.isclose(lengths, lengths[i], rtol=1e-6) & ~done
        new_lengths[same] = lengths[i] * rng.uniform(1 - spec.variant_strain, 1 + spec.variant_strain)
        done |= same
    special = np.isclose(angles, 90.0, atol=1e-4) | np.isclose(angles, 120.0, atol=1e-4) | np.isclose(angles, 60.0, atol=1e-4)
    new_angles = np.where(special, angles, angles + rng.uniform(-3.0, 3.0, 3))
    old = sorted({site.specie.symbol for site in structure})
    pool = [e for e in spec.elements if e not in old] or list(spec.elements)
    new = [str(e) for e in rng.choice(np.asarray(pool), size=len(old), replace=False)]
    mapping = dict(zip(old, new))
    lattice = Lattice.from_parameters(*new_lengths, *new_angles)
    return Structure(lattice, [mapping[site.specie.symbol] for site in structure], structure.frac_coords)


def generate_one(task: tuple[str, int, SyntheticSpec]) -> tuple[list[dict], list[dict]]:
    """Generate one pyxtal crystal and its variants: returns (rows, failures)."""
    structure_id, group_number, spec = task
    structure, row, failure = _generate_parent(structure_id, group_number, spec)
    if failure is not None:
        return [], [failure]
    rows = [row]
    for v in range(1, spec.variants):
        vid = f"{structure_id}-v{v}"
        rng = np.random.default_rng(structure_seed(spec.seed, vid))
        for _attempt in range(3):
            try:
                vrow = describe_structure(
                    _variant(structure, rng, spec), id=vid, source="synthetic", symprec=spec.symprec,
                    space_group_source=group_number,
                )
            except (StructureError, ValueError):
                continue
            if vrow["space_group"] == row["space_group"]:
                rows.append(vrow)
                break
    return rows, []


def _generate_parent(structure_id: str, group_number: int, spec: SyntheticSpec):
    """One crystal of ``group_number``: (structure, row, None) or (None, None, failure)."""
    if spec.generator == "wyckoff":
        return _generate_parent_wyckoff(structure_id, group_number, spec)
    if spec.generator != "pyxtal":
        raise ValueError(f"unknown synthetic generator {spec.generator!r} (wyckoff | pyxtal)")
    from pyxtal import pyxtal
    from pyxtal.symmetry import Group

    _share_pyxtal_tolerances()
    warnings.filterwarnings("ignore", module="pyxtal")
    rng = np.random.default_rng(structure_seed(spec.seed, structure_id))
    group = Group(group_number)
    reason = "no composition fitted the Wyckoff positions"
    fallback = None
    for _attempt in range(spec.max_attempts):
        comp = _composition(group, rng, spec)
        if comp is None:
            continue
        species, counts = comp
        crystal = pyxtal()
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, spec.timeout_s)
        try:
            # pyxtal prints diagnostics to stdout; keep the job log readable.
            with contextlib.redirect_stdout(io.StringIO()):
                crystal.from_random(3, group_number, species, counts, random_state=int(rng.integers(2**31)))
                structure = crystal.to_pymatgen()
        except _Timeout:
            reason = f"pyxtal stalled past {spec.timeout_s:g} s"
            continue
        except Exception as exc:  # pyxtal raises many types for impossible compositions
            reason = f"pyxtal: {type(exc).__name__}: {exc}"[:300]
            continue
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        if not crystal.valid:
            reason = "pyxtal returned an invalid crystal"
            continue
        row, reason = _describe(structure, structure_id, group_number, spec)
        if row is None:
            continue
        if row["space_group"] == group_number:
            return structure, row, None
        # pyxtal gave a supergroup (special positions only, or coincident parameters): try again so
        # that groups stay balanced, but keep it as a correctly labelled fallback.
        fallback = fallback or (structure, row, None)
    if fallback is not None:
        return fallback
    return None, None, {"id": structure_id, "source": "synthetic", "reason": reason}


def _describe(structure, structure_id: str, group_number: int, spec: SyntheticSpec, dataset=None):
    """(row, None) for a usable crystal, else (None, the reason)."""
    try:
        return describe_structure(
            structure, id=structure_id, source="synthetic", symprec=spec.symprec,
            space_group_source=group_number, dataset=dataset,
        ), None
    except StructureError as exc:
        return None, str(exc)


def _generate_parent_wyckoff(structure_id: str, group_number: int, spec: SyntheticSpec):
    """Like the pyxtal path, with :func:`xrdid.structures.wyckoff.random_crystal`.

    A draw is cheap (a few ms), so it gets four times the attempts. About a third of first draws come
    out in a supergroup (only special positions occupied, or free parameters near special values); the
    draws after one then start from the position with the most free parameters.
    """
    import spglib
    from pymatgen.core import Lattice, Structure

    from xrdid.structures.wyckoff import random_crystal

    rng = np.random.default_rng(structure_seed(spec.seed, structure_id))
    reason = "no Wyckoff placement found"
    fallback = None
    elements = tuple(spec.elements)
    for _attempt in range(4 * spec.max_attempts):
        crystal = random_crystal(
            group_number, rng, elements=elements, max_elements=spec.max_elements, species_weights=spec.species_weights,
            statistics_fraction=spec.wyckoff_statistics, max_atoms=spec.max_atoms,
            most_free=fallback is not None,
        )
        if crystal is None:
            continue
        lattice, species, coords = crystal
        # Label from the arrays first: a crystal is described (CIF, formula: the costly part) only when
        # it is kept, i.e. in the requested group, or the first fallback.
        numbers = [elements.index(e) + 1 for e in species]
        try:
            dataset = spglib.get_symmetry_dataset((lattice, coords, numbers), symprec=spec.symprec)
        except Exception:  # newer spglib raises where older returned None
            dataset = None
        if dataset is None:
            reason = f"spglib could not find the symmetry at symprec={spec.symprec}"
            continue
        if int(dataset.number) != group_number and fallback is not None:
            continue
        structure = Structure(Lattice(lattice), species, coords)
        row, reason = _describe(structure, structure_id, group_number, spec, dataset)
        if row is None:
            continue
        if row["space_group"] == group_number:
            return structure, row, None
        fallback = fallback or (structure, row, None)
    if fallback is not None:
        return fallback
    return None, None, {"id": structure_id, "source": "synthetic", "reason": reason}


def generate_synthetic(spec: SyntheticSpec, *, out: str | Path, failed_out: str | Path, workers: int = 1) -> tuple[int, int]:
    """Generate the synthetic structures table (and its failures table) with ``workers`` processes."""
    parents = -(-spec.per_group // max(spec.variants, 1))
    tasks = [
        (f"syn-{group:03d}-{i:05d}", int(group), spec)
        for group in spec.space_groups
        for i in range(parents)
    ]
    start = time.perf_counter()
    results = map_tasks(generate_one, tasks, workers, chunksize=4)
    rows, failures, per_group = [], [], {}
    for task_rows, task_failures in results:
        failures.extend(task_failures)
        for r in task_rows:
            # Keep at most per_group structures per requested group.
            n = per_group.get(r["space_group_source"], 0)
            if n < spec.per_group:
                per_group[r["space_group_source"]] = n + 1
                rows.append(r)
    elapsed = time.perf_counter() - start
    relabelled = sum(r["space_group"] != r["space_group_source"] for r in rows)
    log.info(
        "generated %d crystals in %.1f s (%.1f/s with %d workers); %d labelled with a different "
        "space group than requested (spglib, symprec=%g)",
        len(rows), elapsed, len(rows) / max(elapsed, 1e-9), workers, relabelled, spec.symprec,
    )
    return write_structure_tables(rows, failures, out, failed_out)
