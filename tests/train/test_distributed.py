"""Distributed training on CPUs (gloo), as CI can run it: `kiln launch --gpus 2 script.py`."""

import os
import random
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    import kiln
    from kiln import callbacks as C
    from kiln import layers as L

    out, batch, kill_rank = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(0)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
    model = kiln.Sequential([kiln.Input((6,)), L.Dense(16, activation="relu"), L.Dense(3)])
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"], log_every=2)

    class Kill(C.Callback):
        def on_batch_end(self, trainer, step, logs):
            if step == 3 and int(os.environ.get("RANK", 0)) == kill_rank:
                os.kill(os.getpid(), signal.SIGKILL)

    history = model.fit(x, y, epochs=3, batch_size=batch, shuffle=True, verbose=0,
                        validation_data=(x[:40], y[:40]), callbacks=[Kill()])
    predictions = model.predict(x)  # like evaluate, a collective: every rank calls it
    scores = model.evaluate(x, y, verbose=0)
    if int(os.environ.get("RANK", 0)) == 0:
        model.save(out + ".kiln")
        torch.save({"history": history.history, "predictions": predictions, "evaluate": scores,
                    "host": os.environ.get("TEST_HOST")}, out + ".pt")
""")


def _command(tmp_path, name, launch, batch, kill_rank=-1):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = str(tmp_path / name)
    cmd = [sys.executable, "-m", "kiln.cli", *launch, str(script), out, str(batch),
           str(kill_rank)]  # fmt: skip
    return cmd, out


def _run(tmp_path, name, procs, batch, kill_rank=-1):
    launch = ["launch", "--gpus", str(procs)] if procs > 1 else ["train"]
    cmd, out = _command(tmp_path, name, launch, batch, kill_rank)
    done = _once_more_after_a_gloo_abort(
        lambda: subprocess.run(cmd, capture_output=True, text=True, timeout=180),
        lambda done: [done.stderr],
    )
    return done, out


def _once_more_after_a_gloo_abort(attempt, stderrs):
    """``attempt()``, made again once if a process it ran hit ``_gloo_aborted_at_exit``."""
    result = attempt()
    if any(_gloo_aborted_at_exit(err) for err in stderrs(result)):
        result = attempt()
    return result


def _gloo_aborted_at_exit(stderr):
    """torch's gloo backend, not kiln, can abort a rank as its interpreter exits: a gloo worker
    thread, releasing a finished all-reduce, asks for the GIL once finalization has begun and
    is ended inside a noexcept destructor. Two core dumps (2026-11-28) show it:
    ProcessGroupGloo::runLoop -> ~AsyncAllreduceWork -> decref_pyobject -> take_gil ->
    pthread_exit -> std::terminate, the main thread in Py_FinalizeEx's garbage collection.
    About 1 launch in 135 on the loaded 2-core dev machine. kiln launch now reports such a run
    as complete when every failed rank had finished (the last test below); the two-host run
    and the one-host runs are still repeated once on this abort, any other failure, or the same
    one twice, failing the test."""
    return "terminate called without an active exception" in stderr and "with -6" in stderr


def _free_port_outside_the_ephemeral_range():
    """A free port below the kernel's ephemeral range: no other test's bind(0) or outgoing
    connection can take it between this check and the launcher binding it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.Random().sample(range(10000, max(low, 10100)), 50):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _finish(processes, timeout):
    """Each process's (exit code, stderr); on a hang, stop them all and report what they said."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for p in processes:
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((p.returncode, err))
    except subprocess.TimeoutExpired:
        for p in processes:
            p.terminate()  # torchrun stops its workers on SIGTERM
        said = "\n".join(f"--- launcher {i}:\n{p.communicate(timeout=30)[1][-3000:]}"
                         for i, p in enumerate(processes))  # fmt: skip
        pytest.fail(f"the launchers did not finish within {timeout} s\n{said}")
    return results


def _assert_same_training(out1, out2):
    w1, w2 = load_file(out1 + ".kiln"), load_file(out2 + ".kiln")
    for key in w1:
        torch.testing.assert_close(w1[key], w2[key], rtol=1e-5, atol=1e-6, msg=key)
    r1, r2 = torch.load(out1 + ".pt"), torch.load(out2 + ".pt")
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):  # metrics reduced over ranks
        assert r1["history"][key] == pytest.approx(r2["history"][key], rel=1e-5), key
    torch.testing.assert_close(r1["predictions"], r2["predictions"], rtol=1e-5, atol=1e-6)
    assert r1["evaluate"] == pytest.approx(r2["evaluate"], rel=1e-5)


def test_two_processes_and_two_hosts_match_one_with_the_same_global_batch(tmp_path):
    one, out1 = _run(tmp_path, "one", 1, 16)
    assert one.returncode == 0, one.stderr[-3000:]
    two, out2 = _run(tmp_path, "two", 2, 8)
    assert two.returncode == 0, two.stderr[-3000:]
    _assert_same_training(out1, out2)

    # the same script on two "hosts" (two launchers on this machine, one process each) that
    # meet at a rendezvous, as `kiln launch --nodes 2 --node-rank R --rdzv host:port` on each
    results, out_hosts = _once_more_after_a_gloo_abort(
        lambda: _two_hosts(tmp_path), lambda done: [err for _, err in done[0]]
    )
    for rank, (code, err) in enumerate(results):
        assert code == 0, f"node {rank}:\n{err[-3000:]}"
    _assert_same_training(out1, out_hosts)
    # rank 0 (it saved the results) ran on node 0, though node 1's launcher started first
    assert torch.load(out_hosts + ".pt")["host"] == "node 0"


def _two_hosts(tmp_path):
    """Node 1's launcher first: torch's elastic rendezvous would rank the hosts by name, then
    by process id, and make it rank 0."""
    port = _free_port_outside_the_ephemeral_range()
    hosts = []
    for rank in (1, 0):
        launch = ["launch", "--gpus", "1", "--nodes", "2", "--node-rank", str(rank),
                  "--rdzv", f"127.0.0.1:{port}"]  # fmt: skip
        cmd, out = _command(tmp_path, "hosts", launch, 8)
        env = {**os.environ, "TEST_HOST": f"node {rank}"}
        hosts.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env))  # fmt: skip
    return _finish(hosts[::-1], timeout=180), out


def test_a_killed_rank_stops_all_ranks_with_a_clear_error(tmp_path):
    result, _ = _run(tmp_path, "killed", 2, 8, kill_rank=1)
    assert result.returncode == 1
    assert "rank 1 exited with -9" in result.stderr
    assert "The other processes were stopped" in result.stderr


def test_node_0_says_so_when_the_rendezvous_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", _free_port_outside_the_ephemeral_range()))
        taken.listen()
        port = taken.getsockname()[1]
        launch = ["launch", "--gpus", "1", "--nodes", "2", "--node-rank", "0",
                  "--rdzv", f"127.0.0.1:{port}"]  # fmt: skip
        cmd, _ = _command(tmp_path, "taken", launch, 8)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"node 0 could not hold the rendezvous at 127.0.0.1:{port}" in done.stderr
    assert "Pick another port" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("node_rank", [0, 1])
def test_a_host_left_alone_at_the_rendezvous_says_what_to_check(tmp_path, node_rank):
    port = _free_port_outside_the_ephemeral_range()
    launch = ["launch", "--gpus", "1", "--nodes", "2", "--node-rank", str(node_rank),
              "--rdzv", f"127.0.0.1:{port}", "--rdzv-timeout", "2"]  # fmt: skip
    cmd, _ = _command(tmp_path, "alone", launch, 8)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-3000:]
    expected = ("node 0 waited 2 s at 127.0.0.1:{port} for the other nodes", "are they all started")
    if node_rank == 1:
        expected = ("node 1 could not reach the rendezvous at 127.0.0.1:{port}",
                    "is node 0 started")  # fmt: skip
    for text in expected:
        assert text.format(port=port) in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


ABORT_SCRIPT = textwrap.dedent("""
    import atexit, os, sys
    import torch
    import kiln
    from kiln import layers as L

    # atexit runs last-registered first: registered before fit() opens the process group, the
    # abort comes after kiln has closed it, as torch's gloo abort does; registered after, before
    if sys.argv[1] == "after-teardown" and os.environ["RANK"] == "1":
        atexit.register(os.abort)
    model = kiln.Sequential([kiln.Input((6,)), L.Dense(3)])
    model.compile(optimizer="adam", loss="cross_entropy")
    model.fit(torch.randn(32, 6), torch.randint(0, 3, (32,)), epochs=1, batch_size=8, verbose=0)
    if sys.argv[1] == "before-teardown" and os.environ["RANK"] == "1":
        atexit.register(os.abort)
""")


@pytest.mark.parametrize("when", ["after-teardown", "before-teardown"])
def test_an_abort_after_every_rank_finished_is_no_failure_of_the_run(tmp_path, when):
    """torch's gloo backend can abort a rank as its interpreter exits (``_gloo_aborted_at_exit``),
    after the work is done: kiln launch then reports success, saying what happened. An abort
    before the rank closed its process group is a failure, as before."""
    script = tmp_path / "abort.py"
    script.write_text(ABORT_SCRIPT)
    cmd = [sys.executable, "-m", "kiln.cli", "launch", "--gpus", "2", str(script), when]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert "rank 1 exited with -6" in done.stderr, done.stderr[-3000:]
    if when == "after-teardown":
        assert done.returncode == 0, done.stderr[-3000:]
        assert "the run is complete" in done.stderr
    else:
        assert done.returncode == 1 and "The other processes were stopped" in done.stderr
