"""`xrdid serve [--host 127.0.0.1] [--port 8000] [--model CKPT] [--library CIF_DIR_OR_PARQUET]`: the web page.

Drop a pattern file on the page to see its space group (top-k with probabilities), crystal system,
novelty score and a plot of the pattern; with ``--library``, also the phases it contains. The page and its JSON API (``POST /api/predict``,
``GET /api/health``) are served by uvicorn; the model is loaded once, at startup.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="the web page: drop a pattern, see its space group",
        description=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", metavar="CKPT", help="checkpoint directory (default: the pretrained model shipped with xrdid)")
    p.add_argument("--library", metavar="CIF_DIR_OR_PARQUET",
                   help="reference phases: with it, each prediction also lists the phases found (xrdid phases)")
    p.add_argument("--max-upload-mb", type=float, default=50.0, metavar="MB", help="largest accepted upload (default 50)")
    p.set_defaults(run=run)


def run(args) -> int:
    import uvicorn

    from xrdid.models import load_checkpoint
    from xrdid.predict import pretrained_path
    from xrdid.web import create_app

    if not 0 <= args.port <= 65535:
        print(f"xrdid serve: --port {args.port} is not a port number (0–65535)", file=sys.stderr)
        return 2
    # Fail here, with a clear message, rather than serve a page that cannot predict.
    try:
        load_checkpoint(args.model if args.model is not None else pretrained_path())
    except ValueError as exc:
        hint = "" if args.model else " (no pretrained model installed? pass a checkpoint with --model)"
        print(f"xrdid serve: {exc}{hint}", file=sys.stderr)
        return 2
    if args.library is not None and not Path(args.library).exists():
        log.error("--library %s: no such folder or file", args.library)
        return 2
    app = create_app(args.model, max_upload_mb=args.max_upload_mb, library=args.library)
    log.info("serving on http://%s:%d/", args.host, args.port)
    # uvicorn reports a port in use itself and exits with status 1.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", log_config=None)
    return 0
