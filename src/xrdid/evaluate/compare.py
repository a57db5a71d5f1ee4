"""CNN against the VAE's latent classifier, on the same inputs: the comparison report.

Test sets, each given to both models as identical model inputs:

* ``synthetic test split`` — the sticks table's test structures of the space groups the VAE was trained on
  (its ``holdout_space_groups`` are left out: they are the novelty benchmark's), rendered once with the
  training augmentation (seeded);
* ``AFLOW prototypes`` — the real structures shipped with pymatgen (:func:`xrdid.evaluate.real.aflow_prototypes`),
  rendered ``draws`` times with the same augmentation;
* each measured set (folder + labels CSV, :func:`xrdid.evaluate.measured.read_measured_labels`), read and put
  on the grid exactly as ``xrdid predict`` does; files that cannot be classified are listed and left out.

Per model and set: space group top-1, top-5, macro F1 and expected calibration error (15 bins), crystal
system accuracy, macro F1 and ECE (:func:`xrdid.evaluate.metrics.classification_metrics`; a measured pattern
with several acceptable answers is scored as right when any is predicted, and its first answer enters F1
and ECE); plus parameters, training time (``train_seconds`` of the checkpoint, else its ``history.csv``) and
prediction latency (median ms per pattern, batch of one, one thread, measured in the same run).

Written as JSON, CSV (one row per model and set), Markdown, an HTML table for ``snakemake --report``, and a
bar chart.
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from xrdid.data import StickTable
from xrdid.evaluate.metrics import classification_metrics
from xrdid.instrument import Augment, Instrument, Renderer
from xrdid.io import atomic_path, write_text
from xrdid.labels import CRYSTAL_SYSTEMS, N_SPACE_GROUPS, crystal_system_index
from xrdid.novelty import load_novelty, same_grid
from xrdid.report import markdown_page
from xrdid.train.loop import model_input
from xrdid.train.vae import subset

log = logging.getLogger(__name__)

MODELS = ("CNN", "VAE latent classifier")
FIELDS = ["model", "test_set", "n", "space_group_top1", "space_group_top5", "space_group_macro_f1", "space_group_ece",
          "crystal_system_accuracy", "crystal_system_macro_f1", "crystal_system_ece", "parameters", "train_seconds",
          "latency_ms"]


def _render(table: StickTable, renderer: Renderer, seed: int, draws: int = 1):
    g = torch.Generator().manual_seed(seed)
    xs, sg, cs = [], [], []
    for _ in range(draws):
        for start in range(0, len(table), 256):
            sticks, s, c = table.batch(torch.arange(start, min(start + 256, len(table))))
            xs.append(model_input(*renderer(sticks, g)))
            sg.append(s)
            cs.append(c)
    return torch.cat(xs), torch.cat(sg), torch.cat(cs)


@torch.no_grad()
def _probabilities(cnn, vae, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    out: dict[str, list] = {m: [[], []] for m in MODELS}
    for start in range(0, len(x), 256):
        xb = x[start : start + 256]
        for name, (sg, cs) in ((MODELS[0], cnn.probabilities(*cnn.model(xb))), (MODELS[1], vae.predict_proba(xb))):
            out[name][0].append(sg)
            out[name][1].append(cs)
    return {k: (torch.cat(v[0]), torch.cat(v[1])) for k, v in out.items()}


def _metrics(sg_p, cs_p, sg, cs, accept: list[set[int]] | None = None) -> dict:
    s = classification_metrics(sg_p, sg, N_SPACE_GROUPS, top_k=5)
    c = classification_metrics(cs_p, cs, len(CRYSTAL_SYSTEMS))
    out = {"n": len(sg), "space_group_top1": s["accuracy"], "space_group_top5": s["top5_accuracy"],
           "space_group_macro_f1": s["macro_f1"], "space_group_ece": s["ece"], "crystal_system_accuracy": c["accuracy"],
           "crystal_system_macro_f1": c["macro_f1"], "crystal_system_ece": c["ece"]}
    if accept is not None:  # several acceptable answers (measured patterns): right when any is predicted
        top5 = sg_p.topk(5, dim=1).indices + 1
        systems = [{crystal_system_index(g) for g in a} for a in accept]
        out["space_group_top1"] = float(np.mean([int(top5[i, 0]) in a for i, a in enumerate(accept)]))
        out["space_group_top5"] = float(np.mean([bool(set(top5[i].tolist()) & a) for i, a in enumerate(accept)]))
        out["crystal_system_accuracy"] = float(np.mean([int(cs_p[i].argmax()) in s for i, s in enumerate(systems)]))
    return out


def _latency_ms(fn, x: torch.Tensor, repeats: int = 30) -> float:
    """Median wall time (ms) of ``fn(x)`` for one pattern, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for _ in range(3):
                fn(x)
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                fn(x)
                times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    return 1000 * statistics.median(times)


def _train_seconds(meta: dict, history: str | Path | None) -> float | None:
    if meta.get("train_seconds") is not None:
        return float(meta["train_seconds"])
    if history is not None and Path(history).is_file():
        with open(history, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows and rows[-1].get("elapsed_s"):
            return float(rows[-1]["elapsed_s"])
    return None


def _measured_inputs(bundle, folder, labels):
    from xrdid.evaluate.measured import read_measured_labels
    from xrdid.predict import PredictionError, prepare
    from xrdid.readers import PatternError, read_pattern

    xs, accept, skipped = [], [], {}
    for item in read_measured_labels(folder, labels):
        try:
            y, mask = prepare(bundle, read_pattern(item.file, wavelength_A=item.wavelength_A), wavelength_A=item.wavelength_A)
        except (PatternError, PredictionError) as exc:
            skipped[item.file.name] = str(exc)
            continue
        xs.append(model_input(torch.as_tensor(y)[None], torch.as_tensor(mask)[None]))
        accept.append(set(item.space_groups))
    return (torch.cat(xs) if xs else None), accept, skipped


def compare_models(
    *, cnn: str | Path | None, vae: str | Path, sticks: str | Path, measured: dict | None = None,
    cnn_history: str | Path | None = None, draws: int = 2, seed: int = 12345, prototypes: bool = True,
    prototype_limit: int | None = None,
) -> dict:
    """The comparison of the module docstring as a dict: ``rows`` (one per model and set), ``skipped``
    measured files, and what was compared. ``cnn`` None or "pretrained": the shipped CNN; ``measured``:
    name → {folder, labels}."""
    from xrdid.predict import load_model

    novelty = load_novelty(vae)
    inst = Instrument.from_dict(novelty.meta["instrument"])
    bundle = load_model(None if cnn in (None, "pretrained") else cnn, vae=None)
    if not same_grid(bundle.instrument.to_dict(), inst.to_dict()):
        raise ValueError(f"{bundle.path}: the CNN's grid differs from the VAE's ({vae}); the comparison needs the same inputs")
    renderer = Renderer(inst, Augment.from_dict(novelty.meta.get("augment")))
    holdout = novelty.meta.get("train", {}).get("holdout_space_groups", [])
    sets: dict[str, tuple] = {}
    test, _ = subset(StickTable.from_parquet(sticks, split="test", d_min_A=inst.d_min_A), None, holdout)
    if len(test):
        sets["synthetic test split"] = (*_render(test, renderer, seed), None)
    if prototypes:
        from xrdid.evaluate.real import aflow_prototypes, sticks_table

        table = sticks_table(aflow_prototypes()[:prototype_limit], inst.d_min_A)
        sets["AFLOW prototypes"] = (*_render(table, renderer, seed + 1, draws=draws), None)
    skipped = {}
    for name, spec in (measured or {}).items():
        x, accept, skip = _measured_inputs(bundle, spec["folder"], spec["labels"])
        skipped[name] = skip
        if x is None:
            continue
        first = [min(a) for a in accept]
        sets[f"measured: {name}"] = (x, torch.tensor(first) - 1, torch.tensor([crystal_system_index(g) for g in first]), accept)
    params = {MODELS[0]: sum(p.numel() for p in bundle.model.parameters()),
              MODELS[1]: sum(p.numel() for m in (novelty.vae.stem, novelty.vae.down, novelty.vae.to_hidden,
                                                  novelty.vae.to_posterior, novelty.vae.classifier,
                                                  novelty.vae.space_group, novelty.vae.crystal_system)
                             for p in m.parameters())}
    one = next(iter(sets.values()))[0][:1] if sets else torch.zeros(1, 2, inst.n_points)
    latency = {MODELS[0]: _latency_ms(bundle.model, one), MODELS[1]: _latency_ms(novelty.vae.predict_proba, one),
               "VAE novelty": _latency_ms(novelty.scores, one)}
    train_s = {MODELS[0]: _train_seconds(bundle.meta, cnn_history), MODELS[1]: _train_seconds(novelty.meta, None)}
    rows = []
    for set_name, (x, sg, cs, accept) in sets.items():
        probs = _probabilities(bundle, novelty.vae, x)
        for model in MODELS:
            rows.append({"model": model, "test_set": set_name, **_metrics(*probs[model], sg, cs, accept),
                         "parameters": params[model], "train_seconds": train_s[model], "latency_ms": latency[model]})
    return {"cnn": bundle.path, "vae": str(vae), "holdout_space_groups": holdout, "rows": rows, "skipped": skipped,
            "latency_ms": latency, "vae_parameters_total": sum(p.numel() for p in novelty.vae.parameters())}


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f} %"


def markdown(result: dict) -> str:
    lines = ["| test set | model | n | SG top-1 | SG top-5 | SG macro F1 | SG ECE | CS accuracy | CS macro F1 | CS ECE | parameters | training | latency |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        t = r["train_seconds"]
        lines.append(
            f"| {r['test_set']} | {r['model']} | {r['n']} | {_pct(r['space_group_top1'])} | {_pct(r['space_group_top5'])} | "
            f"{_pct(r['space_group_macro_f1'])} | {_pct(r['space_group_ece'])} | {_pct(r['crystal_system_accuracy'])} | "
            f"{_pct(r['crystal_system_macro_f1'])} | {_pct(r['crystal_system_ece'])} | {r['parameters'] / 1e6:.2f} M | "
            f"{'–' if t is None else f'{t / 60:.0f} min'} | {r['latency_ms']:.1f} ms |"
        )
    lat = result["latency_ms"]
    lines += ["", (f"Latency: median per pattern, batch of one, one CPU thread; the VAE's novelty score (encoder, decoder "
              f"and calibration) takes {lat['VAE novelty']:.1f} ms. The VAE latent classifier's parameters are its encoder "
              f"and classifier ({result['vae_parameters_total'] / 1e6:.2f} M with the decoder).")]
    if result["holdout_space_groups"]:
        lines.append(f"The synthetic test split leaves out the {len(result['holdout_space_groups'])} space groups held out "
                     "of the VAE's training (the novelty benchmark's unseen groups).")
    for name, skip in result["skipped"].items():
        if skip:
            lines.append(f"Measured set {name}: {len(skip)} file(s) not classified (" + "; ".join(f"{k}: {v}" for k, v in skip.items()) + ").")
    return "\n".join(lines) + "\n"


def plot_comparison(result: dict, out: str | Path) -> None:
    """Grouped bars: space group top-1, top-5 and crystal system accuracy per test set, one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(r["test_set"] for r in result["rows"]))
    metrics = [("space_group_top1", "space group top-1"), ("space_group_top5", "space group top-5"),
               ("crystal_system_accuracy", "crystal system")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), sharey=True)
    for ax, (key, title) in zip(np.atleast_1d(axes), metrics):
        for j, model in enumerate(MODELS):
            vals = [next((100 * r[key] for r in result["rows"] if r["model"] == model and r["test_set"] == s), 0) for s in sets]
            ax.bar(np.arange(len(sets)) + (j - 0.5) * 0.38, vals, width=0.38, label=model)
        ax.set_xticks(np.arange(len(sets)), [s.replace("measured: ", "measured\n") for s in sets], fontsize=8)
        ax.set_title(title)
    np.atleast_1d(axes)[0].set_ylabel("accuracy (%)")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def write_comparison(
    *, cnn: str | Path | None, vae: str | Path, sticks: str | Path, json_out: str | Path, csv_out: str | Path,
    markdown_out: str | Path, html_out: str | Path, figure_out: str | Path, measured: dict | None = None,
    cnn_history: str | Path | None = None, draws: int = 2, seed: int = 12345, threads: int | None = None,
    prototypes: bool = True,
) -> dict:
    """:func:`compare_models`, written as JSON, CSV, Markdown, HTML and a figure (all atomically)."""
    if threads:
        torch.set_num_threads(int(threads))
    result = compare_models(cnn=cnn, vae=vae, sticks=sticks, measured=measured, cnn_history=cnn_history, draws=draws,
                            seed=seed, prototypes=prototypes)
    write_text(json.dumps(result, indent=1), json_out)
    with atomic_path(csv_out) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(result["rows"])
    write_text(markdown(result), markdown_out)
    write_text(markdown_page(markdown(result), "CNN vs VAE latent classifier"), html_out)
    plot_comparison(result, figure_out)
    log.info("CNN vs VAE on %d test sets written to %s", len({r['test_set'] for r in result['rows']}), markdown_out)
    return result
