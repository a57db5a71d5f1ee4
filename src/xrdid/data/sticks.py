"""Load a sticks table into padded tensors (one row per structure) for on-the-fly rendering."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from xrdid.instrument.render import StickBatch
from xrdid.labels import crystal_system_index


@dataclass
class StickTable:
    ids: list[str]
    d: torch.Tensor  # (S, P) float32, zero padded
    f2m: torch.Tensor  # (S, P) float32, zero padded
    space_group: torch.Tensor  # (S,) int64, class index = number − 1
    crystal_system: torch.Tensor  # (S,) int64
    # With ``with_hkl``: per structure the Miller indices (int64 (n, 3)) of the kept sticks, in the order of
    # ``d``'s row (None where the table has none or they don't match).
    hkl_rows: list[np.ndarray | None] | None = None
    # The structure source of each row (``source`` column; None for tables without one).
    sources: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, index) -> tuple[StickBatch, torch.Tensor, torch.Tensor]:
        return StickBatch(self.d[index], self.f2m[index]), self.space_group[index], self.crystal_system[index]

    @classmethod
    def from_parquet(
        cls, path: str | Path, *, split: str | None = None, d_min_A: float | None = None, max_peaks: int = 512,
        with_hkl: bool = False,
    ) -> StickTable:
        """Read ``path`` (optionally one split); keep sticks with d ≥ d_min_A, the ``max_peaks`` strongest."""
        with_hkl = with_hkl and "hkl" in pq.read_schema(path).names
        names = pq.read_schema(path).names
        columns = ["id", "space_group", "d", "f2m", "split"] + (["hkl"] if with_hkl else []) + (["source"] if "source" in names else [])
        table = pq.read_table(path, columns=columns)
        if split is not None:
            table = table.filter(pc.equal(table["split"], split))
        n = table.num_rows
        d_lists = table["d"].combine_chunks()
        f_lists = table["f2m"].combine_chunks()
        offsets = d_lists.offsets.to_numpy()
        d_flat = d_lists.values.to_numpy(zero_copy_only=False)
        f_flat = f_lists.values.to_numpy(zero_copy_only=False)
        hkl_lists = table["hkl"].combine_chunks() if with_hkl else None
        if hkl_lists is not None:
            hkl_flat = hkl_lists.values.flatten().to_numpy(zero_copy_only=False).astype(np.int64).reshape(-1, 3)
            hkl_offsets = hkl_lists.offsets.to_numpy()
        rows, hkl_rows = [], []
        for i in range(n):
            d = d_flat[offsets[i] : offsets[i + 1]]
            f = f_flat[offsets[i] : offsets[i + 1]]
            hkl = hkl_flat[hkl_offsets[i] : hkl_offsets[i + 1]] if hkl_lists is not None else None
            if hkl is not None and len(hkl) != len(d):
                hkl = None
            if d_min_A is not None:
                keep = d >= d_min_A
                d, f = d[keep], f[keep]
                hkl = hkl[keep] if hkl is not None else None
            if len(d) > max_peaks:
                top = np.argsort(f)[::-1][:max_peaks]
                d, f = d[top], f[top]
                hkl = hkl[top] if hkl is not None else None
            rows.append((d, f))
            hkl_rows.append(hkl)
        width = max((len(d) for d, _ in rows), default=1) or 1
        D = np.zeros((n, width), np.float32)
        F = np.zeros((n, width), np.float32)
        for i, (d, f) in enumerate(rows):
            D[i, : len(d)] = d
            F[i, : len(f)] = f
        sg = table["space_group"].to_numpy().astype(np.int64)
        return cls(
            ids=table["id"].to_pylist(),
            d=torch.from_numpy(D),
            f2m=torch.from_numpy(F),
            space_group=torch.from_numpy(sg - 1),
            crystal_system=torch.tensor([crystal_system_index(int(s)) for s in sg], dtype=torch.int64),
            hkl_rows=hkl_rows if with_hkl else None,
            sources=table["source"].to_pylist() if "source" in table.column_names else None,
        )
