"""``kiln``: train zoo models or scripts, list the zoo, print the version."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from kiln._version import __version__
from kiln.cli import _cache as cache_commands
from kiln.cli import _dashboard as dashboard_commands
from kiln.cli import _deploy as deploy_commands
from kiln.cli import _serve as serve_commands
from kiln.cli._launch import add_options as add_launch_options
from kiln.cli._launch import add_parser as add_launch_parser
from kiln.cli._launch import launch


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "launch":
        return launch([args.script, *args.args, *extra], args.gpus, args.nodes, args.node_rank,
                      args.rdzv, args.rdzv_timeout)  # fmt: skip
    if args.command == "train":
        if args.gpus or args.nodes > 1:
            target = [args.target] if args.target.endswith(".py") else [
                "--module", "kiln.cli", "train", args.target,
            ]  # fmt: skip
            rest = _without_launch_options(argv[argv.index(args.target) + 1 :])
            return launch([*target, *rest], args.gpus, args.nodes, args.node_rank, args.rdzv,
                          args.rdzv_timeout)  # fmt: skip
        return _train(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "zoo":
        return _zoo_list()
    if args.command in dashboard_commands.COMMANDS:
        return dashboard_commands.run(args)
    if args.command in serve_commands.COMMANDS:
        return serve_commands.run(args)
    if args.command in deploy_commands.COMMANDS:
        return deploy_commands.run(args)
    if args.command in cache_commands.COMMANDS:
        return cache_commands.run(args)
    parser.print_help()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiln", description="kiln: a deep-learning workbench for GPUs."
    )
    parser.add_argument("--version", action="version", version=f"kiln {__version__}")
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser(
        "train", help="train a zoo model (kiln zoo list) or run a training script"
    )
    train.add_argument("target", help="a zoo model name, e.g. lenet5, or a path to script.py")
    train.add_argument("--epochs", type=int, help="epochs (default: the zoo recipe's)")
    train.add_argument("--batch-size", type=int, help="batch size (default: the recipe's)")
    train.add_argument("--lr", type=float, help="learning rate (default: the optimizer's)")
    train.add_argument("--dataset", help="a kiln.datasets name, e.g. fashion_mnist")
    train.add_argument("--data", help="folder with the dataset's files (e.g. MNIST IDX files)")
    train.add_argument(
        "--synthetic",
        action="store_true",
        help="train on kiln.datasets.synthetic_images of the model's input shape (the default "
        "for zoo models whose dataset is 'synthetic', such as the ResNets)",
    )
    train.add_argument(
        "--samples",
        type=int,
        help="training samples: the synthetic set's size (test: a fifth of it), or the first N "
        "of a real dataset",
    )
    train.add_argument("--image-size", type=int, help="build the model for NxN images")
    train.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    train.add_argument("--output", help="where to save the trained model (default: NAME.kiln)")
    train.add_argument("--resume", help="training-state file: continue from it if it exists")
    train.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    add_launch_options(train)
    add_launch_parser(sub)
    dashboard_commands.add_parsers(sub)
    serve_commands.add_parsers(sub)
    deploy_commands.add_parsers(sub)
    cache_commands.add_parsers(sub)
    zoo = sub.add_parser("zoo", help="the model zoo")
    zoo.add_argument("action", choices=["list"])
    return parser


def _without_launch_options(argv: list[str]) -> list[str]:
    """``argv`` less the launch options: the launched processes must not launch again."""
    names = ("--gpus", "--nodes", "--node-rank", "--rdzv", "--rdzv-timeout")
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not arg.startswith(tuple(f"{n}=" for n in names)):
            out.append(arg)
    return out


def _train(args: argparse.Namespace, extra: list[str]) -> int:
    target = Path(args.target)
    if target.suffix == ".py":
        if not target.is_file():
            raise SystemExit(f"kiln train: no script at {str(target)!r}.")
        sys.argv = [str(target), *extra]
        runpy.run_path(str(target), run_name="__main__")
        return 0
    if extra:
        raise SystemExit(f"kiln train: unrecognized arguments for a zoo model: {' '.join(extra)}")
    from kiln.cli._train_zoo import train_zoo_model

    return train_zoo_model(args)


def _zoo_list() -> int:
    from rich.console import Console
    from rich.table import Table

    from kiln.zoo import list_models

    table = Table(title="kiln zoo")
    for column in ("name", "dataset", "description"):
        table.add_column(column)
    for entry in list_models():
        table.add_row(entry.name, entry.dataset, entry.description)
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
