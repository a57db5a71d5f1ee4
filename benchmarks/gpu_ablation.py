"""Architecture ablation on a GPU at equal number of training patterns, through ``xrdid.train.train``.

The shipped body (plain, 0.7 M parameters) underfits the pretrain data on CPU (validation loss below
training loss after 2 M patterns). On a GPU the larger bodies cost little more per pattern, so this
trains each candidate with the pretrain configuration (instrument, augmentation, metric strain) for the
same number of patterns, bf16 on CUDA, and writes each checkpoint as ``{out}/{name}.tar`` so that it can
be evaluated elsewhere (e.g. ``python -m xrdid.evaluate.real --model``, which needs pymatgen).

    PYTHONPATH=src python benchmarks/gpu_ablation.py --sticks STICKS --config CONFIG.json --out DIR

``CONFIG.json`` holds the validated ``instrument``, ``augment``, ``model`` and ``train`` sections of a
workflow config (defaults filled), e.g. of ``config/pretrain.yaml``; ``--epochs``, ``--steps`` and
``--batch`` override its schedule.
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from xrdid.train.workflow import train_from_config

BODIES = {
    "plain": {},
    "resnet": {"architecture": "resnet", "stem_channels": 32, "stage_channels": [48, 64, 96, 128], "kernel_size": 7},
    "convnext": {"architecture": "convnext", "stem_channels": 32, "stage_channels": [48, 64, 96, 128]},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sticks", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bodies", default="plain,resnet,convnext")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=4e-3)
    args = ap.parse_args()
    cfg = json.loads(Path(args.config).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}; "
          f"{args.epochs} epochs × {args.steps} steps × {args.batch} = {args.epochs * args.steps * args.batch:,} patterns per body")
    print("| body | params | patterns/s | wall s | val space group | top-5 | val crystal system | train loss | val loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.bodies.split(","):
        model = {**cfg["model"], **BODIES[name]}
        train = {**cfg["train"], "epochs": args.epochs, "steps_per_epoch": args.steps, "batch_size": args.batch, "lr": args.lr}
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            last = train_from_config(
                sticks=args.sticks, checkpoint=Path(tmp) / "model", history=Path(tmp) / "history.csv",
                instrument=cfg["instrument"], augment=cfg["augment"], model=model, train=train,
            )
            wall = time.perf_counter() - t0
            with tarfile.open(out / f"{name}.tar", "w") as tar:
                tar.add(Path(tmp) / "model", arcname=name)
                tar.add(Path(tmp) / "history.csv", arcname=f"{name}/history.csv")
            n_par = sum(p.numel() for p in torch.load(Path(tmp) / "model" / "weights.pt", weights_only=True).values())
        print(f"| {name} | {n_par / 1e6:.2f} M | {last['patterns_per_s']:,.0f} | {wall:.0f} | {last['val_space_group_acc']:.3f} | "
              f"{last['val_space_group_top5']:.3f} | {last['val_crystal_system_acc']:.3f} | {last['train_loss']:.3f} | {last['val_loss']:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
