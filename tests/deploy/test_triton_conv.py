"""kiln's batch-1 Triton convolution (``_triton_conv``, ``_conv_b1``) on the CPU, in Triton's
interpreter, against ``torch.nn.functional.conv2d``.

The interpreter must be chosen before Triton compiles anything, so the cases run in a child
process with ``TRITON_INTERPRET=1`` and report as JSON; each test checks one part of that
report. The GPU tests (``test_gpu.py``) run the compiled kernel, in AOTInductor packages too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json
    import torch
    import torch.nn.functional as F
    from torch import fx, nn

    from kiln.deploy._capture import capture
    from kiln.deploy._conv_b1 import TritonConv
    from kiln.deploy._fold import FoldBatchNorm
    from kiln.deploy._fuse_conv import FuseConvReLU
    from kiln.deploy._precision import Precision
    from kiln.deploy._triton_conv import Config, conv2d_b1, counters, gemm_weight
    from tests.deploy.conftest import randomize_batchnorm

    report = {"kernel": []}
    torch.manual_seed(0)
    # (C, N, H, kernel, stride, padding, config, bias, residual, relu)
    cases = [
        (64, 64, 8, 1, 1, 0, Config(16, 32, 64, 1), True, False, True),
        (64, 96, 9, 3, 1, 1, Config(16, 32, 64, 3), True, True, True),
        (128, 64, 9, 3, 2, 1, Config(32, 64, 64, 2), True, False, True),
        (128, 80, 7, 1, 2, 0, Config(16, 64, 64, 2), False, False, False),
        (128, 64, 5, 3, 1, 1, Config(16, 32, 128, 9), True, True, True),
    ]
    for c, n, h, k, s, p, config, use_b, use_z, relu in cases:
        x = torch.randn(1, c, h, h).contiguous(memory_format=torch.channels_last)
        w = torch.randn(n, c, k, k) / (c * k * k) ** 0.5
        b = torch.randn(n) if use_b else None
        reference = F.conv2d(x, w, b, s, p)
        z = torch.randn_like(reference) if use_z else None
        reference = reference + z if use_z else reference
        reference = reference.relu() if relu else reference
        out = conv2d_b1(x, gemm_weight(w), b, z, k, s, p, relu, config)
        report["kernel"].append({
            "case": config.key(), "err": (out - reference).abs().max().item(),
            "shape": list(out.shape) == list(reference.shape),
            "channels_last": out.is_contiguous(memory_format=torch.channels_last),
            "counters_zero": int(counters(x.device).abs().sum()) == 0,
        })
    try:
        conv2d_b1(torch.randn(1, 48, 4, 4), torch.randn(48, 8), None, None, 1, 1, 0, False,
                  Config())
    except ValueError as e:
        report["bad_channels"] = str(e)

    # the pass, with CPU kernels for cuDNN's fused operators and a fixed choice of configs
    library = torch.library.Library("aten", "IMPL")
    library.impl("cudnn_convolution_relu",
                 lambda x, w, b, s, p, d, g: torch.relu(F.conv2d(x, w, b, s, p, d, g)), "CPU")
    library.impl("cudnn_convolution_add_relu",
                 lambda x, w, z, a, b, s, p, d, g: torch.relu(F.conv2d(x, w, b, s, p, d, g) + z),
                 "CPU")

    def conv_bn(a, b, k, s=1):
        return nn.Sequential(nn.Conv2d(a, b, k, s, k // 2, bias=False), nn.BatchNorm2d(b))

    class Block(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            self.a, self.b = conv_bn(cin, width, 1), conv_bn(width, width, 3, stride)
            self.c, self.shortcut = conv_bn(width, 2 * width, 1), conv_bn(cin, 2 * width, 1, stride)

        def forward(self, x):
            y = self.c(torch.relu(self.b(torch.relu(self.a(x)))))
            return torch.relu(y + self.shortcut(x))

    model = randomize_batchnorm(nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), Block(64, 64, 1), Block(128, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 5))).eval()
    x = torch.randn(2, 3, 8, 8)
    module = capture(model, x).module()
    for p in (FoldBatchNorm(), Precision(torch.float16), FuseConvReLU()):
        module = p.apply(module)

    def tune(layer):  # K split 3 or 2 ways where it divides; the two 1x1s on 128 "slower"
        c, kernel = layer["image"][0], layer["w"].shape[2]
        steps = kernel * kernel * c // 64
        split = 3 if steps % 3 == 0 else 2 if steps % 2 == 0 else 1
        slower = c == 128 and kernel == 1
        return Config(16, 32, 64, split), 10.0, 20.0 if slower else 1.0

    triton_pass = TritonConv(tune=tune)
    replaced = triton_pass.apply(module)
    gm = next(m for m in replaced.modules() if isinstance(m, fx.GraphModule))
    graph = gm.graph
    ops = [str(n.target) for n in graph.nodes if n.op == "call_function"]
    counter = gm._kiln_tile_counters

    with torch.no_grad():
        report["pass"] = {
            **triton_pass.describe(), "kiln_ops": ops.count("kiln.conv2d_b1.default"),
            "cudnn_ops": sum("cudnn_convolution" in o or o == "aten.conv2d.default" for o in ops),
            "counters": list(counter.shape),
            "ops": [{"offset": n.args[6], "split": n.args[10][3],
                     "tiles": -(-n.meta["val"].shape[2] * n.meta["val"].shape[3] // 16)
                              * -(-n.meta["val"].shape[1] // 32)}
                    for n in graph.nodes if str(n.target).startswith("kiln.")],
            "batch1_err": (replaced(x[:1]).float() - module(x[:1]).float()).abs().max().item(),
            "batch2_err": (replaced(x).float() - module(x).float()).abs().max().item(),
            "scale": module(x).float().abs().max().item(),
        }
    # the operator as Inductor sees it: channels_last outputs at every batch size, as its shape
    # function says, whatever layout the input comes in; opcheck: its schema, fake and real
    w = torch.randn(64, 128, 1, 1) / 128**0.5
    count = torch.zeros(2, dtype=torch.int32)  # split-K counters: one per output tile
    report["op"] = {}
    for batch in (1, 2):
        x = torch.randn(batch, 128, 4, 4)  # contiguous, not channels_last
        args = (x, w, gemm_weight(w), None, None, count, 0, 1, 0, False, [16, 32, 64, 2, 4, 3])
        out = torch.ops.kiln.conv2d_b1(*args)
        try:
            torch.library.opcheck(torch.ops.kiln.conv2d_b1.default, args)
            checked = "ok"
        except Exception as e:
            checked = f"{type(e).__name__}: {e}"[:500]
        report["op"][batch] = {
            "channels_last": out.is_contiguous(memory_format=torch.channels_last),
            "err": (out - F.conv2d(x, w)).abs().max().item(), "opcheck": checked}
    print("REPORT" + json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def report() -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("REPORT"))
    return json.loads(line[len("REPORT") :])


def test_the_kernel_matches_conv2d_for_1x1_3x3_strides_splits_and_epilogues(report):
    for case in report["kernel"]:
        assert case["shape"] and case["channels_last"], case
        assert case["err"] < 1e-4, case  # fp32 in the interpreter: summation order only


def test_split_k_leaves_its_tile_counters_at_zero(report):
    assert all(case["counters_zero"] for case in report["kernel"])


def test_channels_that_do_not_split_into_blocks_are_refused_with_the_sizes(report):
    assert "C=48" in report["bad_channels"] and "64-wide" in report["bad_channels"]


def test_the_pass_rewrites_the_faster_convolutions_and_keeps_the_math(report):
    found = report["pass"]
    # 8 convolutions take the kernel (the stem's 3 channels do not); the two 1x1s on 128
    # channels (the second block's first conv and shortcut) were "slower" and stay cuDNN's
    assert (found["convolutions"], found["replaced"], found["kiln_ops"]) == (8, 6, 6), found
    assert found["cudnn_ops"] == 3  # the stem and the two left alone
    assert found["batch1_err"] <= 2e-3 * found["scale"]  # Triton at batch 1
    assert found["batch2_err"] == 0.0  # cuDNN's calls (here their CPU stand-ins) otherwise


def test_the_operator_gives_channels_last_at_every_batch_size_and_passes_opcheck(report):
    for batch, found in report["op"].items():
        assert found["channels_last"], (batch, found)
        assert found["err"] < 1e-4, (batch, found)
        assert found["opcheck"] == "ok", (batch, found)


def test_split_k_convolutions_get_disjoint_counters_from_one_zeroed_tensor(report):
    found = report["pass"]
    assert {op["split"] for op in found["ops"]} == {1, 3}  # both kinds, in one graph
    used = 0
    for op in found["ops"]:  # in graph order: each split-K call's tiles after the last's
        assert op["offset"] == used, found["ops"]
        used += op["tiles"] if op["split"] > 1 else 0
    assert found["counters"] == [used]


def test_only_packages_that_call_the_operator_make_their_loader_import_triton(tmp_path):
    """A package names its extern calls in ``data/aotinductor/<model>/*.json``; the loader
    imports kiln's Triton operator (and Triton) only for packages that name it."""
    import zipfile

    from kiln.deploy._aoti import _calls

    calls = {"with": '{"target": "kiln::conv2d_b1"}', "without": '{"target": "aten::conv"}'}
    for name, text in calls.items():
        with zipfile.ZipFile(tmp_path / f"{name}.pt2", "w") as archive:
            archive.writestr("b1/data/aotinductor/model/abc.wrapper.json", text)
            archive.writestr("b1/data/weights/kiln::conv2d_b1", "not an extern call")
    assert _calls(tmp_path / "with.pt2", b'"kiln::conv2d_b1"')
    assert not _calls(tmp_path / "without.pt2", b'"kiln::conv2d_b1"')
    (tmp_path / "broken.pt2").write_text("not a zip archive")
    assert not _calls(tmp_path / "broken.pt2", b'"kiln::conv2d_b1"')


def test_the_candidates_include_the_searchs_winners_on_resnet50():
    """``scripts/b1_triton_conv.py`` tried 1-43 configs per ResNet-50 layer (H200, 2026-11-28);
    the pass tries a few, which must include each layer's winner (BENCHMARKS.md)."""
    from kiln.deploy._conv_b1 import candidates
    from kiln.deploy._triton_conv import Config

    winners = {  # (pixels, output channels, input channels, kernel): the fastest config
        (3136, 64, 64, 1): Config(16, 64, 64, 1),
        (3136, 64, 64, 3): Config(64, 32, 64, 1),
        (3136, 64, 256, 1): Config(64, 32, 64, 1),
        (784, 128, 128, 3): Config(64, 32, 128, 1, 4, 4),
        (196, 256, 256, 3): Config(16, 64, 128, 2),
        (196, 1024, 256, 1): Config(64, 32, 64, 1),
        (49, 512, 512, 3): Config(16, 64, 128, 4),
    }
    for (m, n, c, kernel), winner in winners.items():
        found = candidates(m, n, c, kernel)
        assert winner in found, (m, n, c, kernel, found)
        assert len(found) <= 9 and len(set(found)) == len(found)
        for config in found:  # each one's K splits into whole blocks
            assert c % config.block_k == 0
            assert (kernel * kernel * c // config.block_k) % config.split_k == 0


def test_precompile_jobs_are_each_distinct_convolutions_candidates_once():
    import torch
    from torch import fx, nn

    from kiln.deploy._capture import capture
    from kiln.deploy._conv_b1 import candidates, warm_jobs
    from kiln.deploy._fuse_conv import FuseConvReLU
    from kiln.deploy._precision import Precision
    from kiln.deploy._triton_conv import Config

    model = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),  # the same shape again
                          nn.Conv2d(64, 128, 1, stride=2)).eval()  # fmt: skip
    module = capture(model, torch.randn(2, 64, 8, 8)).module()
    for p in (Precision(torch.float16), FuseConvReLU()):
        module = p.apply(module)
    gm = next(m for m in module.modules() if isinstance(m, fx.GraphModule))
    jobs = warm_jobs(gm)
    expected = candidates(64, 64, 64, 3) + candidates(16, 128, 64, 1)
    assert len(jobs) == len(expected)
    assert [Config(*job[10]) for job in jobs] == expected
    assert jobs[0][:10] == [64, 8, 8, 64, 3, 1, 1, True, False, True]
    assert jobs[-1][:10] == [64, 8, 8, 128, 1, 2, 0, True, False, False]
    assert {job[11] for job in jobs} == {"float16"}


def test_precompile_shares_the_jobs_among_its_processes(tmp_path, monkeypatch):
    import sys

    from kiln.deploy._conv_b1 import precompile

    monkeypatch.setenv("KILN_TEST_SHARES", str(tmp_path))
    record = ("import json, os, sys; jobs = json.load(sys.stdin); "
              "open(os.path.join(os.environ['KILN_TEST_SHARES'], str(os.getpid())), 'w')"
              ".write(json.dumps(jobs))")  # fmt: skip
    jobs = [[i, "job"] for i in range(11)]
    assert precompile(jobs, workers=3, command=[sys.executable, "-c", record]) == 3
    shares = [json.loads(p.read_text()) for p in tmp_path.iterdir()]
    assert len(shares) == 3 and sorted(job[0] for share in shares for job in share) == list(
        range(11)
    )
    assert precompile(jobs[:5], command=[sys.executable, "-c", record]) == 0  # not worth it
    failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    assert precompile(jobs, workers=2, command=failing) == 2  # a failure costs only time
