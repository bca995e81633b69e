"""fp8 through torchao: float8 weights and dynamically scaled float8 activations for linears.

Only where torchao supports it: NVIDIA GPUs of compute capability 8.9 or newer (Ada, Hopper,
Blackwell). Convolutions stay in bf16 (torchao quantizes linear layers), so a conv net gains
little; a transformer or an MLP gains most. The pass lifts the captured graph's ``aten.linear``
calls into ``nn.Linear`` submodules, which is what torchao's ``quantize_`` rewrites.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from kiln._extras import require
from kiln.deploy._passes import Pass, copy_module, graph_constant


class Float8Linear(Pass):
    name = "fp8_linear"
    tolerance = 1e-1

    def __init__(self) -> None:
        self.quantized: list[str] = []

    def apply(self, module: nn.Module) -> nn.Module:
        quantization = require("torchao.quantization", "fp8")
        module = copy_module(module)
        for sub in list(module.modules()):
            if isinstance(sub, fx.GraphModule):
                lift_linears(sub)

        def eligible(m: nn.Module, fqn: str) -> bool:
            # float8 GEMMs need multiples of 16; an fp32 linear is the precision pass's kept head
            ok = (isinstance(m, nn.Linear) and m.in_features % 16 == 0
                  and m.out_features % 16 == 0 and m.weight.dtype != torch.float32)  # fmt: skip
            if ok:
                self.quantized.append(fqn)
            return ok

        # set_inductor_config=False: by default torchao sets process-wide Inductor options
        # (coordinate-descent tuning among them), which then tuned kernels of a later
        # training step inside its CUDA graph capture and broke it (GPU tests, 2026-11-28)
        config = quantization.Float8DynamicActivationFloat8WeightConfig(
            granularity=quantization.PerRow(), set_inductor_config=False
        )
        quantization.quantize_(module, config, filter_fn=eligible)
        if not self.quantized:
            raise ValueError(
                "precision='fp8' quantizes linear layers whose in and out features are multiples "
                "of 16, and this model has none: use precision='bf16' or 'fp16'."
            )
        return module

    def describe(self) -> dict[str, Any]:
        return {"quantized": self.quantized}


def lift_linears(gm: fx.GraphModule) -> int:
    """Replace ``aten.linear(x, w, b)`` on constant weights by calls of ``nn.Linear`` modules."""
    lifted = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.linear.default:
            continue
        weight, bias = node.args[1], node.args[2] if len(node.args) > 2 else None
        if not all(_constant(a) for a in (weight, bias)):
            continue
        w = graph_constant(gm, weight.target)
        linear = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, device=w.device,
                           dtype=w.dtype)  # fmt: skip
        linear.weight = nn.Parameter(w, requires_grad=False)
        if bias is not None:
            linear.bias = nn.Parameter(graph_constant(gm, bias.target), requires_grad=False)
        name = f"_kiln_linear_{lifted}"
        gm.add_submodule(name, linear)
        with gm.graph.inserting_before(node):
            call = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(call)
        gm.graph.erase_node(node)
        lifted += 1
    if lifted:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return lifted


def _constant(arg: object) -> bool:
    return arg is None or (isinstance(arg, fx.Node) and arg.op == "get_attr")
