r"""A 1D convolutional β-VAE of powder patterns, with a classifier on its latent space.

Input: (B, 2, N), the normalised pattern and its coverage mask on the instrument's 2θ grid, exactly the
CNN's input (:func:`xrdid.train.loop.model_input`), so both see the same thing at prediction time.

* Encoder: a strided patch stem (kernel 8, stride 4) and plain stride-2 stages (conv → BN → GELU), as the
  CNN's ``plain`` body; the last feature map is flattened (peak positions carry the lattice) into a
  dense layer that gives the posterior q(z|x) = N(μ, diag σ²) of a ``latent``-dimensional z.
* Decoder: dense layers back to the last feature map's shape, then per stage a convolution whose channels
  are shuffled into twice the length (sub-pixel convolution: a transposed convolution's upsampling at a
  fraction of its CPU cost), and a last ×``stem_stride`` one to N points; a sigmoid gives the
  reconstruction of :math:`t = \sqrt{y}` (see below), in [0, 1].
* Classifier: an MLP on μ with two heads, 230 space groups and 7 crystal systems, and a temperature per
  head fitted on validation data (as the CNN's).

The loss of a pattern (:func:`vae_loss`) is

.. math:: L = \frac{1}{2σ_r^2}\sum_{i\ \rm covered}(t_i - \hat t_i)^2 + β\,{\rm KL}(q(z|x)\,\|\,N(0, I))
          + α\,({\rm CE}_{\rm sg} + {\rm CE}_{\rm cs}),

t = √y: counting noise on a max-normalised pattern has a variance proportional to the intensity, and its
square root makes it nearly constant (Anscombe), so weak peaks and the background weigh as much as the
strong peaks, and a Gaussian likelihood with one σ_r fits. Points outside the coverage mask are never
reconstructed. The classifier's gradient reaches the encoder (α > 0): the latent space is organised by
symmetry as well as by pattern shape, which both the latent classifier and the class-conditional latent
density of :mod:`xrdid.novelty` use.

A checkpoint is a directory with ``vae.json`` (config, instrument, label maps, novelty calibration,
version) and ``vae.pt`` (a plain state dict, loaded with ``weights_only=True``), so it can live beside
the CNN's ``model.json`` and ``weights.pt`` in one directory (the shipped ``xrdid/pretrained/``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from xrdid.instrument.presets import Instrument
from xrdid.io import atomic_path
from xrdid.labels import CRYSTAL_SYSTEMS, N_SPACE_GROUPS
from xrdid.models.checkpoint import model_meta, read_model
from xrdid.models.cnn import StagedConfig

FORMAT = "xrdid-vae/1"
META_FILE, WEIGHTS_FILE = "vae.json", "vae.pt"


@dataclass
class VAEConfig(StagedConfig):
    n_points: int = 2048
    in_channels: int = 2
    stem_channels: int = 24
    stem_kernel: int = 8
    stem_stride: int = 4
    stage_channels: tuple[int, ...] = (32, 48, 64, 96)
    kernel_size: int = 5
    hidden: int = 128
    latent: int = 32
    classifier_hidden: int = 256
    dropout: float = 0.2
    n_space_groups: int = N_SPACE_GROUPS
    n_crystal_systems: int = len(CRYSTAL_SYSTEMS)

    def __post_init__(self):
        down = self.stem_stride * 2 ** len(self.stage_channels)
        if self.n_points % down:
            raise ValueError(f"n_points ({self.n_points}) must be a multiple of stem_stride · 2^stages = {down}")
        if self.stem_kernel < self.stem_stride or (self.stem_kernel - self.stem_stride) % 2:
            raise ValueError("stem_kernel − stem_stride must be even and nonnegative (the stem then gives n_points / stem_stride points)")



def _down(cin: int, cout: int, k: int) -> nn.Module:
    return nn.Sequential(nn.Conv1d(cin, cout, k, stride=2, padding=k // 2, bias=False), nn.BatchNorm1d(cout), nn.GELU())


class _Shuffle(nn.Module):
    """(B, C·r, L) → (B, C, L·r): the r channels of a position become r neighbouring points (sub-pixel
    convolution, Shi et al. 2016). A convolution followed by it upsamples like a transposed convolution
    but runs several times faster on CPU."""

    def __init__(self, r: int):
        super().__init__()
        self.r = r

    def forward(self, x):
        B, C, L = x.shape
        return x.view(B, C // self.r, self.r, L).transpose(2, 3).reshape(B, C // self.r, L * self.r)


def _up(cin: int, cout: int, k: int) -> nn.Module:
    return nn.Sequential(nn.Conv1d(cin, 2 * cout, k, padding=k // 2, bias=False), _Shuffle(2), nn.BatchNorm1d(cout), nn.GELU())


class XRDVAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = c = config
        self.stem = nn.Sequential(
            nn.Conv1d(c.in_channels, c.stem_channels, c.stem_kernel, stride=c.stem_stride, padding=(c.stem_kernel - c.stem_stride) // 2, bias=False),
            nn.BatchNorm1d(c.stem_channels),
            nn.GELU(),
        )
        chans = [c.stem_channels, *c.stage_channels]
        self.down = nn.Sequential(*[_down(a, b, c.kernel_size) for a, b in pairwise(chans)])
        self.length = c.n_points // (c.stem_stride * 2 ** len(c.stage_channels))
        flat = chans[-1] * self.length
        self.to_hidden = nn.Sequential(nn.Flatten(), nn.Linear(flat, c.hidden), nn.GELU())
        self.to_posterior = nn.Linear(c.hidden, 2 * c.latent)
        self.from_latent = nn.Sequential(nn.Linear(c.latent, c.hidden), nn.GELU(), nn.Linear(c.hidden, flat), nn.GELU())
        rev = chans[::-1]
        self.up = nn.Sequential(*[_up(a, b, 3) for a, b in pairwise(rev)])
        self.out = nn.Sequential(nn.Conv1d(c.stem_channels, c.stem_stride, 3, padding=1), _Shuffle(c.stem_stride))
        self.classifier = nn.Sequential(nn.Linear(c.latent, c.classifier_hidden), nn.GELU(), nn.Dropout(c.dropout))
        self.space_group = nn.Linear(c.classifier_hidden, c.n_space_groups)
        self.crystal_system = nn.Linear(c.classifier_hidden, c.n_crystal_systems)
        self.register_buffer("temperature", torch.ones(2))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean μ and log-variance, each (B, latent)."""
        h = self.to_hidden(self.down(self.stem(x)))
        mu, logvar = self.to_posterior(h).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction logits of t = √y, (B, N)."""
        h = self.from_latent(z).view(len(z), self.config.stage_channels[-1], self.length)
        return self.out(self.up(h)).squeeze(1)

    def classify(self, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.classifier(mu)
        return self.space_group(h), self.crystal_system(h)

    def forward(self, x: torch.Tensor, sample: bool | None = None) -> dict[str, torch.Tensor]:
        """``mu``, ``logvar``, ``recon_logits`` (decoded from a sample of z in training, from μ in eval
        unless ``sample``), and both heads' logits ``sg`` and ``cs`` (from μ)."""
        mu, logvar = self.encode(x)
        sample = self.training if sample is None else sample
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        sg, cs = self.classify(mu)
        return {"mu": mu, "logvar": logvar, "recon_logits": self.decode(z), "sg": sg, "cs": cs}

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sg, cs = self.classify(self.encode(x)[0])
        return (sg / self.temperature[0]).softmax(-1), (cs / self.temperature[1]).softmax(-1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per pattern, in nats."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(1)


def reconstruction_target(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """t = √y and the coverage mask of model inputs ``x`` (B, 2, N)."""
    return x[:, 0].clamp_min(0.0).sqrt(), x[:, 1]


def squared_error(recon_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ over covered points of (t − t̂)², per pattern."""
    t, mask = reconstruction_target(x)
    return ((torch.sigmoid(recon_logits.float()) - t).square() * mask).sum(1)


@dataclass
class LossWeights:
    beta: float = 1.0
    sigma: float = 0.05
    alpha: float = 20.0
    label_smoothing: float = 0.05


def vae_loss(out: dict, x: torch.Tensor, sg: torch.Tensor, cs: torch.Tensor, w: LossWeights) -> tuple[torch.Tensor, dict]:
    """Mean over the batch of the module docstring's L; also its terms (floats) for logging."""
    recon = squared_error(out["recon_logits"], x) / (2 * w.sigma**2)
    kl = kl_divergence(out["mu"].float(), out["logvar"].float())
    ce = F.cross_entropy(out["sg"].float(), sg, label_smoothing=w.label_smoothing) + F.cross_entropy(
        out["cs"].float(), cs, label_smoothing=w.label_smoothing
    )
    loss = recon.mean() + w.beta * kl.mean() + w.alpha * ce
    return loss, {"recon": float(recon.detach().mean()), "kl": float(kl.detach().mean()), "ce": float(ce.detach())}


def save_vae(model: XRDVAE, instrument: Instrument, path: str | Path, *, extra: dict | None = None) -> None:
    """Write ``vae.json`` and ``vae.pt`` into directory ``path`` (created if needed), each atomically;
    other files there (a CNN checkpoint) are left alone."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = model_meta(model, "XRDVAE", instrument, FORMAT, extra)
    with atomic_path(path / WEIGHTS_FILE) as tmp:
        torch.save(model.state_dict(), tmp)
    with atomic_path(path / META_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))


def has_vae(path: str | Path) -> bool:
    path = Path(path)
    return (path / META_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def load_vae(path: str | Path, map_location="cpu") -> tuple[XRDVAE, Instrument, dict]:
    """Load the VAE in directory ``path``; raises ValueError with a clear message when there is none."""
    path = Path(path)
    meta_file, weights = path / META_FILE, path / WEIGHTS_FILE
    if not has_vae(path):
        raise ValueError(f"{path}: no xrdid VAE here (expected {META_FILE} and {WEIGHTS_FILE})")
    model, meta = read_model(meta_file, weights, FORMAT, lambda config: XRDVAE(VAEConfig.from_dict(config)),
                             map_location=map_location)
    return model, Instrument.from_dict(meta["instrument"]), meta
