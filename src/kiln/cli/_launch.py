"""``kiln launch``: the same script on N GPUs and M hosts, through torch's own launcher.

torchrun (torch.distributed.run) starts the processes, sets RANK/WORLD_SIZE/LOCAL_RANK, runs
the rendezvous across hosts and, when one process dies, stops the others and reports which.
kiln's trainer reads that environment; the script itself does not change.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
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
    parser.add_argument(
        "--rdzv-timeout", type=int, default=300, metavar="SECONDS",
        help="how long node 0 waits for the other hosts, and they for node 0 (default: 300)",
    )  # fmt: skip


def launch(
    target: list[str],
    gpus: int | None,
    nodes: int = 1,
    node_rank: int = 0,
    rdzv: str | None = None,
    rdzv_timeout: int = 300,
) -> int:
    """Run ``target`` (``[script, *args]`` or ``["--module", name, *args]``) under torchrun;
    ``rdzv_timeout``: seconds the hosts wait for each other at the rendezvous."""
    import torch
    from torch.distributed import DistNetworkError, DistStoreError
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    from kiln.train._distributed import FINISHED_DIR_VARIABLE

    gpus = gpus or max(1, torch.cuda.device_count())
    if gpus < 1 or nodes < 1 or not 0 <= node_rank < nodes or rdzv_timeout < 1:
        raise SystemExit(
            f"kiln launch: need --gpus >= 1, --nodes >= 1, 0 <= --node-rank < --nodes and "
            f"--rdzv-timeout >= 1; received gpus={gpus}, nodes={nodes}, node_rank={node_rank}, "
            f"rdzv_timeout={rdzv_timeout}."
        )
    if nodes > 1 and not rdzv:
        raise SystemExit(
            "kiln launch: --nodes > 1 needs --rdzv host:port (the same on every host)."
        )
    host, _, port = (rdzv or "").rpartition(":")
    if rdzv and not (host and port.isdigit() and 0 < int(port) < 65536):
        raise SystemExit(
            "kiln launch: --rdzv takes host:port, node 0's address and a free port, the same on "
            f"every host (e.g. node0:29500); received {rdzv!r}."
        )
    if not torch.cuda.is_available():
        print(
            f"kiln launch: no CUDA GPU here: running {gpus} CPU processes (gloo).", file=sys.stderr
        )
    if nodes == 1 and not rdzv:
        hosts = ["--standalone"]
    else:
        hosts = _rendezvous(nodes, node_rank, rdzv, rdzv_timeout)
        verb = "holding" if node_rank == 0 else "joining"
        print(f"kiln launch: node {node_rank} of {nodes}, {verb} the rendezvous at {rdzv} "
              f"(waiting up to {rdzv_timeout} s for every host)", file=sys.stderr)  # fmt: skip
    finished = tempfile.mkdtemp(prefix="kiln-launch-")  # each rank says there it got to the end
    os.environ[FINISHED_DIR_VARIABLE] = finished  # the processes torchrun starts inherit it
    try:
        torchrun([f"--nproc-per-node={gpus}", *hosts, *target])
    except ChildFailedError as e:
        failures = "; ".join(
            f"rank {rank} exited with {failure.exitcode}" for rank, failure in e.failures.items()
        )
        if _aborted_after_finishing(e.failures, finished):
            print(f"kiln launch: {failures}, after every one of them had finished its work and "
                  "closed its process group: the run is complete. (torch's gloo backend can abort "
                  "a process while Python exits: 'terminate called without an active "
                  "exception'.)", file=sys.stderr)  # fmt: skip
            return 0
        print(f"kiln launch: {failures}. The other processes were stopped.", file=sys.stderr)
        return 1
    except (DistNetworkError, DistStoreError) as e:
        if rdzv is None:  # one host's own rendezvous: nothing the user chose went wrong
            raise
        failure = _rendezvous_failure(e, nodes, node_rank, rdzv, rdzv_timeout)
        print(f"kiln launch: {failure}", file=sys.stderr)
        return 1
    finally:
        os.environ.pop(FINISHED_DIR_VARIABLE, None)
        shutil.rmtree(finished, ignore_errors=True)
    return 0


def _aborted_after_finishing(failures: dict[int, Any], folder: str) -> bool:
    """Did the failed ranks all get to the end of their work (``finished_marker``), one of them
    then aborting (SIGABRT) as its interpreter exited? Those left are stopped by torchrun."""
    from kiln.train._distributed import finished_marker

    aborted = any(failure.exitcode == -signal.SIGABRT for failure in failures.values())
    return aborted and all(finished_marker(folder, rank).exists() for rank in failures)


def _rendezvous(nodes: int, node_rank: int, rdzv: str | None, timeout: int) -> list[str]:
    """torchrun's options for a static rendezvous at node 0.

    Node 0 holds the store at ``rdzv``, the other nodes connect to it, and each node's
    processes take the ranks its ``--node-rank`` says (node 0's are ranks 0..gpus-1: rank 0,
    which writes checkpoints and logs, is on node 0). torch's elastic (c10d) rendezvous would
    guess who holds the store from host names and give ranks in host-name order whatever
    ``--node-rank`` says; its one gain, nodes joining and leaving, kiln launch does not offer.
    """
    return [
        f"--nnodes={nodes}", f"--node-rank={node_rank}", "--rdzv-backend=static",
        f"--rdzv-endpoint={rdzv}", f"--rdzv-conf=timeout={timeout}",
    ]  # fmt: skip


def _rendezvous_failure(
    error: Exception, nodes: int, node_rank: int, rdzv: str, timeout: int
) -> str:
    """What went wrong at the rendezvous, and what to do, from torch's store error: on node 0
    a ``DistStoreError`` is the wait for the others running out, anything else the listening
    socket failing; on the others, no store reached."""
    from torch.distributed import DistStoreError

    said = str(error).split(". ")[0]
    if node_rank != 0:
        return (f"node {node_rank} could not reach the rendezvous at {rdzv} ({said}): is node 0 "
                "started, and can this host reach that address and port?")  # fmt: skip
    if isinstance(error, DistStoreError):
        return (f"node 0 waited {timeout} s at {rdzv} for the other nodes ({said}): "
                f"are they all started with --nodes {nodes} and the same --rdzv?")  # fmt: skip
    return (f"node 0 could not hold the rendezvous at {rdzv} ({said}): is the port in use? "
            "Pick another port in --rdzv, the same on every host.")  # fmt: skip
