"""``kiln serve REPOSITORY``: its options reach the server, and the command serves for real."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

import kiln.deploy
from kiln.cli import main


def test_options_reach_the_server_and_the_loader(tmp_path, monkeypatch):
    engines = {"m": kiln.deploy.eager_engine(torch.nn.Identity(), torch.zeros(1, 2), (1,))}
    loads, served = [], {}

    def load_repository(path, device=None):
        loads.append((path, device))
        return engines

    def serve(loader, **options):
        served.update(options, engines=loader())

    monkeypatch.setattr(kiln.deploy, "load_repository", load_repository, raising=False)
    monkeypatch.setattr(kiln.deploy, "serve", serve)
    argv = ["serve", str(tmp_path), "--port", "9001", "--max-delay-ms", "2.5", "--max-queue",
            "64", "--max-body-mb", "0.5", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    assert loads == [(tmp_path, "cpu")] and served["engines"] is engines
    assert (served["host"], served["port"], served["max_delay_ms"]) == ("127.0.0.1", 9001, 2.5)
    assert (served["max_queue"], served["max_body_bytes"]) == (64, 1 << 19)
    assert served["preferred_sizes"] is True
    assert main([*argv, "--no-preferred-sizes"]) == 0
    assert served["preferred_sizes"] is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-queue", "0"], "must be a whole number >= 1. Received: 0"),
        (["--max-delay-ms", "-1"], "must be >= 0. Received: -1"),
    ],
)
def test_bad_options_are_refused_with_the_value(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        main(["serve", str(tmp_path), *argv])
    assert message in capsys.readouterr().err


def test_a_missing_repository_is_named(tmp_path):
    with pytest.raises(SystemExit, match=r"no model repository at '.*nowhere'"):
        main(["serve", str(tmp_path / "nowhere")])


def test_kiln_serve_answers_over_http(tmp_path):
    """The real command in its own process; only the repository loader is a stand-in."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "import torch, kiln.deploy\n"
        "from kiln.cli import main\n"
        "def load_repository(path, device=None):\n"
        "    model = torch.nn.Linear(2, 1)\n"
        "    torch.nn.init.ones_(model.weight); torch.nn.init.zeros_(model.bias)\n"
        "    return {'sum': kiln.deploy.eager_engine(model, torch.zeros(1, 2), (1, 4))}\n"
        "kiln.deploy.load_repository = load_repository\n"
        f"raise SystemExit(main(['serve', {str(tmp_path)!r}, '--port', '{port}']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health/ready", timeout=5) as reply:
                    assert json.load(reply)["models"] == ["sum"]
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, "the server did not start"
                time.sleep(0.2)
        request = urllib.request.Request(
            f"{base}/v1/models/sum/infer", data=b'{"inputs": [[1, 2], [3, 4.5]]}',
            headers={"content-type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert json.load(reply)["outputs"] == [[3.0], [7.5]]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"kiln serve: http://127.0.0.1:{port}/v1/models" in out
