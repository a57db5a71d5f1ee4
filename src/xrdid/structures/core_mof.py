"""The ``core_mof`` structure source: CoRE MOF 2019, experimental metal–organic frameworks.

CoRE MOF 2019 (Chung et al., J. Chem. Eng. Data 64 (2019) 5985; CC-BY-4.0) holds computation-ready
structures of metal–organic frameworks determined by diffraction and deposited in the CSD: real
large-cell, mostly low-symmetry crystals with strong low-angle reflections. The PyPI package
``core-mof==2019.1`` ships them as three archives (``CoRE_MOF/data/{2019-ASR,2019-FSR,2014}.tar.xz``);
they are read from the installed package without importing it.

* The archives are read in the order of ``datasets``; a structure whose CSD refcode (the file name's
  leading ``ABCDEF`` or ``ABCDEF01``) was already read from an earlier archive is a duplicate and left out.
* CIFs are read with gemmi (the files are P1 lists of every atom), so counting atoms costs little; a
  framework with more than ``max_atoms`` atoms in its cell is left out and recorded with that reason:
  the cost of its sticks grows with the cell volume over d³ and the training renderer keeps only the
  strongest 512 sticks of any pattern, so very large cells cost much and teach little.
* ``max_structures``: keep only that many, chosen by a hash of the refcode (a deterministic,
  unbiased subset), for tests and quick runs.
* spglib finds each framework's symmetry at ``symprec`` (the CIFs carry none); deuterium is read as H.
* Each framework is stored as arrays (what simulation reads) with its CIF text for provenance.

Ids: ``core_mof/<archive>/<file stem>``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tarfile
import time
from pathlib import Path

import numpy as np

from xrdid.structures.crystal import Crystal
from xrdid.structures.prototypes import package_data
from xrdid.structures.table import StructureError, describe_crystal, write_structure_tables
from xrdid.structures.workers import map_tasks
from xrdid.structures.wyckoff import lattice_matrix

log = logging.getLogger(__name__)

SOURCE = "core_mof"
DATASETS: tuple[str, ...] = ("2019-ASR", "2019-FSR", "2014")
PACKAGE = ("core-mof", "2019.1", "CoRE_MOF/data")
_REFCODE = re.compile(r"^([A-Z]{6}(?:\d{2})?)(?:_|$)")


def refcode(stem: str) -> str:
    """The CSD refcode a CoRE MOF file is named after (``ABAVIJ_clean`` → ``ABAVIJ``), else the stem."""
    match = _REFCODE.match(stem)
    return match.group(1) if match else stem


def read_cif_arrays(text: str) -> tuple[tuple[float, ...], list[str], list[list[float]], list[float]]:
    """(a, b, c, α, β, γ), element symbols, fractional coordinates and occupancies of every atom in the
    unit cell of the single data block of ``text``, read with gemmi; raises StructureError."""
    import gemmi

    try:
        block = gemmi.cif.read_string(text).sole_block()
        small = gemmi.make_small_structure_from_block(block)
        sites = small.get_all_unit_cell_sites()
    except Exception as exc:  # gemmi raises RuntimeError/ValueError with its parser's message
        raise StructureError(f"unparseable CIF: {type(exc).__name__}: {exc}") from None
    cell = small.cell
    params = (cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma)
    species = ["H" if s.element.name == "D" else s.element.name for s in sites]
    if any(sp == "X" for sp in species):
        raise StructureError("unknown element in the atom sites")
    return params, species, [[s.fract.x, s.fract.y, s.fract.z] for s in sites], [float(s.occ) for s in sites]


def _describe(task: tuple[str, str, float]) -> tuple[dict | None, dict | None]:
    """The structures-table row of one framework, as arrays (its CIF text kept for provenance)."""
    id, text, symprec = task
    try:
        params, species, frac, occ = read_cif_arrays(text)
        if min(occ, default=1.0) < 0.999:
            raise StructureError("partial occupancy (disordered sites are not simulated)")
        crystal = Crystal(
            lattice_matrix(*params), tuple(species), np.asarray(frac, dtype=np.float64).reshape(-1, 3), np.ones(len(species))
        )
        return describe_crystal(crystal, id=id, source=SOURCE, symprec=symprec, cif=text), None
    except StructureError as exc:
        return None, {"id": id, "source": SOURCE, "reason": str(exc)}
    except Exception as exc:  # one framework never stops the source
        return None, {"id": id, "source": SOURCE, "reason": f"{type(exc).__name__}: {exc}"}


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def candidates(datasets, max_atoms: int) -> tuple[list[tuple[str, str]], list[dict], int]:
    """(id, CIF text) of every first occurrence of a refcode with at most ``max_atoms`` atoms, the
    left-out ones as failure records, and the number of duplicates."""
    import gemmi

    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        raise ValueError(f"unknown CoRE MOF dataset(s) {', '.join(unknown)} (known: {', '.join(DATASETS)})")
    folder = package_data(*PACKAGE[::2], version=PACKAGE[1])
    seen: set[str] = set()
    kept, left_out, duplicates = [], [], 0
    for name in datasets:
        with tarfile.open(folder / f"{name}.tar.xz", mode="r:xz") as archive:
            for member in archive:
                if not member.isfile() or not member.name.lower().endswith(".cif"):
                    continue
                stem = Path(member.name).stem
                code = refcode(stem)
                if code in seen:
                    duplicates += 1
                    continue
                seen.add(code)
                id = f"core_mof/{name}/{stem}"
                text = archive.extractfile(member).read().decode("utf-8", errors="replace")
                try:
                    n_atoms = len(gemmi.cif.read_string(text).sole_block().find_values("_atom_site_fract_x"))
                except Exception as exc:  # noted and skipped; the rest of the archive is read
                    left_out.append({"id": id, "source": SOURCE, "reason": f"unparseable CIF: {exc}"})
                    continue
                if n_atoms == 0:
                    left_out.append({"id": id, "source": SOURCE, "reason": "unparseable CIF: no atom sites"})
                    continue
                if n_atoms > max_atoms:
                    left_out.append({"id": id, "source": SOURCE, "reason": f"left out: {n_atoms} atoms in the cell, above max_atoms={max_atoms}"})
                    continue
                kept.append((id, text))
    return kept, left_out, duplicates


def load_core_mof(
    *,
    out: str | Path,
    failed_out: str | Path,
    symprec: float = 0.01,
    datasets: tuple[str, ...] | list[str] = DATASETS,
    max_atoms: int = 200,
    max_structures: int | None = None,
    workers: int = 1,
) -> tuple[int, int]:
    """Build the structures table of CoRE MOF (see the module docstring); returns (n_rows, n_failed)."""
    t0 = time.perf_counter()
    kept, failures, duplicates = candidates(datasets, max_atoms)
    if max_structures is not None and len(kept) > max_structures:
        kept = sorted(kept, key=lambda item: _hash(refcode(item[0].rsplit("/", 1)[-1])))[:max_structures]
        kept.sort(key=lambda item: item[0])
    tasks = [(id, text, symprec) for id, text in kept]
    results = map_tasks(_describe, tasks, workers, chunksize=16)
    rows = [r for r, _ in results if r is not None]
    failures += [f for _, f in results if f is not None]
    log.info(
        "CoRE MOF (%s): %d structures, %d failed or left out, %d duplicate refcodes, %.0f s",
        ", ".join(datasets), len(rows), len(failures), duplicates, time.perf_counter() - t0,
    )
    return write_structure_tables(rows, failures, out, failed_out)
