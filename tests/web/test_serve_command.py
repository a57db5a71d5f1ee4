"""`xrdid serve`: a clear error without a model, and a real server answering /api/health."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

from xrdid.cli import main


def test_serve_without_a_model_fails_clearly(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "xrdid serve:" in err and "not an xrdid checkpoint" in err


def test_serve_answers_health(tiny_model):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "xrdid.cli", "serve", "--model", str(tiny_model), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    health = json.load(r)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"xrdid serve did not come up:\n{proc.communicate(timeout=5)[0]}") from None
                time.sleep(0.2)
        assert health["status"] == "ok" and health["model"] == str(tiny_model)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert b'id="drop"' in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_serve_refuses_a_missing_library(tiny_model, tmp_path, caplog):
    from xrdid.cli import main

    assert main(["serve", "--model", str(tiny_model), "--library", str(tmp_path / "nowhere")]) == 2
    assert "no such folder or file" in caplog.text
