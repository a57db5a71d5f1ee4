"""Training throughput on CPU: patterns per second, rendering included (2 threads by default).

One step = draw a batch of training structures, render it with fresh augmentation on the model's grid,
forward, backward and an AdamW step — what ``xrdid.train.loop.train`` does per step, through the same
batch pipeline (``RenderedBatches``; rendering in a worker process unless the candidate says
in-process). Each candidate is timed in the same run as the reference (the previous default: ResNet
body, 4,096 points, rendering in the training process, 2 intra-op threads), in interleaved rounds so
that other users' load hits all of them alike; the median round is reported.

    .venv/bin/python benchmarks/train.py [--sticks results/default/sticks.parquet] [--threads 2]
        [--batch 128] [--steps 12] [--rounds 3]

``--ablation STEPS`` instead trains every candidate for STEPS steps (equal number of patterns, same
seeds, same batches) and prints validation accuracy on the validation split rendered once with a fixed
seed; with the measured throughput that gives accuracy at equal wall-clock budget.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from xrdid.data import StickTable
from xrdid.instrument import Augment, Renderer, get_instrument
from xrdid.models import CNNConfig, XRDClassifier
from xrdid.models.cnn import loss_fn
from xrdid.train.loop import RenderedBatches, _epoch_batches, predict_logits

# name: (grid points, model config, render worker processes)
CANDIDATES = {
    "reference: resnet 4096, in-process": (4096, CNNConfig(), 0),
    "resnet 4096": (4096, CNNConfig(), 1),
    "resnet 2048": (2048, CNNConfig(n_points=2048), 1),
    "convnext 2048": (2048, CNNConfig(n_points=2048, architecture="convnext"), 1),
    "plain 2048": (2048, CNNConfig(n_points=2048, architecture="plain"), 1),
    "plain 2048, in-process": (2048, CNNConfig(n_points=2048, architecture="plain"), 0),
    "plain 2048 stem 16/8": (2048, CNNConfig(n_points=2048, architecture="plain", stem_kernel=16, stem_stride=8, stem_channels=32, stage_channels=(48, 64, 96, 128)), 1),
    "resnet 2048 stem 16/8": (2048, CNNConfig(n_points=2048, stem_kernel=16, stem_stride=8, stem_channels=32, stage_channels=(48, 64, 96, 128)), 1),
}


def make(name, n_points, cfg, workers, table, preset):
    inst = get_instrument({"preset": preset, "n_points": n_points})
    cfg = CNNConfig.from_dict({**cfg.to_dict(), "n_points": n_points})
    torch.manual_seed(0)
    model = XRDClassifier(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    return {"name": name, "inst": inst, "model": model, "opt": opt, "renderer": Renderer(inst, Augment()), "workers": workers}


def run_steps(c, table, batch, steps, seed, threads, sched=None):
    """Train ``steps`` steps through the training pipeline; returns patterns/s."""
    torch.set_num_threads(max(1, threads - c["workers"]) if c["workers"] else threads)
    data = RenderedBatches(table, c["renderer"], batch_size=batch, steps=steps, seed_render=seed, seed_pick=seed + 1)
    c["model"].train()
    t = time.perf_counter()
    for x, sg, cs in _epoch_batches(data, c["workers"]):
        loss = loss_fn(c["model"](x), sg, cs)
        c["opt"].zero_grad(set_to_none=True)
        loss.backward()
        c["opt"].step()
        if sched is not None:
            sched.step()
    return steps * batch / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sticks", default="results/default/sticks.parquet")
    ap.add_argument("--preset", default="cu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=12, help="steps per timed round (one worker start each)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="candidate names to run (default all)")
    ap.add_argument("--ablation", type=int, default=0, metavar="STEPS")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    table = StickTable.from_parquet(args.sticks, split="train", d_min_A=get_instrument(args.preset).d_min_A)
    names = args.only or list(CANDIDATES)
    cands = [make(n, *CANDIDATES[n], table, args.preset) for n in names]
    print(f"{len(table)} training structures from {args.sticks}; preset {args.preset}; {args.threads} threads; "
          f"batch {args.batch}; load average {os.getloadavg()[0]:.2f} at start")
    if args.ablation:
        val = StickTable.from_parquet(args.sticks, split="val", d_min_A=get_instrument(args.preset).d_min_A)
        print("| candidate | params | steps | patterns/s | val space group top-1 | top-5 | val crystal system |")
        print("|---|---|---|---|---|---|---|")
        for c in cands:
            sched = torch.optim.lr_scheduler.OneCycleLR(c["opt"], max_lr=2e-3, total_steps=args.ablation, pct_start=0.15)
            rate = run_steps(c, table, args.batch, args.ablation, 1, args.threads, sched)
            torch.set_num_threads(1)
            sg, cs = predict_logits(c["model"], Renderer(c["inst"], Augment()), val, seed=7)
            top5 = (sg.topk(5, 1).indices == val.space_group[:, None]).any(1).float().mean()
            n_par = sum(p.numel() for p in c["model"].parameters())
            print(f"| {c['name']} | {n_par / 1e6:.2f} M | {args.ablation} | {rate:.0f} | "
                  f"{(sg.argmax(1) == val.space_group).float().mean():.3f} | {top5:.3f} | "
                  f"{(cs.argmax(1) == val.crystal_system).float().mean():.3f} |", flush=True)
        print(f"load average {os.getloadavg()[0]:.2f} at end")
        return
    rates = {c["name"]: [] for c in cands}
    render_rates = {c["name"]: [] for c in cands}
    gen, pick = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    for r in range(args.rounds):
        for c in cands:
            rates[c["name"]].append(run_steps(c, table, args.batch, args.steps, 10 * r, args.threads))
            torch.set_num_threads(1)
            n, t = 0, time.perf_counter()
            while n < 4 * args.batch:
                idx = torch.randint(len(table), (args.batch,), generator=pick)
                c["renderer"](table.batch(idx)[0], gen)
                n += args.batch
            render_rates[c["name"]].append(n / (time.perf_counter() - t))
    ref = statistics.median(rates[names[0]])
    print(f"| candidate | params | train patterns/s (median of {args.rounds}) | × reference | render alone, 1 thread, patterns/s |")
    print("|---|---|---|---|---|")
    for c in cands:
        r = statistics.median(rates[c["name"]])
        n_par = sum(p.numel() for p in c["model"].parameters())
        print(f"| {c['name']} | {n_par / 1e6:.2f} M | {r:.0f} | {r / ref:.2f} | {statistics.median(render_rates[c['name']]):.0f} |")
    print(f"load average {os.getloadavg()[0]:.2f} at end (2 shared cores: compare ratios, not absolute rates)")


if __name__ == "__main__":
    main()
