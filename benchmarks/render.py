"""Rendering throughput: patterns per second on ONE CPU core (and on CUDA when present).

Real sticks: pyxtal random crystals over a spread of space groups (bounded calls), sticks down to the
instrument's d_min, the 512 strongest kept (as ``StickTable`` does). For each preset (cu: Kα1+Kα2,
mars: one line) and grid (8,500 and 4,096 points) it times the renderer clean and augmented, and the
reference measured in the same run: the naive dense evaluation, every peak's pseudo-Voigt on every grid
point (O(peaks × grid)), with the same physics as a clean render. ``--baseline REV`` also times the
renderer as it was at git revision REV, on the same sticks, alternating with the current one, and prints
current/baseline.

    .venv/bin/python benchmarks/render.py [--batch 128] [--seconds 3] [--structures 24] [--points 8500 4096]
        [--presets cu mars] [--baseline REV]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from xrdid.instrument import Augment, Renderer, StickBatch, get_instrument
from xrdid.instrument.render import _tch

GROUPS = [1, 2, 4, 14, 15, 19, 33, 61, 62, 70, 88, 122, 139, 148, 166, 176, 194, 198, 205, 216, 225, 227, 12, 63]


def structures(n: int):
    from pymatgen.core import Structure

    from xrdid.structures.synthetic import SyntheticSpec, generate_one

    warnings.filterwarnings("ignore")
    spec = SyntheticSpec(space_groups=[], per_group=1, timeout_s=3.0, max_attempts=4)
    out = []
    for i, g in enumerate(GROUPS[:n]):
        with contextlib.redirect_stderr(io.StringIO()):
            rows, _ = generate_one((f"bench-{i}", g, spec))
        out.extend(Structure.from_str(row["cif"], fmt="cif") for row in rows)
    return out


def stick_batch(structs, inst, B: int, max_peaks: int = 512) -> StickBatch:
    from xrdid.simulate.sticks import compute_sticks

    rows = []
    for s in structs:
        st = compute_sticks(s, inst.d_min_A)
        d, f = st.d, st.f2m
        if len(d) > max_peaks:
            top = np.argsort(f)[::-1][:max_peaks]
            d, f = d[top], f[top]
        rows.append((d, f))
    P = max(len(d) for d, _ in rows)
    D = np.zeros((B, P), np.float32)
    F = np.zeros((B, P), np.float32)
    for i in range(B):
        d, f = rows[i % len(rows)]
        D[i, : len(d)], F[i, : len(f)] = d, f
    return StickBatch(torch.from_numpy(D), torch.from_numpy(F))


def dense_reference(inst, sticks: StickBatch, size_nm: float = 150.0, chunk: int = 8):
    """Every peak on every grid point: Σ_p area_p · pV(2θ − c_p; Γ_p, η_p), normalised to max 1."""
    grid = torch.as_tensor(inst.grid(), dtype=torch.float32)
    U, V, W = inst.caglioti_uvw_deg2
    out = []
    for i in range(0, sticks.d.shape[0], chunk):
        d, f = sticks.d[i : i + chunk], sticks.f2m[i : i + chunk]
        acc = torch.zeros(d.shape[0], grid.numel())
        for lam, w in zip(inst.wavelengths_A, inst.weights):
            s = lam / (2 * d.clamp_min(1e-6))
            ok = (f > 0) & (s < 1)
            th = torch.asin(s.clamp(max=0.999999))
            lp = (1 + inst.polarisation_k * torch.cos(2 * th) ** 2) / (torch.sin(th) ** 2 * torch.cos(th))
            c = torch.rad2deg(2 * th)
            gg = (U * torch.tan(th) ** 2 + V * torch.tan(th) + W).clamp_min(1e-8).sqrt()
            gl = torch.rad2deg(0.9 * lam / (10 * size_nm * torch.cos(th)))
            gam, eta = _tch(gg, gl)
            area = torch.where(ok, w * f * lp, torch.zeros_like(f))
            x = (grid - c[..., None]) / gam[..., None]
            prof = eta[..., None] * (2 / math.pi) / (1 + 4 * x * x) + (1 - eta[..., None]) * 2 * math.sqrt(
                math.log(2) / math.pi
            ) * torch.exp(-4 * math.log(2) * x * x)
            acc += (prof * (area / gam)[..., None]).sum(1)
        out.append(acc / acc.amax(1, keepdim=True).clamp_min(1e-30))
    return torch.cat(out)


def renderer_at(rev: str):
    """The ``Renderer`` class of src/xrdid/instrument/render.py as it was at git revision ``rev``."""
    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "show", f"{rev}:src/xrdid/instrument/render.py"], cwd=root, check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "render_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("render_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.Renderer


def paired_rates(fns: dict, B: int, seconds: float, sync=lambda: None) -> dict:
    """Patterns/s of each callable, calls alternating so that load changes hit all alike (median call time)."""
    for fn in fns.values():
        fn()
    sync()
    times = {k: [] for k in fns}
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds * len(fns) or len(times[next(iter(fns))]) < 3:
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t)
    return {k: B / sorted(v)[len(v) // 2] for k, v in times.items()}


def rate(fn, B: int, seconds: float, sync=lambda: None, min_calls: int = 2) -> float:
    fn()
    sync()
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds or k < min_calls:
        fn()
        k += 1
    sync()
    return B * k / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--structures", type=int, default=24)
    ap.add_argument("--points", type=int, nargs="+", default=[8500, 4096])
    ap.add_argument("--presets", nargs="+", default=["cu", "mars"])
    ap.add_argument("--baseline", help="git revision whose renderer is timed alongside (same sticks, same run)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    structs = structures(args.structures)
    Baseline = renderer_at(args.baseline) if args.baseline else None
    print(f"{len(structs)} pyxtal structures; batch {args.batch}; torch {torch.__version__}; 1 CPU thread; "
          f"load average {os.getloadavg()[0]:.1f}" + (f"; baseline {args.baseline}" if Baseline else ""))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for name in args.presets:
        for n_points in args.points:
            inst = get_instrument({"preset": name, "n_points": n_points})
            sb = stick_batch(structs, inst, args.batch)
            n_sticks = float((sb.f2m > 0).sum()) / args.batch
            # The reference is ~1000× slower: time it on a slice of the batch.
            small = StickBatch(sb.d[:16], sb.f2m[:16])
            ref = rate(lambda inst=inst, small=small: dense_reference(inst, small), 16, args.seconds, min_calls=1)
            line = f"{name:5s} {n_points:5d} pts  {n_sticks:5.0f} sticks/pattern × {len(inst.wavelengths_A)} line(s) | dense reference {ref:5.1f}/s"
            for dev in devices:
                sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
                sbd = sb.to(dev)
                for label, aug in (("clean", Augment(enabled=False)), ("augmented", Augment())):
                    fns = {}
                    for key, cls in (("now", Renderer), ("baseline", Baseline)):
                        if cls is not None:
                            r, gen = cls(inst, aug, device=dev), torch.Generator(device=dev).manual_seed(0)
                            fns[key] = lambda r=r, gen=gen, sbd=sbd: r(sbd, gen)
                    v = paired_rates(fns, args.batch, args.seconds, sync)
                    line += f" | {dev} {label} {v['now']:7.0f}/s ({v['now'] / ref:5.1f}×)"
                    if Baseline:
                        line += f" baseline {v['baseline']:7.0f}/s, now/baseline {v['now'] / v['baseline']:4.2f}"
            print(line, flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
