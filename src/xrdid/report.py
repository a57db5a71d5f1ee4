"""Tables for the Snakemake report: test-split metrics of one or more models, side by side.

The figures come from :mod:`xrdid.plots`; this module turns ``metrics.json`` files (written by
:func:`xrdid.evaluate.evaluate_checkpoint`) into one small, self-contained HTML table with the
majority-class baseline beside each model, so a reader sees at once how far above chance a model is.
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from xrdid.io import write_text

log = logging.getLogger(__name__)

# (key in a head's metrics, column title, is a fraction shown in %)
_COLUMNS = [
    ("accuracy", "top-1 accuracy", True),
    ("top5_accuracy", "top-5 accuracy", True),
    ("macro_f1", "macro F1", True),
    ("ece", "calibration error (ECE)", True),
    ("majority_class_accuracy", "majority-class baseline", True),
    ("accuracy_from_space_group_head", "accuracy via space-group head", True),
]
_HEADS = [("space_group", "space group"), ("crystal_system", "crystal system")]

_STYLE = """
body { font-family: sans-serif; margin: 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; text-align: right; }
th { background: #eee; } td.name { text-align: left; }
caption { text-align: left; padding-bottom: 0.5em; }
"""


def metrics_rows(metrics: Mapping[str, Mapping]) -> list[dict]:
    """One row per (model, head): ``model``, ``head``, ``n`` and every column present in the metrics.

    ``metrics`` maps a model name to its parsed ``metrics.json``. Fractions stay fractions here.
    """
    rows = []
    for model, m in metrics.items():
        for head, head_title in _HEADS:
            if head not in m:
                continue
            row = {"model": model, "head": head_title, "n": m[head].get("n", m.get("n_structures"))}
            row.update({key: m[head][key] for key, _, _ in _COLUMNS if key in m[head]})
            rows.append(row)
    return rows


def indexing_table(path: str | os.PathLike) -> str:
    """An HTML table of ``indexing.json`` (:func:`xrdid.indexing.evaluate.evaluate_indexing`): the right cell
    first and in the top 3, per true crystal system, and the time per pattern."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the indexing results: {exc}") from exc
    rows = []
    for name, b in data.get("success", {}).items():
        if b:
            rows.append(f'<tr><td class="name">{html.escape(name)}</td><td>{b["n"]}</td><td>{100 * b["top1"]:.1f} %</td>'
                        f'<td>{100 * b["top3"]:.1f} %</td><td>{b["median_seconds"]:.2f}</td></tr>')
    caption = (f"Powder indexing of {data.get('n_patterns', '?')} test-split patterns ({html.escape(str(data.get('instrument', '?')))}, "
               f"the classifier's augmentation without lattice strain): {html.escape(data.get('criterion', ''))}.")
    return (f"<table>\n<caption>{caption}</caption>\n<thead><tr><th>true crystal system</th><th>patterns</th><th>right cell first</th>"
            "<th>right cell in the top 3</th><th>median s/pattern</th></tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>\n")


def metrics_table(metrics: Mapping[str, str | os.PathLike], out: str | os.PathLike, *, indexing: str | os.PathLike | None = None) -> list[dict]:
    """Write an HTML table of the metrics files ``metrics`` (model name -> ``metrics.json``) to ``out``,
    and below it the indexing results (``indexing``: an ``indexing.json``) when given.

    Returns the rows (see :func:`metrics_rows`). Missing metrics (no top-5 for the 7-class head) are
    left blank, never shown as zero.
    """
    parsed = {}
    for model, path in metrics.items():
        try:
            parsed[model] = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read the metrics of {model!r}: {exc}") from exc
    rows = metrics_rows(parsed)
    columns = [(key, title, pct) for key, title, pct in _COLUMNS if any(key in r for r in rows)]
    first = next(iter(parsed.values()), {})
    caption = (
        f"Test split: {first.get('n_structures', '?')} structures never seen in training, "
        f"instrument {first.get('instrument', '?')}, augmentation {'on' if first.get('augmented') else 'off'}."
    )
    head = "".join(f"<th>{html.escape(t)}</th>" for t in ["model", "head", "patterns"] + [c[1] for c in columns])
    body = []
    for r in rows:
        cells = [f'<td class="name">{html.escape(str(r["model"]))}</td>', f'<td class="name">{html.escape(r["head"])}</td>',
                 f"<td>{r['n']}</td>"]
        for key, _, pct in columns:
            value = r.get(key)
            cells.append("<td></td>" if value is None else f"<td>{100 * value:.1f} %</td>" if pct else f"<td>{value:.3g}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>xrdid metrics</title>"
        f"<style>{_STYLE}</style></head><body>\n<table>\n<caption>{html.escape(caption)}</caption>\n"
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>\n"
        + ("<p></p>\n" + indexing_table(indexing) if indexing is not None else "") + "</body></html>\n"
    )
    write_text(page, out)
    log.info("metrics table of %s written to %s", ", ".join(metrics), out)
    return rows


def markdown_page(text: str, title: str) -> str:
    """A self-contained HTML page of Markdown ``text`` made of pipe tables and plain paragraphs (the
    comparison and novelty reports), for ``snakemake --report``, which shows HTML but not Markdown."""
    out, table = [], []

    def cells(line: str, tag: str) -> str:
        return "".join(f"<{tag}>{html.escape(c.strip().strip('*'))}</{tag}>" for c in line.strip().strip("|").split("|"))

    def flush():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
            out.append("<table>\n<thead><tr>" + cells(rows[0], "th") + "</tr></thead>\n<tbody>\n"
                       + "\n".join("<tr>" + cells(r, "td") + "</tr>" for r in rows[1:]) + "\n</tbody>\n</table>")
            table.clear()

    for line in text.splitlines():
        if line.strip().startswith("|"):
            table.append(line)
            continue
        flush()
        if line.strip():
            out.append(f"<p>{html.escape(line.strip())}</p>")
    flush()
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")
