"""Phase identification of a folder of patterns: a figure and a JSON per pattern, one summary table.

The workflow's ``identify_phases`` rule calls :func:`identify_folder`. A file that cannot be read or
fitted is recorded in the summary with its reason (the others are still fitted); every output is
written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path

from xrdid.io import write_text

log = logging.getLogger(__name__)

# Pattern files the readers accept (two-column text, PANalytical, pyFAI/McXtrace, vendor formats).
PATTERN_SUFFIXES = (".xy", ".xye", ".dat", ".csv", ".txt", ".xrdml", ".raw", ".brml", ".rasx", ".chi")

SUMMARY_FIELDS = ("file", "status", "phases", "weight_fractions", "alternatives", "same_structure", "stand_ins", "rwp",
                  "gof", "unexplained_peaks", "unexplained_fraction", "verdict", "seconds", "error")


def identify_folder(
    folder: str | os.PathLike,
    library: str | os.PathLike,
    summary_out: str | os.PathLike,
    figures_dir: str | os.PathLike,
    *,
    wavelength_A: float | None = None,
    lattice_sigma: float | None = None,
    max_phases: int | None = None,
) -> int:
    """Fit every pattern file in ``folder`` (recursively) against ``library``.

    Writes ``figures_dir/<stem>.png`` (the fit's figure) and ``<stem>.json`` (the fit, as ``xrdid phases
    --json``) per pattern, and ``summary_out`` (CSV, one row per file: phases, weight fractions,
    alternatives, Rwp, unexplained peaks, verdict, or the error). Returns the number of files that
    failed. Raises LibraryError for an unusable library (nothing could be fitted).
    """
    from xrdid.mixtures.library import LibraryError
    from xrdid.mixtures.pattern import identify_in_pattern
    from xrdid.mixtures.plot import save_fit_figure
    from xrdid.readers import PatternError, read_pattern

    folder, figures = Path(folder), Path(figures_dir)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in PATTERN_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no pattern files ({', '.join(PATTERN_SUFFIXES)})")
    figures.mkdir(parents=True, exist_ok=True)
    rows, failed = [], 0
    for f in files:
        stem = f.relative_to(folder).with_suffix("").as_posix().replace("/", "__")
        try:
            pattern = read_pattern(f, wavelength_A=wavelength_A)
            fit, n_lib = identify_in_pattern(pattern, library, wavelength_A=wavelength_A, max_phases=max_phases,
                                             lattice_sigma=lattice_sigma)
        except LibraryError:
            raise
        except (PatternError, ValueError) as e:
            log.error("%s", e)
            rows.append({"file": str(f), "status": "error", "error": str(e)})
            failed += 1
            continue
        save_fit_figure(fit, figures / f"{stem}.png", title=f.name)
        write_text(json.dumps({"file": str(f), "library": str(library), "n_library_phases": n_lib, **fit.to_dict()},
                              indent=1) + "\n", figures / f"{stem}.json")
        rows.append({
            "file": str(f), "status": "ok",
            "phases": ";".join(p.id for p in fit.phases),
            "weight_fractions": ";".join(f"{p.weight_fraction:.4f}" for p in fit.phases),
            "alternatives": ";".join("|".join(a["id"] for a in p.alternatives) for p in fit.phases),
            "same_structure": ";".join("|".join(p.same_structure) for p in fit.phases),
            "stand_ins": ";".join(p.id for p in fit.stand_ins),
            "rwp": f"{fit.rwp:.5f}", "gof": f"{fit.gof:.3f}",
            "unexplained_peaks": ";".join(f"{u['two_theta_deg']:.3f}" for u in fit.unexplained),
            "unexplained_fraction": f"{fit.unexplained_fraction:.4f}", "verdict": fit.verdict,
            "seconds": f"{fit.seconds:.2f}",
        })
        log.info("%s: %s (%s)", f.name, ", ".join(p.formula for p in fit.phases) or "no phase", fit.verdict)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, restval="")
    w.writeheader()
    w.writerows(rows)
    write_text(buf.getvalue(), summary_out)
    return failed
