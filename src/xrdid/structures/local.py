"""The ``local`` structure source: every CIF under a folder, parsed with pymatgen.

Each data block of each file is one candidate structure, with the id ``<relative path>#<block index>``
(POSIX separators, index from 0 in file order), so ids are stable across machines and re-runs and
unique within the folder. A block that cannot be used — unparseable, partially occupied, a degenerate
cell, a cell spglib cannot symmetrise — is written to the failures table with its reason; nothing is
fatal and nothing is dropped silently. Blocks that carry neither a cell nor atom sites (the
publication-only ``data_global`` block of IUCr CIFs) are not structures and are skipped, with a count
in the log.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

from xrdid.structures.table import StructureError, describe_structure, write_structure_tables

log = logging.getLogger(__name__)

SOURCE = "local"
CIF_SUFFIXES = (".cif", ".mcif")  # compared case-insensitively: *.cif, *.CIF, *.mcif
# Tags that carry the space-group number the CIF's authors gave (CIF1 and CIF2/mmCIF spellings).
SPACE_GROUP_TAGS = (
    "_space_group_it_number",
    "_space_group.it_number",
    "_symmetry_int_tables_number",
    "_symmetry.int_tables_number",
)


def find_cifs(folder: str | Path) -> list[Path]:
    """All CIF files under ``folder`` (recursively), sorted by relative path for a stable order."""
    folder = Path(folder)
    return sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() in CIF_SUFFIXES and p.is_file()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )


def load_local(
    folder: str | Path, *, out: str | Path, failed_out: str | Path, symprec: float = 0.01
) -> tuple[int, int]:
    """Parse every CIF under ``folder`` into the structures table ``out`` and failures ``failed_out``.

    ``symprec`` (Å) is spglib's tolerance for ``space_group``; ``space_group_source`` is the number
    the CIF states (``_space_group_IT_number`` or ``_symmetry_Int_Tables_number``), null when absent.
    Returns ``(n_structures, n_failed)``. Raises only when ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"local structures folder {folder} does not exist or is not a directory")
    files = find_cifs(folder)
    if not files:
        log.warning("no CIF files (*.cif, *.mcif) under %s", folder)
    rows: list[dict] = []
    failures: list[dict] = []
    skipped = 0
    for path in files:
        rel = path.relative_to(folder).as_posix()
        file_rows, file_failures, file_skipped = load_cif_file(path, rel, symprec)
        rows += file_rows
        failures += file_failures
        skipped += file_skipped
    log.info(
        "%d CIF files under %s: %d structures, %d failed, %d metadata-only blocks skipped",
        len(files), folder, len(rows), len(failures), skipped,
    )
    return write_structure_tables(rows, failures, out, failed_out)


def load_cif_file(path: Path, rel: str, symprec: float, source: str = SOURCE) -> tuple[list[dict], list[dict], int]:
    """Rows, failures and the number of skipped metadata blocks for one CIF file, with ids ``<rel>#<block>``."""

    def failure(id: str, reason: str) -> dict:
        return {"id": id, "source": source, "reason": reason}

    try:
        blocks = _split_blocks(_read_text(path))
    except OSError as exc:
        return [], [failure(f"{rel}#0", f"unreadable file: {_describe(exc)}")], 0
    if not blocks:
        return [], [failure(f"{rel}#0", "unparseable CIF: no data_ block")], 0

    rows, failures, skipped = [], [], 0
    for index, block in enumerate(blocks):
        id = f"{rel}#{index}"
        if isinstance(block, Exception):
            failures.append(failure(id, f"unparseable CIF block: {_describe(block)}"))
            continue
        if not _looks_like_structure(block):
            log.debug("%s: block data_%s has no cell or atom sites; skipped", id, block.header)
            skipped += 1
            continue
        try:
            structure = _parse_block(block)
            rows.append(
                describe_structure(
                    structure,
                    id=id,
                    source=source,
                    symprec=symprec,
                    space_group_source=stated_space_group(block),
                )
            )
        except StructureError as exc:
            failures.append(failure(id, str(exc)))
        except Exception as exc:
            failures.append(failure(id, _describe(exc)))
    return rows, failures, skipped


def _split_blocks(text: str) -> list:
    """Each ``data_`` block of a CIF as a pymatgen CifBlock, or the exception that parsing it raised.

    Done here rather than by ``CifFile.from_str``, which fails the whole file for one malformed block
    and keeps only the last of several blocks with the same name. Split as pymatgen splits.
    """
    from pymatgen.io.cif import CifBlock

    blocks: list = []
    for piece in re.split(r"^\s*data_", f"x\n{text}", flags=re.MULTILINE)[1:]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                blocks.append(CifBlock.from_str(f"data_{piece}"))
        except Exception as exc:
            blocks.append(exc)
    return blocks


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Older CIFs from vendor software are often Latin-1; every byte sequence decodes in it.
        return data.decode("latin-1")


def _looks_like_structure(block) -> bool:
    if "powder_pattern" in block.header:  # measured-pattern blocks (Pauling file); pymatgen skips them too
        return False
    keys = {k.lower() for k in block.data}
    return any(k.startswith(("_cell_length", "_cell.length", "_atom_site_", "_atom_site.")) for k in keys)


def _parse_block(block):
    """A pymatgen Structure from one CIF block, raising StructureError with pymatgen's reasons.

    The block is re-serialised and parsed on its own so that errors and warnings are attributed to it
    (``CifParser.parse_structures`` only reports a section number and skips the block).
    """
    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parser = CifParser.from_str(str(block))
            structures = parser.parse_structures(primitive=False, on_error="raise")
        except Exception as exc:
            # parse_structures wraps the real error as "No structure parsed for section N"; report the cause.
            cause = exc.__cause__ or exc
            if isinstance(cause, KeyError):
                reason = f"missing CIF tag {cause}"
            elif "singular matrix" in str(cause).lower() or "below threshold" in str(cause):
                # pymatgen refuses a (near-)zero-volume lattice before describe_structure sees it.
                reason = f"degenerate cell (zero or near-zero volume): {_describe(cause)}"
            else:
                reason = _describe(cause)
            notes = _warning_text(caught, exclude=str(exc))
            raise StructureError(f"unparseable CIF block: {reason}{notes}") from exc
    if len(structures) != 1:  # pragma: no cover — one block in, one structure out
        raise StructureError(f"unparseable CIF block: pymatgen returned {len(structures)} structures")
    if caught:
        log.debug("pymatgen warnings for block data_%s: %s", block.header, _warning_text(caught))
    return structures[0]


def stated_space_group(block) -> int | None:
    """The space-group number a CIF block states, or None when absent, unknown ('?', '.') or invalid."""
    lowered = {k.lower(): v for k, v in block.data.items()}
    for tag in SPACE_GROUP_TAGS:
        value = lowered.get(tag)
        if isinstance(value, list):  # a looped value: take the first
            value = value[0] if value else None
        if value is None:
            continue
        match = re.match(r"\s*(\d+)", str(value))
        if match and 1 <= int(match.group(1)) <= 230:
            return int(match.group(1))
    return None


def _describe(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _warning_text(caught, exclude: str = "") -> str:
    messages = []
    for w in caught:
        text = " ".join(str(w.message).split())
        if text and text not in exclude and text not in messages:
            messages.append(text)
    return f" (pymatgen warnings: {'; '.join(messages)})" if messages else ""
