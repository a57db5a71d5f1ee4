"""The ``local`` structure source: every CIF under a folder, read into crystal arrays in parallel.

Each data block of each file is one candidate structure, with the id ``<relative path>#<block index>``
(POSIX separators, index from 0 in file order), so ids are stable across machines and re-runs and
unique within the folder. Blocks are read by :mod:`xrdid.structures.cif` (gemmi, with pymatgen as the
fallback). A block that cannot be used — unparseable, partially occupied, a degenerate cell, a cell
spglib cannot symmetrise — is written to the failures table with its reason; nothing is fatal and
nothing is dropped silently. Blocks that carry neither a cell nor atom sites (the publication-only
``data_global`` block of IUCr CIFs) are not structures and are skipped, with a count in the log.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import time
from pathlib import Path

from xrdid.structures.cif import rows_from_cif
from xrdid.structures.table import StructureTableWriter, import_what_describing_needs

log = logging.getLogger(__name__)

SOURCE = "local"
CIF_SUFFIXES = (".cif", ".mcif")  # compared case-insensitively: *.cif, *.CIF, *.mcif


def find_cifs(folder: str | Path) -> list[Path]:
    """All CIF files under ``folder`` (recursively), sorted by relative path for a stable order."""
    folder = Path(folder)
    return sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() in CIF_SUFFIXES and p.is_file()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )


def load_local(
    folder: str | Path, *, out: str | Path, failed_out: str | Path, symprec: float = 0.01, workers: int = 1
) -> tuple[int, int]:
    """Read every CIF under ``folder`` into the structures table ``out`` and failures ``failed_out``.

    ``symprec`` (Å) is spglib's tolerance for ``space_group``; ``space_group_source`` is the number
    the CIF states (``_space_group_IT_number`` or ``_symmetry_Int_Tables_number``), null when absent.
    ``workers`` processes read the files; rows keep the sorted file order whatever their number.
    Returns ``(n_structures, n_failed)``. Raises only when ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"local structures folder {folder} does not exist or is not a directory")
    files = find_cifs(folder)
    if not files:
        log.warning("no CIF files (*.cif, *.mcif) under %s", folder)
    tasks = [(str(path), path.relative_to(folder).as_posix()) for path in files]
    read = functools.partial(_read_file, source=SOURCE, symprec=symprec)
    return write_cif_rows(tasks, read, out=out, failed_out=failed_out, workers=workers, what=f"CIF files under {folder}")


def write_cif_rows(tasks, read, *, out, failed_out, workers: int, what: str) -> tuple[int, int]:
    """Run ``read`` on every task (in ``workers`` processes, results in task order) and stream its
    ``(rows, failures, skipped)`` into the tables."""
    import_what_describing_needs()  # `read` may run in this process while the table is open

    start = time.perf_counter()
    skipped = 0
    with StructureTableWriter(out, failed_out) as writer:
        if workers > 1 and len(tasks) > 1:
            with mp.get_context("fork").Pool(workers) as pool:
                for rows, failures, n_skipped in pool.imap(read, tasks, chunksize=8):
                    writer.add(rows, failures)
                    skipped += n_skipped
        else:
            for task in tasks:
                rows, failures, n_skipped = read(task)
                writer.add(rows, failures)
                skipped += n_skipped
    elapsed = time.perf_counter() - start
    n_rows, n_failed = writer.counts
    log.info(
        "%d %s: %d structures, %d failed, %d metadata-only blocks skipped, in %.1f s (%d workers)",
        len(tasks), what, n_rows, n_failed, skipped, elapsed, workers,
    )
    return n_rows, n_failed


def load_cif_file(path: str | Path, rel: str, symprec: float, source: str = SOURCE) -> tuple[list[dict], list[dict], int]:
    """Rows, failures and the number of skipped metadata blocks for one CIF file, with ids ``<rel>#<block>``
    (any CIF source reads its files with this)."""
    return rows_from_cif(Path(path), id=rel, source=source, symprec=symprec)


def _read_file(task: tuple[str, str], *, source: str, symprec: float) -> tuple[list[dict], list[dict], int]:
    path, rel = task
    return load_cif_file(path, rel, symprec, source=source)
