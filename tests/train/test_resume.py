"""A run killed with SIGKILL and restarted with the same call ends with identical weights."""

import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    import kiln
    from kiln import callbacks as C
    from kiln import layers as L

    state, out, kill_at, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
    model = kiln.Sequential([kiln.Input((6,)), L.Dense(16, activation="relu"), L.Dropout(0.3),
                             L.Dense(3)])
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"], device="cpu",
                  log_every=3)

    class Kill(C.Callback):
        def on_batch_end(self, trainer, step, logs):
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = [C.WarmupCosine(warmup_steps=5), C.EarlyStopping(monitor="loss", patience=10),
                 Kill()]
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=callbacks,
              resume=state if state != "-" else None, checkpoint_every=every or None)
    model.save(out)
""")


def _run(tmp_path, state, out, kill_at=0, every=0):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), str(state), str(out), str(kill_at), str(every)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("kill_at", "every"), [(9, 0), (15, 4)])
def test_killed_run_resumes_to_identical_weights(tmp_path, kill_at, every):
    done = _run(tmp_path, "-", tmp_path / "straight.kiln")
    assert done.returncode == 0, done.stderr
    state = tmp_path / "run.state"
    killed = _run(tmp_path, state, tmp_path / "never.kiln", kill_at, every)
    assert killed.returncode == -9, killed.stderr  # really killed, mid-epoch (6 steps/epoch)
    assert state.exists() and not (tmp_path / "never.kiln").exists()
    resumed = _run(tmp_path, state, tmp_path / "resumed.kiln", 0, every)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(tmp_path / "straight.kiln"), load_file(tmp_path / "resumed.kiln")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
