"""`xrdid simulate CIF_OR_DIR... [--wavelength Å | --instrument NAME] [--two-theta MIN MAX] [--out FILE]
[--format parquet|json|csv]`: stick patterns of crystal structures.

json/csv give one record per peak: ``two_theta`` (deg), ``intensity`` (100 at the strongest, as
pymatgen's XRDCalculator) and ``hkl``; parquet gives the instrument-independent sticks (``d`` in Å,
``f2m`` = |F|² x multiplicity, ``hkl``), one row per structure, down to the d visible at the largest
2θ. There is no default wavelength: it comes from ``--wavelength`` or ``--instrument``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

from xrdid.instrument import PRESETS as INSTRUMENTS

FORMATS = ("parquet", "json", "csv")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="stick patterns (2θ, intensity, hkl) of CIF files",
        description=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("inputs", nargs="+", metavar="CIF_OR_DIR", help="CIF files, or folders searched for *.cif")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--wavelength", type=float, metavar="Å", help="X-ray wavelength in Å")
    src.add_argument("--instrument", choices=sorted(INSTRUMENTS),
                     help="named preset (wavelength, 2θ range, resolution); json/csv output then also carries the "
                          "rendered pattern (json: a 'profile' per structure; csv with --out F: F's stem + .profile.csv)")
    p.add_argument("--two-theta", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="2θ range in degrees (default: the instrument's, or 5 90 with --wavelength)")
    p.add_argument("--out", type=Path, help="output file (default: standard output; parquet needs a file)")
    p.add_argument("--format", choices=FORMATS,
                   help="output format (default: from the --out suffix, else json)")
    p.set_defaults(run=run)


def _cif_files(inputs: list[str]) -> tuple[list[Path], list[str]]:
    files, errors = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() == ".cif")
            if not found:
                errors.append(f"{path}: folder contains no .cif files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            errors.append(f"{path}: no such file or folder")
    return files, errors


def _settings(args) -> tuple[float, float, float]:
    if args.instrument:
        inst = INSTRUMENTS[args.instrument]
        wavelength, lo, hi = inst.wavelength_A, inst.two_theta_min_deg, inst.two_theta_max_deg
    elif args.wavelength is not None:
        if not args.wavelength > 0:
            raise ValueError(f"--wavelength must be positive, got {args.wavelength}")
        wavelength, lo, hi = args.wavelength, 5.0, 90.0
    elif args.two_theta:
        raise ValueError("--two-theta needs a wavelength: give --wavelength Å or --instrument NAME "
                         f"({', '.join(sorted(INSTRUMENTS))}); there is no default (no silent Cu Kα)")
    else:
        raise ValueError("no wavelength: give --wavelength Å or --instrument NAME "
                         f"({', '.join(sorted(INSTRUMENTS))}); there is no default (no silent Cu Kα)")
    if args.two_theta:
        lo, hi = args.two_theta
    if not 0 <= lo < hi <= 180:
        raise ValueError(f"--two-theta must satisfy 0 <= MIN < MAX <= 180, got {lo} {hi}")
    return wavelength, lo, hi


def _format(args) -> str:
    if args.format:
        return args.format
    if args.out is not None and args.out.suffix.lower().lstrip(".") in FORMATS:
        return args.out.suffix.lower().lstrip(".")
    return "json"


def run(args) -> int:
    try:
        wavelength, lo, hi = _settings(args)
    except ValueError as err:
        log.error("%s", err)
        return 2
    fmt = _format(args)
    if fmt == "parquet" and args.out is None:
        log.error("--format parquet needs --out FILE")
        return 2

    from xrdid.simulate.sticks import compute_sticks, d_min_for, sticks_to_peaks
    from xrdid.structures.cif import read_cif_file

    files, errors = _cif_files(args.inputs)
    d_min = d_min_for(wavelength, hi)
    records = []  # (label, formula, sticks)
    for path in files:
        try:
            entries = [e for e in read_cif_file(path) if not e.skipped]
        except OSError as err:
            errors.append(f"{path}: cannot read: {err}")
            continue
        if not entries:
            errors.append(f"{path}: no structure in the file (no data_ block with a cell and atom sites)")
        for entry in entries:
            # One structure per file is labelled by the file; several by file#block index (as in the tables).
            label = str(path) if len(entries) == 1 else f"{path}#{entry.index}"
            if entry.crystal is None:
                errors.append(f"{label}: {entry.error}")
                continue
            try:
                records.append((label, entry.crystal.formula, compute_sticks(entry.crystal, d_min)))
            except Exception as err:  # one bad structure must not stop the batch
                errors.append(f"{label}: {type(err).__name__}: {err}")
    for msg in errors:
        log.error("%s", msg)

    if fmt == "parquet":
        _write_parquet(records, args.out, wavelength, lo, hi, d_min)
    else:
        from xrdid.io import write_text

        peaks = [(p, f, sticks_to_peaks(st, wavelength, lo, hi)) for p, f, st in records]
        profiles = _profiles(records, args.instrument, lo, hi) if args.instrument else None
        text = _to_json(peaks, wavelength, profiles) if fmt == "json" else _to_csv(peaks)
        if args.out is None:
            sys.stdout.write(text)
        else:
            write_text(text, args.out)
            if profiles is not None and fmt == "csv":
                profile_out = args.out.with_name(args.out.stem + ".profile.csv")
                write_text(_profiles_csv(records, profiles), profile_out)
                log.info("wrote the rendered pattern(s) to %s", profile_out)
    if args.out is not None:
        log.info("wrote %d pattern(s) to %s", len(records), args.out)
    return 1 if errors else 0


def _profiles(records, instrument: str, lo: float, hi: float) -> list[tuple]:
    """Clean rendered patterns (the instrument's profile, all its lines), scaled to 100 at the maximum."""
    import numpy as np
    import torch

    from xrdid.instrument import Augment, Renderer, StickBatch, get_instrument

    inst = get_instrument({"preset": instrument, "two_theta_min_deg": lo, "two_theta_max_deg": hi,
                           "n_points": max(512, round((hi - lo) / 0.01) + 1)})
    renderer = Renderer(inst, Augment(enabled=False))
    out = []
    for _, _, st in records:
        batch = StickBatch(torch.as_tensor(st.d, dtype=torch.float32)[None], torch.as_tensor(st.f2m, dtype=torch.float32)[None])
        y, _ = renderer(batch)
        out.append((inst.grid(), 100.0 * y[0].numpy().astype(np.float64)))
    return out


def _profiles_csv(records, profiles) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "two_theta", "intensity"])
    for (path, _, _), (x, y) in zip(records, profiles):
        for a, b in zip(x, y):
            w.writerow([str(path), f"{a:.4f}", f"{b:.4f}"])
    return buf.getvalue()


def _to_json(peaks, wavelength: float, profiles=None) -> str:
    out = []
    for n, (path, formula, pk) in enumerate(peaks):
        if profiles is not None:
            extra = {"profile": {"two_theta": [round(float(v), 4) for v in profiles[n][0]],
                                 "intensity": [round(float(v), 4) for v in profiles[n][1]]}}
        else:
            extra = {}
        out.append({
            "file": str(path),
            "formula": formula,
            "wavelength_A": wavelength,
            "peaks": [
                {"two_theta": float(t), "intensity": float(i), "hkl": [int(x) for x in h], "d": float(d)}
                for t, i, h, d in zip(pk["two_theta"], pk["intensity"], pk["hkl"], pk["d"])
            ],
            **extra,
        })
    return json.dumps(out, indent=1) + "\n"


def _to_csv(peaks) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "two_theta", "intensity", "hkl", "d"])
    for path, _, pk in peaks:
        for t, i, h, d in zip(pk["two_theta"], pk["intensity"], pk["hkl"], pk["d"]):
            w.writerow([str(path), f"{t:.6f}", f"{i:.6f}", " ".join(str(int(x)) for x in h), f"{d:.8f}"])
    return buf.getvalue()


def _write_parquet(records, out: Path, wavelength: float, lo: float, hi: float, d_min: float) -> None:
    import pyarrow as pa

    from xrdid.io import write_parquet

    table = pa.table({
        "file": pa.array([str(p) for p, _, _ in records], pa.string()),
        "formula": pa.array([f for _, f, _ in records], pa.string()),
        "d": pa.array([st.d for _, _, st in records], pa.list_(pa.float64())),
        "f2m": pa.array([st.f2m for _, _, st in records], pa.list_(pa.float64())),
        "hkl": pa.array([st.hkl.tolist() for _, _, st in records], pa.list_(pa.list_(pa.int32(), 3))),
    })
    meta = {"wavelength_A": wavelength, "two_theta_min_deg": lo, "two_theta_max_deg": hi, "d_min_A": d_min}
    table = table.replace_schema_metadata({b"xrdid.simulate": json.dumps(meta).encode()})
    write_parquet(table, out)
