"""Many processes, one store: no lost point; a SIGKILLed training reads as killed."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from kiln.track import Store

WRITERS, STEPS = 20, 300


def _writer(url: str, index: int) -> None:
    store = Store(url)
    with store.create_run(f"writer-{index}", config={"index": index}) as run:
        for step in range(1, STEPS + 1):
            run.log_metrics({"loss": 1.0 / step, "accuracy": index + step / 1e4}, step=step)
            if step % 50 == 0:
                time.sleep(0.01)
    store.close()


def test_twenty_writers_lose_no_point(store_url: str):
    Store(store_url).close()
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_writer, args=(store_url, i)) for i in range(WRITERS)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(timeout=240)
        assert p.exitcode == 0
    store = Store(store_url)
    runs = store.runs(limit=1000)
    assert len(runs) == WRITERS and {r.status for r in runs} == {"finished"}
    for run in runs:
        series = store.metrics(run.id)
        index = run.config["index"]
        assert series["loss"].step == list(range(1, STEPS + 1))
        assert series["accuracy"].value == pytest.approx([index + s / 1e4 for s in
                                                          range(1, STEPS + 1)])  # fmt: skip
    store.close()


TRAINING = textwrap.dedent("""
    import sys, torch, kiln
    from kiln import layers as L
    from kiln.track import TrackingCallback
    from kiln.callbacks import Callback

    class Announce(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                print("epoch done", flush=True)

    torch.manual_seed(0)
    x, y = torch.randn(512, 8), torch.randint(0, 2, (512,))
    model = kiln.Sequential([kiln.Input((8,)), L.Dense(16, activation="relu"), L.Dense(2)])
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"], log_every=2)
    model.fit(x, y, epochs=100000, batch_size=32, verbose=0,
              callbacks=[TrackingCallback(sys.argv[1], name="doomed"), Announce()])
""")


def test_sigkilled_training_reads_killed(store_url: str, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAINING)
    env = {**os.environ, "KILN_ARTIFACTS": str(tmp_path / "artifacts")}
    proc = subprocess.Popen([sys.executable, str(script), store_url], stdout=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "epoch done"
        store = Store(store_url)
        deadline = time.time() + 30
        while not store.runs() or not store.runs()[0].summary.get("epoch_loss"):
            assert time.time() < deadline, "the training wrote no epoch metric in 30 s"
            time.sleep(0.1)
        assert store.runs()[0].status == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    [run] = store.runs()
    assert run.status == "killed" and run.name == "doomed"
    assert run.config["epochs"] == 100000 and run.system["torch"]
    series = store.metrics(run.id)
    assert {"loss", "accuracy", "epoch_loss", "epoch_accuracy"} <= set(series)
    assert series["loss"].step == sorted(set(series["loss"].step))  # whole batches, no repeats
    assert series["loss"].step[:3] == [2, 4, 6]
    with store.engine.connect() as conn:
        import sqlalchemy as sa

        orphans = conn.execute(sa.text("SELECT count(*) FROM metrics WHERE run_id NOT IN "
                                       "(SELECT id FROM runs)")).scalar_one()  # fmt: skip
    assert orphans == 0
    store.close()


@pytest.mark.parametrize(("ending", "status"), [("pass", "finished"), ("1 / 0", "failed")])
def test_exit_without_finish(tmp_path, ending: str, status: str):
    db = tmp_path / "kiln.db"
    script = (f"from kiln.track import Store\nrun = Store({str(db)!r}).create_run('x')\n"
              f"run.log_metrics({{'loss': 1.0}}, step=1)\n{ending}\n")  # fmt: skip
    subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    store = Store(db)
    [run] = store.runs()
    assert run.status == status and store.metrics(run.id)["loss"].value == [1.0]
    assert (run.error is not None and "ZeroDivisionError" in run.error) == (status == "failed")
