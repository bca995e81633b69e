"""FSDP2 (strategy="fsdp") on 2 CPU processes, and sharded checkpoints that resume on 1."""

import subprocess
import sys
import textwrap

import torch
from safetensors.torch import load_file

SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import kiln
    from kiln import callbacks as C
    from kiln import layers as L

    out, batch, epochs, strategy, resume = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \\
        sys.argv[4], sys.argv[5]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
    model = kiln.Sequential([kiln.Input((6,)), L.Dense(16, activation="relu"), L.Dense(3)])
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"], strategy=strategy)
    model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0,
              callbacks=[C.ModelCheckpoint(out + "-best.kiln", monitor="loss", save_last=True)],
              resume=None if resume == "-" else resume)
    model.save(out + ".kiln")  # with FSDP every rank calls it: the weights are gathered
""")


def _run(tmp_path, name, procs, batch, epochs, strategy="auto", resume="-"):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = str(tmp_path / name)
    launch = ["launch", "--gpus", str(procs)] if procs > 1 else ["train"]
    args = [str(script), out, str(batch), str(epochs), strategy, str(resume)]
    cmd = [sys.executable, "-m", "kiln.cli._main", *launch, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return load_file(out + ".kiln"), out


def _close(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_fsdp_on_two_processes_matches_one_process_and_resumes_on_one(tmp_path):
    straight, _ = _run(tmp_path, "one", 1, 16, 3)
    fsdp, _ = _run(tmp_path, "fsdp", 2, 8, 3, "fsdp")
    _close(straight, fsdp)
    _close(fsdp, load_file(tmp_path / "last.kiln"))  # ModelCheckpoint gathered the shards
    # 2 epochs sharded on 2 processes, the 3rd on 1 process from the sharded checkpoint
    state = tmp_path / "run.state"
    _run(tmp_path, "first", 2, 8, 2, "fsdp", state)
    assert state.is_dir() and any(state.glob("*.distcp"))
    resumed, _ = _run(tmp_path, "resumed", 1, 16, 3, "auto", state)
    _close(straight, resumed)
