"""FSDP2 (strategy="fsdp") on 2 CPU processes, and sharded checkpoints that resume on 1."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import kiln
    from kiln import callbacks as C
    from kiln import layers as L

    out, batch, epochs, strategy, resume, compile_option = sys.argv[1], int(sys.argv[2]), \\
        int(sys.argv[3]), sys.argv[4], sys.argv[5], {"auto": "auto", "on": True}[sys.argv[6]]
    reshard = {"auto": "auto", "no": False}[sys.argv[7]]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
    model = kiln.Sequential([kiln.Input((6,)), L.Dense(16, activation="relu"), L.Dense(3)])
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"], strategy=strategy,
                  compile=compile_option, reshard_after_forward=reshard)
    model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0,
              callbacks=[C.ModelCheckpoint(out + "-best.kiln", monitor="loss", save_last=True)],
              resume=None if resume == "-" else resume)
    model.save(out + ".kiln")  # with FSDP every rank calls it: the weights are gathered
""")


def _run(tmp_path, name, procs, batch, epochs, strategy="auto", resume="-", compile="auto",
         reshard="auto"):  # fmt: skip
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = str(tmp_path / name)
    launch = ["launch", "--gpus", str(procs)] if procs > 1 else ["train"]
    args = [str(script), out, str(batch), str(epochs), strategy, str(resume), compile, reshard]
    cmd = [sys.executable, "-m", "kiln.cli", *launch, *args]
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


def test_fsdp_with_a_compiled_step_matches_one_process(tmp_path):
    """A GPU's default: the step compiled (Dynamo traces through FSDP2's hooks), sharded."""
    straight, _ = _run(tmp_path, "one", 1, 16, 3)
    compiled, _ = _run(tmp_path, "fsdp", 2, 8, 3, "fsdp", compile="on")
    _close(straight, compiled)


def test_fsdp_keeping_gathered_weights_until_the_backward_matches_one_process(tmp_path):
    """reshard_after_forward=False: one all-gather per unit a step (kiln's choice on GPUs
    where the gathered weights fit), the same training."""
    straight, _ = _run(tmp_path, "one", 1, 16, 3)
    kept, _ = _run(tmp_path, "fsdp", 2, 8, 3, "fsdp", reshard="no")
    _close(straight, kept)


UNITS_SCRIPT = textwrap.dedent("""
    import os, torch
    import torch.distributed as dist
    from torch import nn
    from torch.distributed.fsdp import FSDPModule
    from kiln.train._distributed import Distributed, fsdp_units

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["PORT"])
    dist.init_process_group("gloo", rank=0, world_size=1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)
        def forward(self, x):
            return x + self.fc(x).relu()

    class Net(nn.Module):  # a transformer's shape: embedding, a ModuleList of blocks, a head
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 8)
            self.blocks = nn.ModuleList(Block() for _ in range(3))
            self.frozen = nn.LayerNorm(8).requires_grad_(False)
            self.head = nn.Linear(8, 10)
        def forward(self, tokens):
            x = self.embed(tokens)
            for block in self.blocks:
                x = block(x)
            return self.head(self.frozen(x))

    torch.manual_seed(0)
    net = Net()
    names = {id(m): n for n, m in net.named_modules()}
    print("units", [names[id(u)] for u in fsdp_units(net)])
    tokens = torch.randint(0, 10, (4, 5))
    reference = net(tokens)
    seen = []
    net.blocks[1].fc.register_forward_pre_hook(lambda m, a: seen.append(m.weight.dtype))
    Distributed(0, 1, 0).wrap(net, torch.device("cpu"), "fsdp", torch.bfloat16,
                              keep_gathered=os.environ["KEEP"] == "1")
    print("sharded", sorted(n for n, m in net.named_modules() if isinstance(m, FSDPModule)))
    out = net(tokens)
    print("gathered", seen[-1], "output", out.dtype)
    kept = [type(block.fc.weight).__name__ for block in net.blocks]  # after the forward
    print("kept", kept)
    print("close", torch.allclose(out.float(), reference, atol=0.1, rtol=0.05))
    out.float().sum().backward()
    print("grad", net.blocks[1].fc.weight.grad.dtype)
    dist.destroy_process_group()
""")


@pytest.mark.parametrize("keep", [False, True])
def test_fsdp_shards_each_block_of_a_module_list_and_gathers_bf16(tmp_path, keep):
    """A transformer's blocks live in a ModuleList: each is its own FSDP unit (gathered one at
    a time; the embedding and head stay with the root), the last block stays gathered after
    the forward for the backward to start with (every block with ``keep_gathered``), and bf16
    training gathers bf16 parameters while gradients and shards stay fp32."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "units.py"
    script.write_text(UNITS_SCRIPT)
    env = {**os.environ, "PORT": str(port), "KEEP": str(int(keep))}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    assert lines["units"] == "['blocks.0', 'blocks.1', 'blocks.2']"  # the rest: with the root
    assert lines["sharded"] == "['', 'blocks.0', 'blocks.1', 'blocks.2']"
    assert lines["gathered"] == "torch.bfloat16 output torch.bfloat16"
    kept = ["Parameter"] * 3 if keep else ["DTensor", "DTensor", "Parameter"]
    assert lines["kept"] == str(kept)
    assert lines["close"] == "True"
    assert lines["grad"] == "torch.float32"


def test_fsdp_units_are_the_listed_blocks_only_where_they_hold_most_weights():
    from torch import nn

    from kiln.train._distributed import fsdp_units

    class Heads(nn.Module):  # small heads in a list, beside a large backbone
        def __init__(self):
            super().__init__()
            self.heads = nn.ModuleList(nn.Linear(64, 2) for _ in range(3))

    backbone = [nn.Linear(64, 64) for _ in range(3)]
    heads = Heads()
    net = nn.Sequential(*backbone, heads)
    assert fsdp_units(net) == [*backbone, heads]  # each layer, as before lists were looked for

    blocks = nn.ModuleList(nn.Linear(64, 64) for _ in range(3))
    net = nn.Module()
    net.embed, net.blocks, net.head = nn.Embedding(10, 64), blocks, nn.Linear(64, 10)
    assert fsdp_units(net) == list(blocks)  # the blocks hold 12,480 of 13,770 weights
