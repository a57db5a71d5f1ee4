"""What the VAE's novelty score adds to a prediction, on ONE CPU thread (target: under 10 ms per pattern),
and what the CNN's mixture probe (xrdid.mixture_probe) or, in its place, the mixture detector
(xrdid.mixture_detector, a second network pass) adds on top of it.

The reference, measured in the same run: ``xrdid.predict.predict_patterns`` end to end (resampling onto
the grid through Q, normalisation, CNN forward, calibrated softmax, top-k; no powder indexing, which
costs seconds) with max-softmax novelty (``vae=None``). The candidate: the same call with the VAE's novelty (encoder, decoder, noise estimate,
latent distance and calibration). Also the novelty score alone on a prepared input, and throughput in
batches of 64. The VAE is the shipped one when installed (``src/xrdid/pretrained/vae.json``), else one
with random weights and a dummy calibration (speed does not depend on the weights). Input: a synthetic
8,500-point Cu Kα lab scan. Rounds are interleaved; medians are reported.

    .venv/bin/python benchmarks/novelty.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from predict import lab_pattern

from xrdid.instrument import get_instrument
from xrdid.models import CNNConfig, XRDClassifier, save_checkpoint
from xrdid.models.vae import XRDVAE, VAEConfig, has_vae, save_vae
from xrdid.novelty import novelty_objects
from xrdid.predict import load_model, predict_patterns, prepare, pretrained_path
from xrdid.train.loop import model_input


def calls(fn, min_s: float = 0.5) -> list[float]:
    """Seconds of each call of ``fn`` over ``min_s`` (after one warm-up call)."""
    fn()
    out, start = [], time.perf_counter()
    while time.perf_counter() - start < min_s:
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _random_pair(folder: str) -> str:
    """A CNN and a VAE with random weights and a dummy calibration on the shipped grid (Cu Kα, 2,048 points)."""
    inst = get_instrument({"preset": "cu", "n_points": 2048})
    save_checkpoint(XRDClassifier(CNNConfig(n_points=2048, architecture="plain")).eval(), inst, folder)
    vae = XRDVAE(VAEConfig()).eval()
    latent = vae.config.latent
    q = np.sort(np.random.default_rng(0).random(1001)).tolist()
    save_vae(vae, inst, folder, extra={"novelty": {"class_means": np.zeros((7, latent)).tolist(),
                                                   "precision": np.eye(latent).tolist(),
                                                   "quantiles": {"reconstruction": q, "latent": q, "combined": q}}})
    return folder


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    where = None if has_vae(pretrained_path()) else _random_pair(tempfile.mkdtemp())
    print(f"models: {'shipped CNN and VAE' if where is None else 'random weights (no shipped VAE installed)'}")
    plain, with_vae = load_model(where, vae=None), load_model(where)
    assert with_vae.novelty_model is not None
    plain.mixture_probe = plain.mixture_detector = None
    with_probe = load_model(where)  # the shipped probe, when it matches the weights
    with_probe.mixture_detector = None
    with_detector = load_model(where)  # the shipped detector, when it matches the weights (used in place of the probe)
    with_vae.mixture_probe = with_vae.mixture_detector = None
    pattern = lab_pattern()
    y, mask = prepare(plain, pattern)
    x1 = model_input(torch.as_tensor(y)[None], torch.as_tensor(mask)[None])
    x64 = x1.repeat(64, 1, 1)
    p1, p64 = torch.full((1, 230), 1 / 230), torch.full((64, 230), 1 / 230)
    cases = {
        "reference: predict, max-softmax novelty": lambda: predict_patterns(plain, [pattern], cell=False),
        "predict, VAE novelty": lambda: predict_patterns(with_vae, [pattern], cell=False),
        **({"predict, VAE novelty and mixture probe": lambda: predict_patterns(with_probe, [pattern], cell=False)}
           if with_probe.mixture_probe is not None else {}),
        **({"predict, VAE novelty and mixture detector": lambda: predict_patterns(with_detector, [pattern], cell=False)}
           if with_detector.mixture_detector is not None else {}),
        "VAE novelty alone (prepared input)": lambda: novelty_objects(with_vae.novelty_model, x1, p1),
    }
    batch = {
        "reference: CNN forward, batch 64": lambda: plain.model(x64),
        "VAE novelty, batch 64": lambda: novelty_objects(with_vae.novelty_model, x64, p64),
        **({"mixture detector, batch 64": lambda: with_detector.mixture_detector.probability(x64)}
           if with_detector.mixture_detector is not None else {}),
    }
    times = {k: [] for k in [*cases, *batch]}
    with torch.no_grad():
        for _ in range(args.rounds):
            for k, fn in {**cases, **batch}.items():
                times[k] += calls(fn)
    # Median and fastest call: on a machine shared with other jobs the median carries their load; the
    # fastest call is what the work itself costs.
    ref = statistics.median(times["reference: predict, max-softmax novelty"])
    ref_min = min(times["reference: predict, max-softmax novelty"])
    print("\n| per pattern, batch of 1 | median ms | × reference | fastest ms | × reference |\n|---|---|---|---|---|")
    for k in cases:
        t, t_min = statistics.median(times[k]), min(times[k])
        print(f"| {k} | {1000 * t:.2f} | {t / ref:.2f} | {1000 * t_min:.2f} | {t_min / ref_min:.2f} |")
    added = statistics.median(times["predict, VAE novelty"]) - ref
    added_min = min(times["predict, VAE novelty"]) - ref_min
    print(f"\nnovelty adds {1000 * added:.2f} ms per pattern (median), {1000 * added_min:.2f} ms (fastest); target < 10 ms")
    if "predict, VAE novelty and mixture probe" in times:
        probe = times["predict, VAE novelty and mixture probe"]
        print(f"the mixture probe adds {1000 * (statistics.median(probe) - statistics.median(times['predict, VAE novelty'])):.2f} ms "
              f"(median), {1000 * (min(probe) - min(times['predict, VAE novelty'])):.2f} ms (fastest)")
    if "predict, VAE novelty and mixture detector" in times:
        det = times["predict, VAE novelty and mixture detector"]
        print(f"the mixture detector adds {1000 * (statistics.median(det) - statistics.median(times['predict, VAE novelty'])):.2f} ms "
              f"(median), {1000 * (min(det) - min(times['predict, VAE novelty'])):.2f} ms (fastest); target < 10 ms")
    ref64 = statistics.median(times["reference: CNN forward, batch 64"])
    print("\n| throughput, batches of 64 | patterns/s | × reference |\n|---|---|---|")
    for k in batch:
        t = statistics.median(times[k])  # per batch
        print(f"| {k} | {64 / t:.0f} | {ref64 / t:.2f} |")


if __name__ == "__main__":
    main()
