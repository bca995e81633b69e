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
