"""A 1D CNN with two heads: 230 space groups and 7 crystal systems.

Input: (B, 2, N) — the normalised pattern and its coverage mask on the instrument's 2θ grid.
A strided convolutional stem and stride-2 stages shrink N; the last feature map is flattened (not
globally pooled) because absolute peak positions carry the lattice information.
``forward`` returns logits; the loss lives in one place, :func:`loss_fn`.

Three bodies share the stem and the head (``CNNConfig.architecture``):

* ``resnet`` — residual blocks, each conv(stride 2) → BN → GELU → conv → BN plus a strided 1×1 skip;
* ``convnext`` — per stage a stride-2 downsampling conv, then ``depth`` ConvNeXt-style blocks
  (depthwise conv k=7 → BN → 1×1 expand ×2 → GELU → 1×1, residual); BN instead of LayerNorm because it
  folds into the convolutions and needs no transposes on CPU;
* ``plain`` — conv(stride 2) → BN → GELU per stage (VGG-like without pooling, the cheapest per point).

The choice was made by an ablation at equal training budget (benchmarks/README.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xrdid.labels import CRYSTAL_SYSTEMS, N_SPACE_GROUPS

ARCHITECTURES = ("resnet", "convnext", "plain")


class StagedConfig:
    """JSON round trip of a network config dataclass whose ``stage_channels`` is a tuple (a list in JSON)."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stage_channels"] = list(self.stage_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict):
        d = dict(d)
        if "stage_channels" in d:
            d["stage_channels"] = tuple(d["stage_channels"])
        return cls(**d)


@dataclass
class CNNConfig(StagedConfig):
    n_points: int = 4096
    in_channels: int = 2
    stem_channels: int = 24
    # The stem reads non-overlapping-ish patches (kernel 8, stride 4): cheap on CPU, and peak
    # positions within a patch stay encoded in the channels.
    stem_kernel: int = 8
    stem_stride: int = 4
    stage_channels: tuple[int, ...] = (32, 48, 64, 96, 128)
    kernel_size: int = 5
    hidden: int = 256
    dropout: float = 0.3
    n_space_groups: int = N_SPACE_GROUPS
    n_crystal_systems: int = len(CRYSTAL_SYSTEMS)
    # Body: "resnet" | "convnext" | "plain" (see the module docstring); depth: blocks per convnext stage.
    architecture: str = "resnet"
    depth: int = 1

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; expected one of {', '.join(ARCHITECTURES)}")



class _Block(nn.Module):
    """Residual block that halves the length: conv(stride 2) → BN → GELU → conv → BN, plus a strided skip."""

    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, k, stride=2, padding=k // 2, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, k, padding=k // 2, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.skip = nn.Sequential(nn.Conv1d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm1d(cout))

    def forward(self, x):
        y = F.gelu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.gelu(y + self.skip(x))


class _ConvNeXtBlock(nn.Module):
    """Depthwise conv (k) → BN → 1×1 expand ×2 → GELU → 1×1, added to the input (length kept)."""

    def __init__(self, c: int, k: int = 7, expand: int = 2):
        super().__init__()
        self.dw = nn.Conv1d(c, c, k, padding=k // 2, groups=c, bias=False)
        self.bn = nn.BatchNorm1d(c)
        self.pw1 = nn.Conv1d(c, expand * c, 1)
        self.pw2 = nn.Conv1d(expand * c, c, 1)

    def forward(self, x):
        return x + self.pw2(F.gelu(self.pw1(self.bn(self.dw(x)))))


def _convnext_stage(cin: int, cout: int, k: int, depth: int) -> nn.Module:
    down = [nn.Conv1d(cin, cout, 2, stride=2, bias=False), nn.BatchNorm1d(cout)]
    return nn.Sequential(*down, *[_ConvNeXtBlock(cout, max(k, 7)) for _ in range(depth)])


def _plain_stage(cin: int, cout: int, k: int) -> nn.Module:
    # A strided convolution (not conv + max-pool): half the multiply-adds for the same output length.
    return nn.Sequential(nn.Conv1d(cin, cout, k, stride=2, padding=k // 2, bias=False), nn.BatchNorm1d(cout), nn.GELU())


def pooled_features(h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The features a pattern's mixture scores read: the hidden layer ``h`` (B, hidden) beside the last
    convolution stage's channels ``z`` (B, C, L), max- and mean-pooled over the pattern (B, hidden + 2 C)."""
    return torch.cat([h, z.amax(2), z.mean(2)], 1)


class XRDClassifier(nn.Module):
    def __init__(self, config: CNNConfig):
        super().__init__()
        self.config = config
        c = config
        self.stem = nn.Sequential(
            nn.Conv1d(c.in_channels, c.stem_channels, c.stem_kernel, stride=c.stem_stride, padding=(c.stem_kernel - c.stem_stride) // 2, bias=False),
            nn.BatchNorm1d(c.stem_channels),
            nn.GELU(),
        )
        blocks, cin = [], c.stem_channels
        for cout in c.stage_channels:
            if c.architecture == "convnext":
                blocks.append(_convnext_stage(cin, cout, c.kernel_size, c.depth))
            elif c.architecture == "plain":
                blocks.append(_plain_stage(cin, cout, c.kernel_size))
            else:
                blocks.append(_Block(cin, cout, c.kernel_size))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        with torch.no_grad():
            length = self.blocks(self.stem(torch.zeros(1, c.in_channels, c.n_points))).shape[-1]
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(c.dropout),
            nn.Linear(cin * length, c.hidden),
            nn.GELU(),
            nn.Dropout(c.dropout),
        )
        self.space_group = nn.Linear(c.hidden, c.n_space_groups)
        self.crystal_system = nn.Linear(c.hidden, c.n_crystal_systems)
        # Temperature for calibrated probabilities (1 until fitted on validation data).
        self.register_buffer("temperature", torch.ones(2))

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The hidden layer the heads read, and the last convolution stage's output it was made from."""
        z = self.blocks(self.stem(x))
        return self.head(z), z

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self._trunk(x)
        return self.space_group(h), self.crystal_system(h)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both heads' logits and, from the same pass, the pattern's features: the hidden layer beside the
        last convolution stage's channels, max- and mean-pooled over the pattern (B, hidden + 2 channels)."""
        h, z = self._trunk(x)
        return self.space_group(h), self.crystal_system(h), pooled_features(h, z)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sg, cs = self(x)
        return (sg / self.temperature[0]).softmax(-1), (cs / self.temperature[1]).softmax(-1)


def loss_fn(logits: tuple[torch.Tensor, torch.Tensor], sg: torch.Tensor, cs: torch.Tensor, label_smoothing: float = 0.05):
    """Sum of the two heads' cross-entropies."""
    sg_logits, cs_logits = logits
    return F.cross_entropy(sg_logits, sg, label_smoothing=label_smoothing) + F.cross_entropy(
        cs_logits, cs, label_smoothing=label_smoothing
    )
