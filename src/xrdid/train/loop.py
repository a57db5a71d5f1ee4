"""The training loop.

Every step draws a batch of training structures, renders it with fresh random augmentation (so no
pattern is ever seen twice) and takes one AdamW step on the summed cross-entropy of both heads.
After each epoch the validation split is rendered with a fixed seed (the same patterns every epoch),
a row is appended to ``history.csv`` and a resume state is written; a killed run restarts from the
last finished epoch. At the end the batch-norm statistics are recomputed over ``BN_RECALIBRATION_BATCHES``
training batches (:func:`recalibrate_batchnorm`), then the heads' temperatures are fitted on the
validation logits.

With ``render_workers=1`` rendering runs on CPU in a separate process (a DataLoader over
:class:`RenderedBatches`) while the main process trains with the remaining threads, one thread each.
Which is faster depends on the machine's load (benchmarks/train.py, 2 cores): idle, in-process with 2
intra-op threads is 1.6× faster (954 vs 606 patterns/s, plain body); oversubscribed by other users'
jobs (load 6–8), two intra-op threads stall on each other (a parallel region waits for its descheduled
thread: rendering took 3–5 s per batch instead of 0.1 s) and the worker was 2× faster. The batches are
identical either way (same generators, same order), so resuming works across the setting. On CUDA
rendering stays on the GPU, in-process.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from xrdid.data import StickTable
from xrdid.instrument import Augment, Instrument, Renderer
from xrdid.io import atomic_path
from xrdid.models import CNNConfig, XRDClassifier, save_checkpoint
from xrdid.models.cnn import loss_fn
from xrdid.structures.sources import REAL_SOURCES
from xrdid.weights import init_digest, resolve_init

log = logging.getLogger(__name__)

HISTORY_FIELDS = [
    "epoch", "train_loss", "val_loss", "val_space_group_acc", "val_space_group_top5",
    "val_crystal_system_acc", "lr", "patterns_per_s", "elapsed_s", "patterns_seen",
    # The validation split's real structures (REAL_SOURCES), plain and weighted like Materials Project
    # (xrdid.priors.mp_weights); empty when the data has none.
    "val_real_n", "val_real_space_group_acc", "val_real_crystal_system_acc",
    "val_real_mp_space_group_acc", "val_real_mp_crystal_system_acc",
]


@dataclass
class TrainConfig:
    epochs: int = 10
    steps_per_epoch: int = 100
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.05
    seed: int = 0
    max_peaks: int = 512
    # 1: render training batches in a separate process on CPU (faster on oversubscribed machines, see the
    # module docstring); 0: in the training process (faster on an idle machine).
    render_workers: int = 0
    # Symmetry-preserving lattice strain (see MetricStrain): each free term of a crystal's reciprocal
    # metric is scaled by 1 + U(−s, s) per pattern. 0 turns it off.
    metric_strain: float = 0.0
    # A checkpoint whose weights start the run ("pretrained": the model shipped in the package), e.g. a
    # second sitting on new crystals, or fine-tuning for one instrument; None: random initialisation.
    # The optimiser and schedule start afresh.
    init_from: str | None = None
    # Share of training draws from each structure source ({source: weight}); within a source every
    # structure is equally likely. None: every structure equally likely.
    source_weights: dict[str, float] | None = None


def _fingerprint_train(config: TrainConfig) -> dict:
    """The config's part of the resume fingerprint; ``init_from`` and ``source_weights`` enter only when
    set, so states saved before they existed still resume."""
    fields = asdict(config)
    for key in ("init_from", "source_weights"):
        if fields[key] is None:
            del fields[key]
    return fields


def draw_probabilities(table: StickTable, weights: dict[str, float] | None) -> torch.Tensor | None:
    """Probability of drawing each row of ``table`` (``weights`` per source, shared equally within a
    source), or None for uniform draws."""
    if weights is None:
        return None
    if table.sources is None:
        raise ValueError("train.source_weights needs a sticks table with a source column")
    sources = np.asarray(table.sources)
    probs = np.zeros(len(sources))
    for name in np.unique(sources):
        rows = sources == name
        probs[rows] = float(weights.get(str(name), 0.0)) / rows.sum()
    if probs.sum() <= 0:
        raise ValueError(f"train.source_weights {weights} gives weight 0 to every source in the data ({', '.join(np.unique(sources))})")
    return torch.from_numpy(probs / probs.sum())


def label_counts(table: StickTable, probs: torch.Tensor | None, n_classes: int) -> list[float]:
    """Space-group label counts as training draws them: plain counts, or with ``probs`` the expected
    counts of len(table) draws (the p_train of a label prior, :mod:`xrdid.priors`)."""
    if probs is None:
        return torch.bincount(table.space_group, minlength=n_classes).tolist()
    counts = torch.bincount(table.space_group, weights=probs.double() * len(table), minlength=n_classes)
    return [round(float(c), 3) for c in counts]


def init_weights(model: XRDClassifier, source: str) -> None:
    """Copy the weights of checkpoint ``source`` into ``model`` (loaded safely, see
    :func:`xrdid.models.load_checkpoint`); the temperatures are reset, they are refitted at the end."""
    from xrdid.models import load_checkpoint

    where = resolve_init(source)
    try:
        donor, _instrument, _meta = load_checkpoint(where)
    except ValueError as exc:
        raise ValueError(f"train.init_from: {exc}") from None
    theirs, ours = donor.state_dict(), model.state_dict()
    mismatched = sorted(k for k in ours.keys() | theirs.keys() if k not in ours or k not in theirs or ours[k].shape != theirs[k].shape)
    if mismatched:
        raise ValueError(
            f"train.init_from: {where} holds a different model ({donor.config.to_dict()}) than the config's "
            f"({model.config.to_dict()}); mismatched weights: {', '.join(mismatched[:5])}"
            + (" …" if len(mismatched) > 5 else "")
        )
    model.load_state_dict(theirs)
    model.temperature.fill_(1.0)
    log.info("initialised from %s", where)


def _digest(*id_lists: list[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for ids in id_lists:
        h.update("\x1f".join(ids).encode())
        h.update(b"\x1e")
    return h.hexdigest()


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def model_input(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Stack pattern and coverage mask into the model's (B, 2, N) input."""
    return torch.stack([y, mask], dim=1)


_TERMS = 6  # 1/d² = g1 h² + g2 k² + g3 l² + g4 hk + g5 hl + g6 kl


@dataclass
class MetricStrain:
    r"""Symmetry-preserving lattice strain of stick patterns, from their hkl.

    For each structure the reciprocal metric is fitted to its sticks by least squares,
    :math:`1/d^2 = g_1h^2 + g_2k^2 + g_3l^2 + g_4hk + g_5hl + g_6kl`. Terms whose coefficients are equal
    in magnitude share one random factor (cubic: all three squares; tetragonal: h², k; hexagonal and
    trigonal: h², k², hk; orthorhombic: none), so a strained pattern is one the crystal system allows —
    a cubic pattern is only rescaled, a tetragonal one changes c/a, a monoclinic one a, b, c and β.
    Without this, a model shown each of a few thousand synthetic crystals hundreds of times learns the
    crystals (train loss falling, validation loss rising, measured with 4.6k crystals); a strained
    crystal has the same symmetry and intensities but new peak positions. Structures whose fit is not
    exact (relative residual > 1e-3, e.g. hkl missing) are left unstrained.
    """

    basis: torch.Tensor  # (S, P, 6) float32, the terms of each stick's hkl (0 for padding)
    coef: torch.Tensor  # (S, 6) float32
    group: torch.Tensor  # (S, 6) int64: which random factor scales each term
    ok: torch.Tensor  # (S,) bool

    @classmethod
    def fit(cls, d_rows: list[np.ndarray], hkl_rows: list[np.ndarray], width: int, cubic: np.ndarray | None = None) -> MetricStrain:
        S = len(d_rows)
        basis = np.zeros((S, width, _TERMS), np.float32)
        coef = np.zeros((S, _TERMS), np.float32)
        group = np.zeros((S, _TERMS), np.int64)
        ok = np.zeros(S, bool)
        for i, (d, hkl) in enumerate(zip(d_rows, hkl_rows)):
            if hkl is None or len(d) < 3:
                continue
            h, k, l = (hkl[:, j].astype(np.float64) for j in range(3))
            phi = np.stack([h * h, k * k, l * l, h * k, h * l, k * l], 1)
            target = 1.0 / np.asarray(d, np.float64) ** 2
            g, *_ = np.linalg.lstsq(phi, target, rcond=None)
            if np.max(np.abs(phi @ g - target) / target) > 1e-3:
                continue
            scale = np.abs(g).max()
            g[np.abs(g) < 1e-6 * scale] = 0.0
            reps: list[float] = []
            for t in range(_TERMS):
                a = abs(g[t])
                j = next((j for j, r in enumerate(reps) if abs(a - r) <= 1e-3 * max(a, r)), None)
                if j is None:
                    reps.append(a)
                    j = len(reps) - 1
                group[i, t] = j
            if cubic is not None and cubic[i]:
                group[i] = 0  # any setting of a cubic cell: only an isotropic scale keeps it cubic
            basis[i, : len(d)] = phi
            coef[i] = g
            ok[i] = True
        return cls(torch.from_numpy(basis), torch.from_numpy(coef), torch.from_numpy(group), torch.from_numpy(ok))

    def apply(self, index: torch.Tensor, d: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
        """Strained d of sticks ``d`` (B, P) of structures ``index``; padding (d = 0) stays 0."""
        B = len(index)
        factor = 1.0 + amount * (2.0 * torch.rand((B, _TERMS), generator=gen) - 1.0)
        term = self.coef[index] * factor.gather(1, self.group[index])
        inv_d2 = torch.einsum("bpt,bt->bp", self.basis[index], term)
        use = self.ok[index][:, None] & (d > 0) & (inv_d2 > 0)
        # Opposite-signed cross terms can amplify the change of a few d: keep each within ±2·amount.
        strained = torch.minimum(torch.maximum(inv_d2.clamp_min(1e-12).rsqrt(), d * (1 - 2 * amount)), d * (1 + 2 * amount))
        return torch.where(use, strained, d)


def load_sticks(path, *, split: str | None, d_min_A: float | None, max_peaks: int, strain: bool) -> tuple[StickTable, MetricStrain | None]:
    """:meth:`StickTable.from_parquet` plus, with ``strain``, the :class:`MetricStrain` of the same sticks."""
    sticks = StickTable.from_parquet(path, split=split, d_min_A=d_min_A, max_peaks=max_peaks, with_hkl=strain)
    if not strain:
        return sticks, None
    d_rows = [row[row > 0].numpy() for row in sticks.d]  # padding is at the end of each row
    hkl_rows = sticks.hkl_rows or [None] * len(sticks)
    return sticks, MetricStrain.fit(d_rows, hkl_rows, sticks.d.shape[1], cubic=(sticks.crystal_system == 6).numpy())


class RenderedBatches(torch.utils.data.IterableDataset):
    """One epoch of training batches: ``steps`` draws of ``batch_size`` structures, rendered with fresh
    augmentation from the epoch's generators; yields ``(x, space_group, crystal_system)``."""

    def __init__(self, table: StickTable, renderer: Renderer, *, batch_size: int, steps: int, seed_render: int, seed_pick: int,
                 strain: MetricStrain | None = None, strain_amount: float = 0.0, probs: torch.Tensor | None = None):
        self.table, self.renderer, self.probs = table, renderer, probs
        self.strain, self.strain_amount = strain, strain_amount
        self.batch_size, self.steps = batch_size, steps
        self.seed_render, self.seed_pick = seed_render, seed_pick

    def __iter__(self):
        if torch.utils.data.get_worker_info() is not None:
            torch.set_num_threads(1)
        gen = torch.Generator(device=self.renderer.device).manual_seed(self.seed_render)
        pick = torch.Generator().manual_seed(self.seed_pick)
        for _ in range(self.steps):
            if self.probs is None:
                index = torch.randint(len(self.table), (self.batch_size,), generator=pick)
            else:
                index = torch.multinomial(self.probs, self.batch_size, replacement=True, generator=pick)
            sticks, sg, cs = self.table.batch(index)
            if self.strain is not None and self.strain_amount > 0:
                sticks.d = self.strain.apply(index, sticks.d, self.strain_amount, pick)
            y, mask = self.renderer(sticks, gen)
            yield model_input(y, mask), sg, cs


def _epoch_batches(dataset: RenderedBatches, workers: int):
    if workers <= 0:
        return iter(dataset)
    import multiprocessing as mp

    ctx = "fork" if "fork" in mp.get_all_start_methods() else None
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=1, prefetch_factor=4, multiprocessing_context=ctx
    )
    return iter(loader)


@torch.no_grad()
def predict_logits(model, renderer: Renderer, table: StickTable, *, seed: int, batch_size: int = 256, device="cpu"):
    """Render every structure of ``table`` once (seeded) and return stacked logits of both heads."""
    model.eval()
    gen = torch.Generator(device=renderer.device).manual_seed(seed)
    sg_out, cs_out = [], []
    for start in range(0, len(table), batch_size):
        index = torch.arange(start, min(start + batch_size, len(table)))
        sticks, _, _ = table.batch(index)
        y, mask = renderer(sticks, gen)
        sg, cs = model(model_input(y, mask).to(device))
        sg_out.append(sg.float().cpu())
        cs_out.append(cs.float().cpu())
    return torch.cat(sg_out), torch.cat(cs_out)


# Training batches averaged into the final batch-norm statistics. The running averages of training
# (momentum 0.1) weigh the last ~10 batches most; with strong, heavy-tailed augmentation they swung enough
# that validation accuracy of the plain body jumped between ~5 % and ~10 % from one epoch to the next
# (pretrain run, epochs 40-48). Not a TrainConfig field, so that it does not enter the resume fingerprint.
BN_RECALIBRATION_BATCHES = 50


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, batches, device="cpu") -> int:
    """Replace every batch norm's running statistics by their plain average over ``batches``.

    ``batches`` yields model inputs (or tuples whose first element is one). Returns the number of
    batches used; a model without batch norm is left untouched. The model is left in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    n = 0
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        model(x.to(device))
        n += 1
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()
    return n


def real_rows(table: StickTable) -> torch.Tensor:
    """Indices of the rows of ``table`` that are real structures (REAL_SOURCES)."""
    if table.sources is None:
        return torch.zeros(0, dtype=torch.int64)
    return torch.tensor([i for i, s in enumerate(table.sources) if s in REAL_SOURCES], dtype=torch.int64)


def _real_metrics(sg_logits: torch.Tensor, cs_logits: torch.Tensor, table: StickTable) -> dict:
    from xrdid.priors import mp_weights

    rows = real_rows(table)
    if len(rows) == 0:
        return {"val_real_n": 0}
    sg_true, cs_true = table.space_group[rows], table.crystal_system[rows]
    sg_hit = (sg_logits[rows].argmax(1) == sg_true).double().numpy()
    cs_hit = (cs_logits[rows].argmax(1) == cs_true).double().numpy()
    w = mp_weights(sg_true.numpy() + 1)
    return {
        "val_real_n": len(rows),
        "val_real_space_group_acc": float(sg_hit.mean()),
        "val_real_crystal_system_acc": float(cs_hit.mean()),
        "val_real_mp_space_group_acc": float(w @ sg_hit),
        "val_real_mp_crystal_system_acc": float(w @ cs_hit),
    }


def tune_prior(model, sg_logits: torch.Tensor, cs_logits: torch.Tensor, table: StickTable, train_counts) -> dict:
    """The Materials Project label prior at the strength chosen on the validation split's real
    structures (:func:`xrdid.priors.choose_strength`, on the model's calibrated log-probabilities), as
    checkpoint metadata; empty when the validation split has no real structure."""
    from xrdid.priors import choose_strength, materials_project_ratios

    rows = real_rows(table)
    if len(rows) == 0:
        log.info("no real structures in the validation split: no label prior stored")
        return {}
    t = model.temperature.detach()
    sg_logp = torch.log_softmax(sg_logits[rows] / t[0], -1).double().numpy()
    cs_logp = torch.log_softmax(cs_logits[rows] / t[1], -1).double().numpy()
    sg_ratio, cs_ratio = materials_project_ratios(train_counts)
    strength, scores = choose_strength(sg_logp, cs_logp, table.space_group[rows].numpy() + 1, sg_ratio, cs_ratio)
    for r in scores:
        log.info(
            "prior strength %.2f: MP-weighted real validation space group %.1f %% (top-5 %.1f %%), crystal system %.1f %%, log-loss %.3f",
            r["strength"], 100 * r["space_group_top1"], 100 * r["space_group_top5"], 100 * r["crystal_system"], r["space_group_log_loss"],
        )
    log.info("label prior: Materials Project frequencies at strength %.2f (chosen on %d real validation structures)", strength, len(rows))
    return {
        "prior": {"name": "materials_project", "strength": strength, "chosen_on": f"{len(rows)} real structures of the validation split, Materials Project-weighted log-loss", "scores": scores},
        "prior_log_ratio": (strength * sg_ratio).tolist(),
        "crystal_system_prior_log_ratio": (strength * cs_ratio).tolist(),
    }


def _validation_metrics(sg_logits: torch.Tensor, cs_logits: torch.Tensor, table: StickTable) -> dict:
    """The validation columns of ``history.csv`` from both heads' logits on ``table``."""
    top5 = sg_logits.topk(min(5, sg_logits.shape[1]), dim=1).indices
    return {
        **_real_metrics(sg_logits, cs_logits, table),
        "val_loss": float(F.cross_entropy(sg_logits, table.space_group) + F.cross_entropy(cs_logits, table.crystal_system)),
        "val_space_group_acc": float((sg_logits.argmax(1) == table.space_group).float().mean()),
        "val_space_group_top5": float((top5 == table.space_group[:, None]).any(1).float().mean()),
        "val_crystal_system_acc": float((cs_logits.argmax(1) == table.crystal_system).float().mean()),
    }


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature T minimising the NLL of softmax(logits / T) (Guo et al. 2017)."""
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def one_cycle(model: torch.nn.Module, *, lr: float, weight_decay: float, total_steps: int):
    """AdamW and its one-cycle schedule over ``total_steps`` (warm-up 15 %)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps, pct_start=0.15)


def resume_state(state_file: Path | None, fingerprint: dict, model, opt, sched, device) -> tuple[list[dict], int]:
    """Restore model, optimiser and schedule from ``state_file`` when it was saved for ``fingerprint``;
    returns the history rows and the number of finished epochs (none and 0 otherwise)."""
    if state_file is None or not state_file.exists():
        return [], 0
    state = torch.load(state_file, map_location=device, weights_only=False)
    if state.get("fingerprint") != fingerprint:
        log.info("ignoring %s: it belongs to a different configuration", state_file)
        return [], 0
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    log.info("resumed from %s after epoch %d", state_file, state["epoch"])
    return state["history"], state["epoch"]


def save_state(state_file: Path, fingerprint: dict, model, opt, sched, rows: list[dict], epoch: int) -> None:
    """The resume state after ``epoch`` finished epochs, written atomically."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(state_file) as tmp:
        torch.save({"fingerprint": fingerprint, "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "history": rows, "epoch": epoch}, tmp)


def train(
    *,
    sticks: str | Path,
    checkpoint: str | Path,
    history: str | Path,
    instrument: Instrument,
    augment: Augment,
    model_config: CNNConfig,
    config: TrainConfig,
    device: str = "auto",
    threads: int | None = None,
    resume_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Train a classifier; writes the checkpoint directory and ``history.csv``. Returns final metrics."""
    dev = resolve_device(device)
    workers = config.render_workers if dev.type == "cpu" else 0
    if threads:
        # The rendering worker takes one of the threads (see the module docstring).
        torch.set_num_threads(max(1, int(threads) - min(workers, 1)))
    torch.manual_seed(config.seed)
    d_min = instrument.d_min_A
    train_table, strain = load_sticks(sticks, split="train", d_min_A=d_min, max_peaks=config.max_peaks, strain=config.metric_strain > 0)
    if strain is not None:
        log.info("metric strain ±%g on %d of %d training structures (the others' hkl did not fit)", config.metric_strain, int(strain.ok.sum()), len(train_table))
    val_table = StickTable.from_parquet(sticks, split="val", d_min_A=d_min, max_peaks=config.max_peaks)
    if len(train_table) == 0 or len(val_table) == 0:
        raise ValueError(f"{sticks}: need structures in both train and val splits, got {len(train_table)} and {len(val_table)}")
    probs = draw_probabilities(train_table, config.source_weights)
    train_counts = label_counts(train_table, probs, model_config.n_space_groups)
    log.info("training on %d structures, validating on %d (%d real), device %s", len(train_table), len(val_table), len(real_rows(val_table)), dev)

    model = XRDClassifier(model_config)
    if config.init_from is not None:
        init_weights(model, config.init_from)
    model = model.to(dev)
    opt, sched = one_cycle(model, lr=config.lr, weight_decay=config.weight_decay, total_steps=config.epochs * config.steps_per_epoch)
    train_renderer = Renderer(instrument, augment, device=dev)
    val_renderer = Renderer(instrument, augment, device=dev)
    amp = dev.type == "cuda"

    state_file = Path(resume_dir) / "state.pt" if resume_dir else None
    fingerprint = {
        "train": _fingerprint_train(config), "model": model_config.to_dict(), "instrument": instrument.to_dict(),
        "augment": asdict(augment),
        # The data too: a state saved for other structures (a changed structures table) is not resumed.
        "data": _digest(train_table.ids, val_table.ids),
    }
    if config.init_from is not None:
        fingerprint["init"] = init_digest(config.init_from)
    rows, start_epoch = resume_state(state_file, fingerprint, model, opt, sched, dev)

    t_start = time.perf_counter() - (rows[-1]["elapsed_s"] if rows else 0.0)
    for epoch in range(start_epoch, config.epochs):
        model.train()
        # Per-epoch generators: a resumed run draws exactly the batches an uninterrupted one would.
        batches = RenderedBatches(
            train_table, train_renderer, batch_size=config.batch_size, steps=config.steps_per_epoch,
            seed_render=config.seed * 100_003 + epoch, seed_pick=config.seed * 100_003 + epoch + 50_000,
            strain=strain, strain_amount=config.metric_strain, probs=probs,
        )
        t_epoch = time.perf_counter()
        running = 0.0
        bar = tqdm(_epoch_batches(batches, workers), total=config.steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, mininterval=5)
        for x, sg, cs in bar:
            x, sg, cs = x.to(dev), sg.to(dev), cs.to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(model(x), sg, cs, config.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            running += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        rate = config.steps_per_epoch * config.batch_size / (time.perf_counter() - t_epoch)
        sg_logits, cs_logits = predict_logits(model, val_renderer, val_table, seed=config.seed + 7, device=dev)
        row = {
            "epoch": epoch + 1,
            "train_loss": running / config.steps_per_epoch,
            **_validation_metrics(sg_logits, cs_logits, val_table),
            "lr": sched.get_last_lr()[0],
            "patterns_per_s": rate,
            "elapsed_s": time.perf_counter() - t_start,
            "patterns_seen": (epoch + 1) * config.steps_per_epoch * config.batch_size,
        }
        rows.append(row)
        log.info(
            "epoch %d: train loss %.3f, val loss %.3f, space group %.1f %% (top-5 %.1f %%), crystal system %.1f %%, %.0f patterns/s",
            row["epoch"], row["train_loss"], row["val_loss"], 100 * row["val_space_group_acc"],
            100 * row["val_space_group_top5"], 100 * row["val_crystal_system_acc"], rate,
        )
        if state_file is not None:
            # A usable checkpoint of the latest epoch (temperatures fitted on this epoch's validation
            # logits), so a long run can be shipped or evaluated before it ends.
            latest = copy.deepcopy(model).cpu()
            latest.temperature.copy_(torch.tensor([fit_temperature(sg_logits, val_table.space_group), fit_temperature(cs_logits, val_table.crystal_system)]))
            save_checkpoint(
                latest, instrument, state_file.parent / "latest",
                extra={"augment": asdict(augment), "train": asdict(config), "n_train_structures": len(train_table), "epoch": epoch + 1,
                       "train_space_group_counts": train_counts},
            )
            save_state(state_file, fingerprint, model, opt, sched, rows, epoch + 1)

    calibration = RenderedBatches(
        train_table, train_renderer, batch_size=config.batch_size, steps=BN_RECALIBRATION_BATCHES,
        seed_render=config.seed * 100_003 + 77_777, seed_pick=config.seed * 100_003 + 88_888,
        strain=strain, strain_amount=config.metric_strain, probs=probs,
    )
    recalibrate_batchnorm(model, calibration, device=dev)
    sg_logits, cs_logits = predict_logits(model, val_renderer, val_table, seed=config.seed + 7, device=dev)
    final = _validation_metrics(sg_logits, cs_logits, val_table)
    log.info(
        "after batch-norm recalibration on %d training batches: validation space group %.1f %%, crystal system %.1f %%",
        BN_RECALIBRATION_BATCHES, 100 * final["val_space_group_acc"], 100 * final["val_crystal_system_acc"],
    )
    model.temperature.copy_(torch.tensor([fit_temperature(sg_logits, val_table.space_group), fit_temperature(cs_logits, val_table.crystal_system)]))
    log.info("fitted temperatures: space group %.2f, crystal system %.2f", *model.temperature.tolist())
    model.cpu()
    prior = tune_prior(model, sg_logits, cs_logits, val_table, train_counts)
    save_checkpoint(
        model, instrument, checkpoint,
        extra={"augment": asdict(augment), "train": asdict(config), "n_train_structures": len(train_table),
               "epoch": config.epochs, "train_space_group_counts": train_counts, **prior},
    )
    with atomic_path(history) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return rows[-1]
