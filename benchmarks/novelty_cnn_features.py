"""Would a density score in the CNN's penultimate layer tell mixtures and held-out space groups from known
patterns? (Tried beside the VAE's novelty; not used: it does worse than chance.)

The score: the smallest Mahalanobis distance² of the shipped CNN's 256 penultimate features (after the
hidden layer's GELU) to the crystal systems' class means, with a shared covariance (10 % shrinkage towards
its diagonal), fitted on validation structures rendered as the VAE's novelty calibration renders them
(training augmentation and :func:`xrdid.novelty.measured_like`), inputs offset-removed as ``predict``
prepares them. AUROC of known test-split patterns against the novelty benchmark's sets
(:mod:`xrdid.evaluate.novelty`), and where the measured single-phase development patterns fall among the
known ones. The shipped CNN saw every space group, so its unseen-space-group row is not a held-out one.

    .venv/bin/python benchmarks/novelty_cnn_features.py --sticks results/vae/sticks.parquet --n 300 --threads 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from xrdid.data import StickTable
from xrdid.evaluate import novelty as bench
from xrdid.instrument import Augment, Instrument, Renderer
from xrdid.novelty import as_prepared, input_bundle, load_novelty, measured_like
from xrdid.predict import load_model
from xrdid.train.vae import subset, subset_index
from xrdid.weights import pretrained_path


@torch.no_grad()
def features(cnn, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([cnn.head(cnn.blocks(cnn.stem(as_prepared(x[s : s + 256])))) for s in range(0, len(x), 256)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sticks", required=True)
    ap.add_argument("--n", type=int, default=300, help="patterns per novel set, validation and known structures")
    ap.add_argument("--measured", default="../shared/data/measured")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    nov = load_novelty(pretrained_path())
    cnn = load_model(None, prior="none", vae=None).model.eval()
    inst, aug = Instrument.from_dict(nov.meta["instrument"]), Augment.from_dict(nov.meta["augment"])
    hold = nov.meta["train"]["holdout_space_groups"]
    pick = lambda t, n, s: subset_index(t, torch.randperm(len(t), generator=torch.Generator().manual_seed(s))[:n])
    val, _ = subset(StickTable.from_parquet(args.sticks, split="val", d_min_A=inst.d_min_A, max_peaks=512), None, hold)
    val = pick(val, 2 * args.n, 1)
    cal = torch.cat([bench.render_known(val, Renderer(inst, aug), 5), bench.render_known(val, Renderer(inst, measured_like(aug)), 6)])
    keep = cal[:, 1].mean(1) >= 0.2  # as the calibration: crops below predict's minimum coverage left out
    cal, labels = cal[keep], torch.cat([val.crystal_system, val.crystal_system])[keep]
    f = features(cnn, cal)
    classes = torch.unique(labels)
    means = torch.stack([f[labels == c].mean(0) for c in classes])
    centred = f - means[torch.searchsorted(classes, labels)]
    cov = centred.T @ centred / (len(f) - len(classes))
    precision = torch.linalg.inv(0.9 * cov + 0.1 * torch.diag(torch.diag(cov)) + 1e-3 * torch.eye(len(cov)))

    def score(x):
        diff = features(cnn, x)[:, None] - means[None]
        return torch.einsum("bci,ij,bcj->bc", diff, precision, diff).min(1).values.numpy()

    test, _ = subset(StickTable.from_parquet(args.sticks, split="test", d_min_A=inst.d_min_A), None, hold)
    known = pick(test, 2 * args.n, 3)
    r = Renderer(inst, aug)
    everything = StickTable.from_parquet(args.sticks, d_min_A=inst.d_min_A)
    held = torch.nonzero(torch.isin(everything.space_group, torch.as_tensor([g - 1 for g in hold]))).squeeze(1)[: args.n]
    k = score(bench.render_known(known, r, 9))
    sets = {"unseen_space_groups": bench.render_known(subset_index(everything, held), r, 10),
            "mixtures_2": bench.render_mixtures(known, r, args.n, 2, 11), "mixtures_3": bench.render_mixtures(known, r, args.n, 3, 12),
            "amorphous": bench.render_amorphous(known, r, args.n, 13), "noise": bench.render_noise(r, args.n, 14)}
    print(f"| AUROC, known (n={len(k)}) vs … | " + " | ".join(sets) + " |")
    print("|---|" + "---|" * len(sets))
    print("| CNN-feature Mahalanobis | " + " | ".join(f"{bench.auroc(k, score(x)):.3f}" for x in sets.values()) + " |")
    folder = Path(args.measured)
    if (folder / "index.csv").exists():
        rows = bench.measured_rows({"m": {"folder": folder, "labels": folder / "index.csv"}}, None)
        x, _ = bench._measured_inputs(input_bundle(nov), folder, [row[1:] for row in rows])
        m = score(x)
        q95 = np.quantile(k, 0.95)
        print(f"\nmeasured single-phase (development data): {int((m >= q95).sum())} of {len(m)} above the known patterns' "
              f"95th percentile; their percentiles among known: {np.round([np.mean(k < v) for v in m], 2).tolist()}")


if __name__ == "__main__":
    main()
