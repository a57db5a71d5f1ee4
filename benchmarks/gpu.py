"""The GPU path against the CPU path, measured in the same run on the same machine.

Needs only torch, numpy, pyarrow and xrdid's torch modules (no pymatgen), so it runs on a bare GPU
machine with the repository and a sticks table:

    PYTHONPATH=src python benchmarks/gpu.py --sticks results/default/sticks.parquet

1. Rendering: augmented patterns/s at 8,500 points for the ``cu`` and ``mars`` presets, CPU with one
   thread (the reference) against CUDA at several batch sizes.
2. Training steps (render + forward + backward + AdamW, what ``xrdid.train.loop.train`` does per step):
   patterns/s on CUDA with bf16 autocast against CPU with 2 threads (a 2-core machine), for the
   shipped body and the larger ones of the architecture ablation.
3. The real training loop, ``xrdid.train.train``, for a few epochs on CUDA: its own patterns/s
   (validation excluded) and that the run ends with a checkpoint.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from xrdid.data import StickTable
from xrdid.instrument import Augment, Renderer, get_instrument
from xrdid.models import CNNConfig, XRDClassifier
from xrdid.models.cnn import loss_fn
from xrdid.train import TrainConfig, train
from xrdid.train.loop import RenderedBatches

BODIES = {
    "plain 2048 (shipped)": CNNConfig(n_points=2048, architecture="plain", stem_channels=24, stem_kernel=8, stem_stride=4,
                                      stage_channels=(32, 48, 64, 96, 128), kernel_size=5, hidden=256, dropout=0.3),
    "resnet 2048": CNNConfig(n_points=2048),
    "convnext 2048": CNNConfig(n_points=2048, architecture="convnext"),
    "resnet 8500": CNNConfig(n_points=8500),
}


def _sync(dev: str) -> None:
    if dev == "cuda":
        torch.cuda.synchronize()


def timed(fn, n_items: int, seconds: float, dev: str) -> float:
    """Items per second of ``fn`` (one warm-up call, then at least 2 calls and ``seconds``)."""
    fn()
    _sync(dev)
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds or k < 2:
        fn()
        k += 1
    _sync(dev)
    return n_items * k / (time.perf_counter() - t0)


def render_rates(table: StickTable, seconds: float) -> None:
    print("\n## Rendering, augmented, 8,500 points (patterns/s)")
    print("| preset | CPU 1 thread, batch 128 (reference) | CUDA batch 128 | CUDA batch 1024 | CUDA batch 4096 |")
    print("|---|---|---|---|---|")
    pick = torch.Generator().manual_seed(0)
    for preset in ("cu", "mars"):
        inst = get_instrument({"preset": preset, "n_points": 8500})
        cells = []
        for dev, batch in (("cpu", 128), ("cuda", 128), ("cuda", 1024), ("cuda", 4096)):
            torch.set_num_threads(1)
            sticks = table.batch(torch.randint(len(table), (batch,), generator=pick))[0].to(dev)
            renderer = Renderer(inst, Augment(), device=dev)
            gen = torch.Generator(device=dev).manual_seed(1)
            cells.append(timed(lambda r=renderer, s=sticks, g=gen: r(s, g), batch, seconds, dev))
        ref = cells[0]
        print(f"| {preset} | {ref:,.0f} | " + " | ".join(f"{c:,.0f} ({c / ref:.1f}×)" for c in cells[1:]) + " |", flush=True)


def step_rates(table: StickTable, seconds: float) -> None:
    print("\n## Training steps, rendering included (patterns/s; Cu Kα preset, full augmentation)")
    print("| body | params | CPU 2 threads, batch 128 (reference) | CUDA bf16 batch 128 | CUDA bf16 batch 512 |")
    print("|---|---|---|---|---|")
    for name, cfg in BODIES.items():
        inst = get_instrument({"preset": "cu", "n_points": cfg.n_points})
        cells = []
        for dev, batch in (("cpu", 128), ("cuda", 128), ("cuda", 512)):
            torch.set_num_threads(2)
            torch.manual_seed(0)
            model = XRDClassifier(cfg).to(dev).train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            renderer = Renderer(inst, Augment(), device=dev)
            batches = iter(RenderedBatches(table, renderer, batch_size=batch, steps=10**6, seed_render=1, seed_pick=2))

            def step(model=model, opt=opt, batches=batches, dev=dev):
                x, sg, cs = next(batches)
                x, sg, cs = x.to(dev), sg.to(dev), cs.to(dev)
                with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
                    loss = loss_fn(model(x), sg, cs)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            cells.append(timed(step, batch, seconds if dev == "cuda" else 2 * seconds, dev))
        ref = cells[0]
        n_par = sum(p.numel() for p in XRDClassifier(cfg).parameters())
        print(f"| {name} | {n_par / 1e6:.2f} M | {ref:,.0f} | " + " | ".join(f"{c:,.0f} ({c / ref:.1f}×)" for c in cells[1:]) + " |",
              flush=True)


def full_loop(sticks: str, epochs: int, batch: int) -> None:
    print(f"\n## xrdid.train.train on CUDA: shipped body, {epochs} epochs × 100 steps × batch {batch}")
    cfg = BODIES["plain 2048 (shipped)"]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        last = train(
            sticks=sticks, checkpoint=Path(tmp) / "model", history=Path(tmp) / "history.csv",
            instrument=get_instrument({"preset": "cu", "n_points": 2048}), augment=Augment(), model_config=cfg,
            config=TrainConfig(epochs=epochs, steps_per_epoch=100, batch_size=batch, metric_strain=0.04),
            device="cuda", resume_dir=Path(tmp) / "resume", progress=False,
        )
        wall = time.perf_counter() - t0
        ok = (Path(tmp) / "model" / "weights.pt").exists()
    print(f"last epoch: {last['patterns_per_s']:,.0f} patterns/s in training steps; whole run {wall:.1f} s wall "
          f"(validation, checkpoints and data loading included); checkpoint written: {ok}; "
          f"val crystal system {last['val_crystal_system_acc']:.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sticks", default="results/default/sticks.parquet")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=512)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark compares the GPU path with the CPU path")
    props = torch.cuda.get_device_properties(0)
    print(f"torch {torch.__version__}, {props.name}, {props.total_memory / 2**30:.0f} GiB; {os.cpu_count()} CPU cores; "
          f"load average {os.getloadavg()[0]:.2f}")
    table = StickTable.from_parquet(args.sticks, split="train", d_min_A=0.5)
    print(f"{len(table)} training structures from {args.sticks}")
    render_rates(table, args.seconds)
    step_rates(table, args.seconds)
    full_loop(args.sticks, args.epochs, args.batch)


if __name__ == "__main__":
    main()
