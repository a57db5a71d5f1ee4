"""Training from the workflow's config sections (plain dicts), for the Snakemake rule and scripts."""

from __future__ import annotations

from pathlib import Path

from xrdid.instrument import Augment, get_instrument
from xrdid.models import CNNConfig
from xrdid.train.loop import TrainConfig
from xrdid.train.loop import train as _train


def train_from_config(
    *,
    sticks: str | Path,
    checkpoint: str | Path,
    history: str | Path,
    instrument: dict | str,
    augment: dict,
    model: dict,
    train: dict,
    threads: int | None = None,
    resume_dir: str | Path | None = None,
    device: str = "auto",
) -> dict:
    inst = get_instrument(instrument)
    return _train(
        sticks=sticks,
        checkpoint=checkpoint,
        history=history,
        instrument=inst,
        augment=Augment.from_dict(augment),
        model_config=CNNConfig.from_dict({**model, "n_points": inst.n_points}),
        config=TrainConfig(**train),
        device=device,
        threads=threads,
        resume_dir=resume_dir,
    )



