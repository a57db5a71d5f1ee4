"""Training of the VAE (:mod:`xrdid.models.vae`) on the CNN's rendered, augmented patterns.

The same sticks table, instrument, augmentation, batch draws and symmetry-preserving strain as the
CNN's loop (:mod:`xrdid.train.loop`): every step renders fresh patterns. Space groups listed in
``holdout_space_groups`` are removed from training and validation, so the novelty benchmark
(:mod:`xrdid.evaluate.novelty`) has patterns of symmetries the VAE never saw. After each epoch the
validation split is rendered with a fixed seed, a row goes to ``history.csv`` and a resume state is
written; a killed run restarts from the last finished epoch (``resume_dir``). At the end the batch-norm
statistics are recomputed over training batches, the latent classifier's temperatures are fitted and
the novelty score is calibrated on validation patterns (:func:`xrdid.novelty.calibrate`).
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from xrdid.data import StickTable
from xrdid.instrument import Augment, Instrument, Renderer
from xrdid.io import atomic_path
from xrdid.models.vae import XRDVAE, LossWeights, VAEConfig, save_vae, vae_loss
from xrdid.train.loop import (
    BN_RECALIBRATION_BATCHES,
    MetricStrain,
    RenderedBatches,
    _digest,
    _epoch_batches,
    fit_temperature,
    load_sticks,
    model_input,
    one_cycle,
    recalibrate_batchnorm,
    resolve_device,
    resume_state,
    save_state,
)

log = logging.getLogger(__name__)

HISTORY_FIELDS = [
    "epoch", "train_loss", "train_recon", "train_kl", "train_ce", "val_loss", "val_recon", "val_kl", "val_ce",
    "val_space_group_acc", "val_space_group_top5", "val_crystal_system_acc", "lr", "patterns_per_s", "elapsed_s",
]


@dataclass
class VAETrainConfig:
    epochs: int = 10
    steps_per_epoch: int = 100
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.01
    seed: int = 0
    max_peaks: int = 512
    render_workers: int = 0
    metric_strain: float = 0.0
    # β of the KL term, σ of the Gaussian reconstruction likelihood (on √y), α of the latent classifier.
    beta: float = 1.0
    sigma: float = 0.05
    alpha: float = 20.0
    label_smoothing: float = 0.05
    # KL weight ramped linearly from 0 to β over the first warmup_epochs (avoids posterior collapse).
    warmup_epochs: int = 1
    # Space groups (1-230) left out of training and validation: the novelty benchmark's unseen symmetries.
    holdout_space_groups: list[int] = field(default_factory=list)
    # Renderings of each validation structure used to calibrate the novelty score.
    calibration_draws: int = 4
    # Validation structures rendered after each epoch (a fixed, seeded sample; 0: all). The calibration
    # of the novelty score always uses all of them.
    val_structures: int = 1000


def subset_index(table: StickTable, index: torch.Tensor) -> StickTable:
    """The structures ``index`` (a 1-D index tensor) of ``table``, without hkl."""
    idx = index.tolist()
    return StickTable(ids=[table.ids[i] for i in idx], d=table.d[index], f2m=table.f2m[index],
                      space_group=table.space_group[index], crystal_system=table.crystal_system[index])


def subset(table: StickTable, strain: MetricStrain | None, exclude_space_groups) -> tuple[StickTable, MetricStrain | None]:
    """``table`` (and its strain) without the structures of ``exclude_space_groups`` (numbers 1-230)."""
    if not exclude_space_groups:
        return table, strain
    drop = torch.as_tensor(sorted(int(n) - 1 for n in exclude_space_groups))
    keep = torch.nonzero(~torch.isin(table.space_group, drop)).squeeze(1)
    idx = keep.tolist()
    sub = StickTable(
        ids=[table.ids[i] for i in idx], d=table.d[keep], f2m=table.f2m[keep], space_group=table.space_group[keep],
        crystal_system=table.crystal_system[keep], hkl_rows=[table.hkl_rows[i] for i in idx] if table.hkl_rows else None,
    )
    if strain is not None:
        strain = MetricStrain(strain.basis[keep], strain.coef[keep], strain.group[keep], strain.ok[keep])
    return sub, strain


@torch.no_grad()
def evaluate_batches(model: XRDVAE, renderer: Renderer, table: StickTable, *, seed: int, weights: LossWeights,
                     batch_size: int = 256, device="cpu") -> dict:
    """Mean loss terms and latent-classifier accuracies on ``table`` rendered once (seeded)."""
    model.eval()
    gen = torch.Generator(device=renderer.device).manual_seed(seed)
    sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0, "ce": 0.0, "sg": 0.0, "sg5": 0.0, "cs": 0.0}
    for start in range(0, len(table), batch_size):
        index = torch.arange(start, min(start + batch_size, len(table)))
        sticks, sg, cs = table.batch(index)
        y, mask = renderer(sticks, gen)
        x = model_input(y, mask).to(device)
        sg, cs = sg.to(device), cs.to(device)
        out = model(x)
        loss, terms = vae_loss(out, x, sg, cs, weights)
        n = len(index)
        sums["loss"] += float(loss) * n
        for k in ("recon", "kl", "ce"):
            sums[k] += terms[k] * n
        top5 = out["sg"].topk(min(5, out["sg"].shape[1]), dim=1).indices
        sums["sg"] += float((out["sg"].argmax(1) == sg).sum())
        sums["sg5"] += float((top5 == sg[:, None]).any(1).sum())
        sums["cs"] += float((out["cs"].argmax(1) == cs).sum())
    n = max(len(table), 1)
    return {
        "val_loss": sums["loss"] / n, "val_recon": sums["recon"] / n, "val_kl": sums["kl"] / n, "val_ce": sums["ce"] / n,
        "val_space_group_acc": sums["sg"] / n, "val_space_group_top5": sums["sg5"] / n, "val_crystal_system_acc": sums["cs"] / n,
    }


@torch.no_grad()
def latent_logits(model: XRDVAE, renderer: Renderer, table: StickTable, *, seed: int, batch_size: int = 256, device="cpu"):
    """Both latent-classifier heads' logits on ``table`` rendered once (seeded)."""
    model.eval()
    gen = torch.Generator(device=renderer.device).manual_seed(seed)
    sg_out, cs_out = [], []
    for start in range(0, len(table), batch_size):
        index = torch.arange(start, min(start + batch_size, len(table)))
        sticks, _, _ = table.batch(index)
        y, mask = renderer(sticks, gen)
        sg, cs = model.classify(model.encode(model_input(y, mask).to(device))[0])
        sg_out.append(sg.float().cpu())
        cs_out.append(cs.float().cpu())
    return torch.cat(sg_out), torch.cat(cs_out)


def train_vae(
    *,
    sticks: str | Path,
    checkpoint: str | Path,
    history: str | Path,
    instrument: Instrument,
    augment: Augment,
    model_config: VAEConfig,
    config: VAETrainConfig,
    device: str = "auto",
    threads: int | None = None,
    resume_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Train the VAE; writes ``vae.json`` + ``vae.pt`` into ``checkpoint`` and ``history.csv``.
    Returns the last history row."""
    from tqdm import tqdm

    from xrdid.novelty import calibrate

    dev = resolve_device(device)
    workers = config.render_workers if dev.type == "cpu" else 0
    if threads:
        torch.set_num_threads(max(1, int(threads) - min(workers, 1)))
    torch.manual_seed(config.seed)
    d_min = instrument.d_min_A
    bad = [n for n in config.holdout_space_groups if not 1 <= int(n) <= 230]
    if bad:
        raise ValueError(f"holdout_space_groups: {bad} are not space-group numbers (1-230)")
    train_table, strain = load_sticks(sticks, split="train", d_min_A=d_min, max_peaks=config.max_peaks, strain=config.metric_strain > 0)
    train_table, strain = subset(train_table, strain, config.holdout_space_groups)
    val_table, _ = subset(StickTable.from_parquet(sticks, split="val", d_min_A=d_min, max_peaks=config.max_peaks), None,
                          config.holdout_space_groups)
    if len(train_table) == 0 or len(val_table) == 0:
        raise ValueError(f"{sticks}: need structures of known space groups in both train and val splits, "
                         f"got {len(train_table)} and {len(val_table)}")
    log.info("VAE: training on %d structures, validating on %d (%d space groups held out), device %s",
             len(train_table), len(val_table), len(config.holdout_space_groups), dev)
    epoch_val = val_table
    if 0 < config.val_structures < len(val_table):
        pick = torch.randperm(len(val_table), generator=torch.Generator().manual_seed(config.seed + 3))[: config.val_structures]
        epoch_val = subset_index(val_table, pick.sort().values)

    model = XRDVAE(model_config).to(dev)
    opt, sched = one_cycle(model, lr=config.lr, weight_decay=config.weight_decay, total_steps=config.epochs * config.steps_per_epoch)
    train_renderer = Renderer(instrument, augment, device=dev)
    val_renderer = Renderer(instrument, augment, device=dev)
    amp = dev.type == "cuda"

    state_file = Path(resume_dir) / "state.pt" if resume_dir else None
    fingerprint = {
        "train": asdict(config), "model": model_config.to_dict(), "instrument": instrument.to_dict(),
        "augment": asdict(augment), "data": _digest(train_table.ids, val_table.ids),
    }
    rows, start_epoch = resume_state(state_file, fingerprint, model, opt, sched, dev)

    t_start = time.perf_counter() - (rows[-1]["elapsed_s"] if rows else 0.0)
    step = start_epoch * config.steps_per_epoch
    warmup = max(1, config.warmup_epochs * config.steps_per_epoch)
    for epoch in range(start_epoch, config.epochs):
        model.train()
        # The reparameterisation noise and dropout draw from the global generator: seeded per epoch, a
        # resumed run draws what an uninterrupted one would.
        torch.manual_seed(config.seed * 100_003 + epoch + 90_000)
        batches = RenderedBatches(
            train_table, train_renderer, batch_size=config.batch_size, steps=config.steps_per_epoch,
            seed_render=config.seed * 100_003 + epoch, seed_pick=config.seed * 100_003 + epoch + 50_000,
            strain=strain, strain_amount=config.metric_strain,
        )
        t_epoch = time.perf_counter()
        sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0, "ce": 0.0}
        bar = tqdm(_epoch_batches(batches, workers), total=config.steps_per_epoch, desc=f"VAE epoch {epoch + 1}/{config.epochs}",
                   disable=not progress, mininterval=5)
        for x, sg, cs in bar:
            x, sg, cs = x.to(dev), sg.to(dev), cs.to(dev)
            weights = LossWeights(beta=config.beta * min(1.0, step / warmup), sigma=config.sigma, alpha=config.alpha,
                                  label_smoothing=config.label_smoothing)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                out = model(x)
            loss, terms = vae_loss(out, x, sg, cs, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            sums["loss"] += loss.item()
            for k in ("recon", "kl", "ce"):
                sums[k] += terms[k]
            bar.set_postfix(loss=f"{loss.item():.1f}")
        rate = config.steps_per_epoch * config.batch_size / (time.perf_counter() - t_epoch)
        full = LossWeights(beta=config.beta, sigma=config.sigma, alpha=config.alpha, label_smoothing=config.label_smoothing)
        val = evaluate_batches(model, val_renderer, epoch_val, seed=config.seed + 7, weights=full, device=dev)
        row = {
            "epoch": epoch + 1,
            **{f"train_{k}": v / config.steps_per_epoch for k, v in sums.items()},
            **val,
            "lr": sched.get_last_lr()[0],
            "patterns_per_s": rate,
            "elapsed_s": time.perf_counter() - t_start,
        }
        rows.append(row)
        log.info(
            "VAE epoch %d: train loss %.1f (recon %.1f, KL %.1f, CE %.2f), val loss %.1f (recon %.1f, KL %.1f), "
            "latent classifier space group %.1f %% (top-5 %.1f %%), crystal system %.1f %%, %.0f patterns/s",
            row["epoch"], row["train_loss"], row["train_recon"], row["train_kl"], row["train_ce"], row["val_loss"],
            row["val_recon"], row["val_kl"], 100 * row["val_space_group_acc"], 100 * row["val_space_group_top5"],
            100 * row["val_crystal_system_acc"], rate,
        )
        if state_file is not None:
            save_state(state_file, fingerprint, model, opt, sched, rows, epoch + 1)

    calibration = RenderedBatches(
        train_table, train_renderer, batch_size=config.batch_size, steps=BN_RECALIBRATION_BATCHES,
        seed_render=config.seed * 100_003 + 77_777, seed_pick=config.seed * 100_003 + 88_888,
        strain=strain, strain_amount=config.metric_strain,
    )
    recalibrate_batchnorm(model, calibration, device=dev)
    sg_logits, cs_logits = latent_logits(model, val_renderer, val_table, seed=config.seed + 7, device=dev)
    temps = torch.tensor([fit_temperature(sg_logits, val_table.space_group), fit_temperature(cs_logits, val_table.crystal_system)])
    # A degenerate fit (a validation set of one class, tiny runs) gives NaN: keep the logits as they are.
    model.temperature.copy_(torch.where(temps.isfinite(), temps, torch.ones_like(temps)))
    log.info("latent classifier temperatures: space group %.2f, crystal system %.2f", *model.temperature.tolist())
    model.cpu()
    novelty = calibrate(model, Renderer(instrument, augment), val_table, draws=config.calibration_draws, seed=config.seed + 11)
    save_vae(
        model, instrument, checkpoint,
        extra={"augment": asdict(augment), "train": asdict(config), "n_train_structures": len(train_table),
               "epoch": config.epochs, "train_seconds": rows[-1]["elapsed_s"] if rows else 0.0,
               "train_space_group_counts": torch.bincount(train_table.space_group, minlength=model_config.n_space_groups).tolist(),
               "novelty": novelty},
    )
    with atomic_path(history) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return rows[-1] if rows else {}


def train_vae_from_config(
    *, sticks: str | Path, checkpoint: str | Path, history: str | Path, instrument: dict | str, augment: dict,
    model: dict, train: dict, threads: int | None = None, resume_dir: str | Path | None = None, device: str = "auto",
) -> dict:
    """:func:`train_vae` from the workflow's config sections (plain dicts)."""
    from xrdid.instrument import get_instrument

    inst = get_instrument(instrument)
    return train_vae(
        sticks=sticks, checkpoint=checkpoint, history=history, instrument=inst, augment=Augment.from_dict(augment),
        model_config=VAEConfig.from_dict({**model, "n_points": inst.n_points}), config=VAETrainConfig(**train),
        device=device, threads=threads, resume_dir=resume_dir,
    )
