"""``kiln.deploy._inductor_fixes``: the same answers from Inductor, without its slow paths."""

import logging
import os
import subprocess
import sys

import pytest
import torch
from torch._inductor import cpu_vec_isa, exc

from kiln.deploy._inductor_fixes import (
    TORCH_LIB,
    inductor_fixes,
    library_path,
    operator_str,
    probe_script,
)

# torch 2.11's probe script (newer torch no longer imports torch in it)
OLD_PROBE = '\nimport torch\nfrom ctypes import cdll\ncdll.LoadLibrary("__lib_path__")\n'


@torch.library.custom_op("kiln_test::twice", mutates_args=())
def twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@twice.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


def test_the_isa_probe_without_import_torch_gives_the_same_answer_as_with_it(monkeypatch):
    script = probe_script(OLD_PROBE)
    assert "import torch" not in script
    assert probe_script(script) == script  # a script without the import stays as it is
    flags = cpu_vec_isa.x86_isa_checker()
    isas = [isa for isa in (cpu_vec_isa.VecAVX2(), cpu_vec_isa.VecAVX512())
            if all(flag in flags for flag in str(isa).split())]  # fmt: skip
    if not isas:
        pytest.skip("the probe is checked with AVX2 or AVX-512, which this CPU lacks")
    for isa in isas:
        answers = []
        monkeypatch.setattr(cpu_vec_isa.VecISA, "_avx_py_load", OLD_PROBE)
        answers.append(isa.check_build(cpu_vec_isa.VecISA._avx_code))
        with inductor_fixes():  # the child finds torch's libraries through LD_LIBRARY_PATH
            monkeypatch.setattr(cpu_vec_isa.VecISA, "_avx_py_load", script)
            answers.append(isa.check_build(cpu_vec_isa.VecISA._avx_code))
        assert answers == [True, True], isa
    # a library that does not load fails the new script, as it fails the old one
    missing = subprocess.run([sys.executable, "-c", script.replace("__lib_path__", "/no/lib.so")],
                             capture_output=True, text=True)  # fmt: skip
    assert missing.returncode != 0 and "/no/lib.so" in missing.stderr
    assert library_path(None) == str(TORCH_LIB)
    assert library_path("/opt/x") == f"{TORCH_LIB}{os.pathsep}/opt/x"


def test_the_fallback_message_names_inputs_and_the_patches_are_undone(caplog):
    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.ops.kiln_test.twice(x.sin() + 1).cos()

    original = exc.OperatorIssue.__dict__["operator_str"]
    torch._dynamo.reset()
    compiled = torch.compile(f, backend="inductor", fullgraph=True)
    x = torch.randn(8)
    with (
        caplog.at_level(logging.INFO, logger="torch._inductor.graph"),
        inductor_fixes(),
        torch._inductor.config.patch(fx_graph_cache=False),
    ):  # fmt: skip  (lowered, not cached)
        torch.testing.assert_close(compiled(x), f(x))
    [message] = [r.getMessage() for r in caplog.records if "implicit fallback" in r.getMessage()]
    assert "target: kiln_test.twice.default" in message
    assert "args[0]: " in message and "\n" not in message.split("args[0]: ")[1]  # one line
    assert exc.OperatorIssue.__dict__["operator_str"] is original
    assert cpu_vec_isa.VecISA._avx_py_load != probe_script(OLD_PROBE)


def test_operator_str_names_ir_nodes_and_keeps_other_values():
    class Node:  # stands for an Inductor IR node: named, never printed whole
        def get_name(self) -> str:
            return "buf3"

        def __str__(self) -> str:
            raise AssertionError("printed in full")

    Node.__module__ = "torch._inductor.ir"
    text = operator_str("kiln::conv2d_b1", [Node(), [1, 2], None], {"relu": True, "z": Node()})
    assert text.splitlines() == ["  target: kiln::conv2d_b1", "  args[0]: Node(buf3)",
                                 "  args[1]: [1, 2]", "  args[2]: None",
                                 "  kwargs: relu=True, z=Node(buf3)"]  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-v"]))
