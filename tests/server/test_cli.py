"""``kiln token create`` and ``kiln dashboard`` through the CLI module's own parser."""

from __future__ import annotations

import argparse

from kiln.cli import _dashboard
from kiln.track import Store


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kiln")
    _dashboard.add_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_token_create_prints_a_token_the_store_accepts(tmp_path, capsys):
    db = str(tmp_path / "kiln.db")
    assert _dashboard.run(_parse(["token", "create", "--store", db, "--name", "ci"])) == 0
    token = capsys.readouterr().out.splitlines()[0]
    assert token.startswith("kiln_") and Store(db).verify_token(token)


def test_dashboard_defaults_to_loopback():
    args = _parse(["dashboard"])
    assert (args.host, args.port) == ("127.0.0.1", 8765)


def test_kiln_dashboard_serves_on_loopback(tmp_path):
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    db = str(tmp_path / "kiln.db")
    Store(db).create_run("served").finish()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "from kiln.cli import main; raise SystemExit(main())"
    args = ["dashboard", "--port", str(port), "--store", db]
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/runs", timeout=5) as r:
                    runs = json.load(r)["runs"]
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, "the server did not start"
                time.sleep(0.2)
        assert [r["name"] for r in runs] == ["served"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
