"""``kiln launch``: the same script on N GPUs and M hosts, through torch's own launcher.

torchrun (torch.distributed.run) starts the processes, sets RANK/WORLD_SIZE/LOCAL_RANK, runs
the rendezvous across hosts and, when one process dies, stops the others and reports which.
kiln's trainer reads that environment; the script itself does not change.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    launch = sub.add_parser(
        "launch",
        help="run a training script on N GPUs (and M hosts) with torchrun",
        description="Run script.py once per GPU. On a machine without GPUs, --gpus N runs N "
        "CPU processes (gloo), which is how the tests check distributed training.",
    )
    add_options(launch)
    launch.add_argument("script", help="the training script")
    launch.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpus", type=int, help="processes per host, one per GPU (default: all)")
    parser.add_argument("--nodes", type=int, default=1, help="number of hosts")
    parser.add_argument("--node-rank", type=int, default=0, help="this host's rank, 0..nodes-1")
    parser.add_argument(
        "--rdzv",
        help="host:port of node 0, where the rendezvous is held (required with --nodes > 1)",
    )


def launch(
    target: list[str], gpus: int | None, nodes: int = 1, node_rank: int = 0, rdzv: str | None = None
) -> int:
    """Run ``target`` (``[script, *args]`` or ``["--module", name, *args]``) under torchrun."""
    import torch
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous import RendezvousConnectionError
    from torch.distributed.run import main as torchrun

    gpus = gpus or max(1, torch.cuda.device_count())
    if gpus < 1 or nodes < 1 or not 0 <= node_rank < nodes:
        raise SystemExit(
            f"kiln launch: need --gpus >= 1, --nodes >= 1 and 0 <= --node-rank < "
            f"--nodes; received gpus={gpus}, nodes={nodes}, node_rank={node_rank}."
        )
    if nodes > 1 and not rdzv:
        raise SystemExit(
            "kiln launch: --nodes > 1 needs --rdzv host:port (the same on every host)."
        )
    if not torch.cuda.is_available():
        print(
            f"kiln launch: no CUDA GPU here: running {gpus} CPU processes (gloo).", file=sys.stderr
        )
    hosts = ["--standalone"] if nodes == 1 and not rdzv else _rendezvous(nodes, node_rank, rdzv)
    try:
        torchrun([f"--nproc-per-node={gpus}", *hosts, *target])
    except ChildFailedError as e:
        failures = "; ".join(
            f"rank {rank} exited with {failure.exitcode}" for rank, failure in e.failures.items()
        )
        print(f"kiln launch: {failures}. The other processes were stopped.", file=sys.stderr)
        return 1
    except RendezvousConnectionError as e:
        if rdzv is None:  # one host's own rendezvous: nothing the user chose went wrong
            raise
        cause = f" ({e.__cause__})" if e.__cause__ else ""
        failed, hint = (
            ("hold", "is the port in use? Pick another port in --rdzv, the same on every host.")
            if node_rank == 0
            else ("reach", "is node 0 started, and can this host reach that address and port?")
        )
        print(f"kiln launch: node {node_rank} could not {failed} the rendezvous at {rdzv}{cause}: "
              f"{hint}", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _rendezvous(nodes: int, node_rank: int, rdzv: str | None) -> list[str]:
    """torchrun's options for a c10d rendezvous that node 0 hosts.

    Left to itself, torchrun decides who hosts the rendezvous store by matching the endpoint
    against this machine's names: every launcher on the endpoint's machine tries to host, and
    where the endpoint is a name no machine answers to (an alias, a NAT address) none hosts and
    every launcher gives up after a minute. kiln says it outright: node 0 hosts, the others
    connect, and a node 0 that cannot take the port fails at once instead of joining whatever
    holds it.
    """
    return [
        f"--nnodes={nodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv}",
        f"--rdzv-conf=is_host={'true' if node_rank == 0 else 'false'}",
    ]  # fmt: skip
