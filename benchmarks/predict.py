"""Prediction speed on ONE CPU thread: latency (ms per pattern, batch of 1) and throughput (patterns/s,
batches of 64), end to end through ``xrdid.predict`` (resampling onto the grid through Q with
``to_grid``, normalisation, forward pass, calibrated softmax, top-k) and for the forward pass alone.

The reference, measured in the same run: the previous default model (ResNet body, 4,096 points,
random weights — speed does not depend on the weights). Candidates: the plain 2,048-point body (random weights), the shipped pretrained model
(``src/xrdid/pretrained``) if installed, with test-time augmentation for each ``--tta N`` (xrdid.tta), and any
``--model CKPT``. Input: a synthetic Cu Kα pattern of
8,500 points (5–90°), like a lab scan. Rounds are interleaved and the median is reported.

    .venv/bin/python benchmarks/predict.py [--model CKPT] [--tta N] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from xrdid.instrument import get_instrument
from xrdid.models import CNNConfig, XRDClassifier, save_checkpoint
from xrdid.predict import load_model, predict_patterns, prepare, pretrained_path
from xrdid.readers import Pattern


def lab_pattern(seed=0) -> Pattern:
    rng = np.random.default_rng(seed)
    tt = np.linspace(5, 90, 8500)
    y = 30 + 20 * np.exp(-tt / 20)
    for c in rng.uniform(10, 88, 40):
        y += rng.uniform(10, 1000) * np.exp(-0.5 * ((tt - c) / 0.05) ** 2)
    return Pattern(tt, rng.poisson(y).astype(float), "two_theta", wavelength_A=1.5406, path="bench.xy")


def timed(fn, min_s=1.0):
    fn()
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < min_s:
        fn()
        n += 1
    return (time.perf_counter() - t) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", default=[])
    ap.add_argument("--tta", type=int, action="append", default=[], help="the shipped model with --tta N as well")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp()
    ref = XRDClassifier(CNNConfig()).eval()
    save_checkpoint(ref, get_instrument({"preset": "cu", "n_points": 4096}), f"{tmp}/reference")
    cand = XRDClassifier(CNNConfig(n_points=2048, architecture="plain")).eval()
    save_checkpoint(cand, get_instrument({"preset": "cu", "n_points": 2048}), f"{tmp}/plain")
    models = {"reference: resnet 4096 (random weights)": (f"{tmp}/reference", 1), "plain 2048 (random weights)": (f"{tmp}/plain", 1)}
    if (pretrained_path() / "weights.pt").is_file():
        models["pretrained (shipped)"] = (None, 1)
        for n in args.tta:
            models[f"pretrained (shipped), --tta {n}"] = (None, n)
    for m in args.model:
        models[m] = (m, 1)
    bundles = {k: load_model(v, tta=n) for k, (v, n) in models.items()}
    pats = [lab_pattern(i) for i in range(64)]
    res = {k: {"e2e": [], "fwd": [], "batch": []} for k in bundles}
    print(f"1 thread; load average {os.getloadavg()[0]:.2f} at start (2 shared cores)")
    for _ in range(args.rounds):
        for k, b in bundles.items():
            res[k]["e2e"].append(timed(lambda b=b: predict_patterns(b, pats[:1], cell=False)))
            y, m = prepare(b, pats[0])
            with torch.no_grad():
                res[k]["fwd"].append(timed(lambda b=b, y=y, m=m: b.logits(torch.as_tensor(y)[None], torch.as_tensor(m)[None])))
            res[k]["batch"].append(timed(lambda b=b: predict_patterns(b, pats, cell=False), min_s=2.0) / len(pats))
    print("| model | grid points | params | end-to-end latency ms/pattern | forward alone ms (all variants) | throughput patterns/s (batches of 64) |")
    print("|---|---|---|---|---|---|")
    for k, b in bundles.items():
        r = {q: statistics.median(v) for q, v in res[k].items()}
        n_par = sum(p.numel() for p in b.model.parameters())
        print(f"| {k} | {b.instrument.n_points} | {n_par / 1e6:.2f} M | {1000 * r['e2e']:.1f} | {1000 * r['fwd']:.1f} | {1 / r['batch']:.0f} |")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
