"""`xrdid predict FILE... [--wavelength Å | --instrument NAME] [--model CKPT] [--top-k 5] [--json] [--rerank] [--cell | --no-cell] [--prior P] [--no-consistent] [--triclinic-offset δ] [--tta N] [--vae DIR]`:
space group and crystal system of measured powder patterns.

Any wavelength works: each pattern is mapped onto the model's grid through Q. The wavelength comes from
the file where it states one, else from ``--wavelength`` or ``--instrument`` (a preset's primary line);
a 2θ file with neither is an error, never a silent Cu Kα. With ``--json`` each file gives one JSON
object per line (``file``, ``space_group``, ``top_k``, ``crystal_system``, ``novelty``, ``mixture``,
``coverage``, ``cell``); otherwise a table. ``cell`` is the unit cell found by powder indexing (a, b, c, α, β, γ, volume,
M20, indexed and unindexed lines, zero shift, ``confidence``: "tentative" with the reason when it could be a
chance fit of few lines; or ``indexed: false`` and why). Indexing costs about
2 CPU s a pattern, so it runs by default for up to 20 files (``--cell`` always, ``--no-cell`` never).
``--rerank`` combines every space group's probability with how well its allowed reflections index the
pattern (the extinction check; entries gain ``score`` and ``fit``; see xrdid.indexing.combine).
By default the answer is weighed by how common each space group and crystal system is among real
materials, at the strength stored in the checkpoint (the shipped model's was chosen on unseen real
structures; Bayes' rule, see xrdid.predict and xrdid.priors); ``--prior none`` gives the model's own
likelihoods, ``--prior materials_project`` the full-strength Materials Project prior. The space groups'
probabilities per crystal system add up to the crystal-system answer (``--no-consistent``: the
space-group head's own), and ``--triclinic-offset δ`` adds δ to triclinic's crystal-system
log-probability, trading monoclinic recall for triclinic recall (off by default; see xrdid.predict and
reports/pretrained/README.md). ``--tta N`` averages the answer over the first N of 5 variants of each pattern (the
pattern itself, ±1 % lattice strain, the top 10 % and 20 % of the range left out; inside what training
covered; off by default, see xrdid.tta). ``novelty`` comes
from the VAE shipped beside the CNN (method ``vae``: 0.99 means less typical than 99 % of patterns of
known structures, with a warning from 0.95 on; see xrdid.novelty); ``--vae DIR`` names another,
``--vae none`` uses 1 − the top probability (method ``max_softmax``). ``mixture`` is the probability that
the pattern holds more than one phase (the mixture detector beside the checkpoint, xrdid.mixture_detector,
else a probe on the classifier's features, xrdid.mixture_probe; its ``method`` says which), with a
warning above the 95th percentile of held-out single phases. A file that cannot be read or
classified is reported on stderr, naming it; the other files are still processed and the exit status
is 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger(__name__)

#: Above this many files, ``xrdid predict`` skips the indexing unless ``--cell`` asks for it.
CELL_AUTO_MAX_FILES = 20


def add_parser(sub) -> None:
    from xrdid.commands import add_pattern_arguments
    from xrdid.labels import PRIORS

    p = sub.add_parser(
        "predict",
        help="space group and crystal system of measured patterns",
        description=__doc__.split("\n\n", 1)[1],
    )
    add_pattern_arguments(p, "pattern files (.xy, .xye, .csv, .xrdml, …)")
    p.add_argument("--model", metavar="CKPT", help="checkpoint directory (default: the pretrained model shipped with xrdid)")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="space groups listed per pattern (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.add_argument("--rerank", action="store_true",
                   help="rank the space groups by the model's probability combined with the extinction check on the indexed cell")
    cell = p.add_mutually_exclusive_group()
    cell.add_argument("--cell", dest="cell", action="store_true", default=None,
                      help=f"index every pattern (default: only when at most {CELL_AUTO_MAX_FILES} files are given)")
    cell.add_argument("--no-cell", dest="cell", action="store_false", help="skip the powder indexing (no cell field)")
    p.add_argument("--prior", choices=PRIORS, default="checkpoint",
                   help="label prior: the checkpoint's (default; the shipped model's favours groups common among real "
                        "materials, at the strength chosen on unseen real structures), none, or Materials Project's "
                        "space-group frequencies at full strength")
    p.add_argument("--consistent", action=argparse.BooleanOptionalAction, default=True,
                   help="space-group probabilities summed per crystal system equal the crystal-system answer "
                        "(the crystal-system head's), keeping the space-group ranking within each system "
                        "(default; --no-consistent: the space-group head's own probabilities)")
    p.add_argument("--triclinic-offset", type=float, default=0.0, metavar="DELTA",
                   help="added to triclinic's crystal-system log-probability (default 0): more triclinic answers, "
                        "fewer monoclinic ones")
    p.add_argument("--tta", type=int, default=1, metavar="N",
                   help="test-time augmentation: average the answer over the first N variants of each pattern "
                        "(the pattern itself, ±1 %% strain, the high end cropped; 1, the default, is the pattern alone; "
                        "see xrdid.tta)")
    p.add_argument("--tta-average", choices=("probability", "logit"), default="probability",
                   help="how the variants' answers are averaged (default: their calibrated probabilities)")
    p.add_argument("--vae", default="auto", metavar="DIR",
                   help="VAE scoring novelty (vae.json + vae.pt): default the one beside --model or shipped with "
                        "xrdid; 'none': 1 − the top probability")
    p.set_defaults(run=run)


def _table_row(name: str, r: dict) -> str:
    sg, cs = r["space_group"], r["crystal_system"]
    others = ", ".join(f"{t['symbol']} {100 * t['probability']:.0f}%" for t in r["top_k"][1:])
    return (
        f"{name}\n  space group     {sg['symbol']} (No. {sg['number']}), p = {sg['probability']:.2f}"
        f"\n  crystal system  {cs['name']}, p = {cs['probability']:.2f}"
        f"\n  next            {others or '-'}"
        f"\n  novelty         {r['novelty']['score']:.2f} ({r['novelty']['method']}); coverage {100 * r['coverage']:.0f} % of the model's range"
        + (f"\n  warning         {r['novelty']['warning']}" if r["novelty"].get("warning") else "")
        + (f"\n  mixture         p = {r['mixture']['probability']:.2f} that it holds more than one phase" if "mixture" in r else "")
        + (f"\n  warning         {r['mixture']['warning']}" if r.get("mixture", {}).get("warning") else "")
    ) + (f"\n  cell            {_cell_text(r['cell'])}" if "cell" in r else "")


def _cell_text(c: dict) -> str:
    if not c.get("indexed"):
        return c.get("message", "not indexed")
    zero = "" if c.get("zero_shift_deg") is None else f", zero {c['zero_shift_deg']:+.4f}°"
    return (f"{c['bravais']} a {c['a']:.4f} b {c['b']:.4f} c {c['c']:.4f} Å, α {c['alpha']:.3f} β {c['beta']:.3f} γ {c['gamma']:.3f}°, "
            f"V {c['volume']:.2f} Å³, M{c['F_N']['N']} {c['M20']:.1f} ({c['indexed']} indexed, {c['unindexed']} unindexed{zero})"
            + (f"; tentative: {c['confidence_reason']}" if c.get("confidence") == "tentative" else ""))


def run(args) -> int:
    from xrdid.commands import wavelength_of
    from xrdid.predict import PredictionError, load_model, predict_patterns
    from xrdid.readers import PatternError, read_patterns

    if args.top_k < 1:
        print("xrdid predict: --top-k must be ≥ 1", file=sys.stderr)
        return 2
    wavelength = wavelength_of(args)
    cell = args.cell if args.cell is not None else len(args.files) <= CELL_AUTO_MAX_FILES
    if args.cell is None and not cell and not args.rerank:  # --rerank indexes every pattern
        print(f"xrdid predict: {len(args.files)} files, so no powder indexing (about 2 s a pattern); "
              "--cell indexes them all", file=sys.stderr)
    try:
        bundle = load_model(args.model, prior=args.prior, vae=None if args.vae == "none" else args.vae,
                            consistent=args.consistent, triclinic_offset=args.triclinic_offset, tta=args.tta,
                            tta_average=args.tta_average)
    except ValueError as exc:
        print(f"xrdid predict: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for path, pattern in read_patterns(args.files, wavelength_A=wavelength):
        try:
            if isinstance(pattern, PatternError):
                raise pattern
            (result,) = predict_patterns(bundle, [pattern], wavelength_A=wavelength, top_k=args.top_k, rerank=args.rerank, cell=cell)
        except (PatternError, PredictionError) as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        except Exception as exc:
            failed += 1
            print(f"error: {path}: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"file": str(path), **result}), flush=True)
        else:
            print(_table_row(str(path), result), flush=True)
    if failed:
        print(f"xrdid predict: {failed} of {len(args.files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0
