"""Batch-1 convolutions as Triton kernels where they beat cuDNN: an operator and a pass.

``FuseConvReLU`` leaves a ResNet's convolutions to cuDNN's fused calls. At batch 1 those are
3-16 us each and bound the engine (H200, 2026-11-28). ``kiln.deploy._triton_conv``'s split-K
implicit-GEMM kernel ran 39 of ResNet-50's 53 convolutions faster (the stage-4 3x3s in 7 us
against 12), and the whole graph 43 us shorter. This module

- defines ``kiln::conv2d_b1``, an operator: at batch 1 the Triton kernel with the config it is
  given, at any other batch size cuDNN's fused call (a graph that meets other sizes still
  runs);
- ``TritonConv``, a pass after ``FuseConvReLU``: per convolution, it times cuDNN's call and a
  few kernel configs at batch 1 on the GPU (one CUDA graph of back-to-back calls each) and
  rewrites the node where a config is faster by ``margin``. ``optimize`` applies it to the
  batch-1 graph only (``Pass.batch_sizes``): the other sizes' packages keep cuDNN's calls
  and carry no second copy of the weights.

The operator is opaque to Inductor, as cuDNN's fused calls are: AOTInductor packages call it
through torch's dispatcher, which launches the kernel from Python (inside kiln's CUDA graph,
so only at capture). As a ``torch.library.triton_op`` that Inductor compiles into the package
(tried first, torch 2.11), each call came with 3-4 copy or fill kernels for the kernel's
pointer arguments, and the package's outputs were off by 6e-2 where the same graph compiled
in process (``torch.compile``) and run eagerly matched cuDNN's (H200, 2026-11-28).

The split-K configs count their blocks in on per-tile counters, which every kernel leaves at
zero: the pass adds one zeroed int32 buffer to the graph, a slice of it per split-K
convolution. The operator does not declare that it writes the buffer: it leaves it as it found
it, and Inductor would otherwise copy it before each call.
"""

import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn

from kiln.deploy._benchmark import graph_time
from kiln.deploy._check import PassRejected
from kiln.deploy._fuse_conv import register_shapes
from kiln.deploy._passes import Pass, copy_module, graph_constant
from kiln.deploy._triton_conv import (
    COUNTER_SLOTS,
    Config,
    conv2d_b1,
    gemm_weight,
    output_size,
    supports,
    tiles,
)

log = logging.getLogger(__name__)
aten = torch.ops.aten
FUSED = {aten.cudnn_convolution_relu.default: "relu",
         aten.cudnn_convolution_add_relu.default: "add_relu",
         aten.conv2d.default: "plain"}  # fmt: skip


@torch.library.custom_op("kiln::conv2d_b1", mutates_args=())
def conv2d_op(x: torch.Tensor, w: torch.Tensor, w_kn: torch.Tensor, bias: torch.Tensor | None,
              z: torch.Tensor | None, count: torch.Tensor, count_offset: int, stride: int,
              padding: int, relu: bool, config: list[int]) -> torch.Tensor:  # fmt: skip
    """``[relu](conv2d(x, w, bias, stride, padding) [+ z])``: the Triton kernel with ``config``
    (``Config``'s fields) at batch 1, cuDNN's (fused) call otherwise."""
    if x.shape[0] != 1:  # channels_last as the shape function says (cuDNN's already is)
        out = cudnn_call(x, w, bias, z, stride, padding, relu)
        return out.contiguous(memory_format=torch.channels_last)
    return conv2d_b1(x, w_kn, bias, z, w.shape[2], stride, padding, relu, _config(config),
                     count, count_offset)  # fmt: skip


@conv2d_op.register_fake
def _conv2d_shape(x: torch.Tensor, w: torch.Tensor, w_kn: torch.Tensor,
                  bias: torch.Tensor | None, z: torch.Tensor | None, count: torch.Tensor,
                  count_offset: int, stride: int, padding: int, relu: bool,
                  config: list[int]) -> torch.Tensor:  # fmt: skip
    oh, ow = output_size(x.shape[2], x.shape[3], w.shape[2], stride, padding)
    return x.new_empty((x.shape[0], w.shape[0], oh, ow)).contiguous(
        memory_format=torch.channels_last)  # fmt: skip


def cudnn_call(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None,
               z: torch.Tensor | None, stride: int, padding: int,
               relu: bool) -> torch.Tensor:  # fmt: skip
    """The convolution as ``FuseConvReLU`` left it."""
    common = ([stride, stride], [padding, padding], [1, 1], 1)
    if z is not None:
        return aten.cudnn_convolution_add_relu(x, w, z, 1.0, bias, *common)
    if relu:
        return aten.cudnn_convolution_relu(x, w, bias, *common)
    return aten.conv2d(x, w, bias, *common)


# a layer's parts -> (the fastest config or None, cuDNN's us per call, the config's)
Tuner = Callable[[dict[str, Any]], tuple[Config | None, float, float]]


class TritonConv(Pass):
    """Batch-1 convolutions after ``FuseConvReLU`` -> ``kiln::conv2d_b1`` where its Triton
    kernel is faster than cuDNN's call by ``margin`` (timed here, on the GPU the module is on).

    ``optimize`` adds it by default where batch size 1 is built (ResNet-50's batch-1 engine
    ran 36-54 us faster with it; H200, 2026-11-28, BENCHMARKS.md). Optional: where Triton is
    missing or cannot build the kernel, the engine runs without it. ``describe`` reports the
    convolutions replaced and the microseconds saved per call, as timed layer by layer.
    ``tune`` replaces the timing (tests). ``pdl``: launch the kernels as programmatic
    dependent launches, each kernel's start overlapping the end of the one before (default:
    on GPUs of compute capability 9+, where they exist; 13-17 us off ResNet-50's batch-1 call
    on an H200, 2026-11-28).
    """

    name = "triton_conv"
    tolerance = 1e-3  # fp32 accumulation, in another order than cuDNN's
    optional = True
    batch_sizes = (1,)  # the batch-1 graph only: other sizes keep cuDNN's calls

    def __init__(self, margin: float = 0.95, reps: int = 20, tune: Tuner | None = None,
                 pdl: bool | None = None) -> None:  # fmt: skip
        self.margin = margin
        self.pdl = pdl
        self.precompile = tune is None  # kiln's own timing compiles the candidates first
        self.tune = tune or (lambda layer: _tune(layer, reps))
        self.replaced = 0
        self.convolutions = 0
        self.saved_us = 0.0
        self.tune_s = 0.0
        self.precompile_s = 0.0
        self.launched_pdl: bool | None = None  # what the rewrite chose (None: nothing replaced)

    def apply(self, module: nn.Module) -> nn.Module:
        register_shapes()
        module = copy_module(module)
        graphs = [sub for sub in module.modules() if isinstance(sub, fx.GraphModule)]
        started = time.perf_counter()
        if self.precompile:
            precompile([job for gm in graphs for job in warm_jobs(gm)])
            self.precompile_s = time.perf_counter() - started
        for gm in graphs:
            self._rewrite(gm)
        self.tune_s = time.perf_counter() - started
        return module

    def describe(self) -> dict[str, Any]:
        return {"replaced": self.replaced, "convolutions": self.convolutions,
                "saved_us": round(self.saved_us, 1), "tune_s": round(self.tune_s, 1),
                "precompile_s": round(self.precompile_s, 1), "pdl": self.launched_pdl}  # fmt: skip

    def _rewrite(self, gm: fx.GraphModule) -> None:
        chosen: list[tuple[fx.Node, dict[str, Any], Config]] = []
        timed: dict[tuple[Any, ...], tuple[Config | None, float, float]] = {}
        for node in list(gm.graph.nodes):
            layer = _layer(gm, node)
            if layer is None:
                continue
            self.convolutions += 1
            key = (node.target, tuple(layer["image"]), tuple(layer["w"].shape),
                   layer["stride"], layer["padding"], layer["bias"] is not None)  # fmt: skip
            if key not in timed:
                timed[key] = self.tune(layer)
            config, cudnn_us, triton_us = timed[key]
            if config is not None and triton_us < self.margin * cudnn_us:
                chosen.append((node, layer, config))
                self.saved_us += cudnn_us - triton_us
        if not chosen:
            return
        device = chosen[0][1]["w"].device
        pdl = self.pdl
        if pdl is None:  # where the GPU has them (Hopper and later)
            pdl = device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9
        self.launched_pdl = pdl
        chosen = [(node, layer, dataclasses.replace(c, pdl=pdl)) for node, layer, c in chosen]
        first = next(n for n in gm.graph.nodes if n.op != "placeholder")
        offset = 0
        gm.register_buffer("_kiln_tile_counters", torch.zeros(1, dtype=torch.int32))  # sized below
        with gm.graph.inserting_before(first):
            count = gm.graph.get_attr("_kiln_tile_counters")
        for i, (node, layer, config) in enumerate(chosen):
            m = layer["m"]
            n = layer["w"].shape[0]
            gm.register_buffer(f"_kiln_gemm_weight_{i}", gemm_weight(layer["w"]))
            with gm.graph.inserting_before(node):
                w_kn = gm.graph.get_attr(f"_kiln_gemm_weight_{i}")
                # the node's current inputs: those rewritten before it (a shortcut) are new
                z = node.args[2] if layer["kind"] == "add_relu" else None
                args = (node.args[0], layer["w_node"], w_kn, layer["bias_node"], z,
                        count, offset, layer["stride"], layer["padding"], layer["relu"],
                        list(_fields(config)))  # fmt: skip
                new = gm.graph.call_function(torch.ops.kiln.conv2d_b1.default, args)
            new.meta.update(node.meta)
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
            if config.split_k > 1:
                offset += tiles(m, n, config)
            self.replaced += 1
        if offset > COUNTER_SLOTS:
            raise PassRejected(f"{offset} split-K tiles: more than {COUNTER_SLOTS} counters")
        zeros = torch.zeros(max(offset, 1), dtype=torch.int32, device=device)
        gm.register_buffer("_kiln_tile_counters", zeros)
        gm.graph.eliminate_dead_code()
        gm.recompile()


def _config(fields: list[int]) -> Config:
    """The ``Config`` an operator call names (packages of 2026-11-28 name six fields, no pdl)."""
    block_m, block_n, block_k, split_k, num_warps, num_stages = fields[:6]
    return Config(block_m, block_n, block_k, split_k, num_warps, num_stages,
                  pdl=len(fields) > 6 and bool(fields[6]))  # fmt: skip


def warm_jobs(gm: fx.GraphModule) -> list[list[Any]]:
    """``_triton_warm``'s jobs for the candidates of each distinct convolution in ``gm``."""
    jobs: list[list[Any]] = []
    for node in gm.graph.nodes:
        layer = _layer(gm, node)
        if layer is None:
            continue
        w = layer["w"]
        c, h, width = layer["image"]
        n, kernel = int(w.shape[0]), int(w.shape[2])
        has_bias, has_z = layer["bias"] is not None, layer["kind"] == "add_relu"
        common = [c, h, width, n, kernel, layer["stride"], layer["padding"], has_bias, has_z,
                  layer["relu"]]  # fmt: skip
        dtype = str(w.dtype).removeprefix("torch.")
        jobs += [[*common, list(_fields(config))[:6], dtype]
                 for config in candidates(layer["m"], n, c, kernel)]  # fmt: skip
    return [json.loads(text) for text in dict.fromkeys(json.dumps(job) for job in jobs)]


def precompile(jobs: list[list[Any]], workers: int | None = None,
               command: list[str] | None = None, timeout: float = 900.0) -> int:  # fmt: skip
    """Compile ``jobs`` in ``workers`` processes side by side (default: up to 8, one core left
    free); returns how many ran (0 where too few jobs or cores make it not worth it). Each
    process is ``command`` (default: ``python -m kiln.deploy._triton_warm``) reading its share
    of the jobs as JSON on stdin. A failure costs only time: the tuner compiles what is not in
    Triton's cache."""
    from kiln.deploy._builds import worker_env

    if workers is None:
        workers = min(8, (os.cpu_count() or 1) - 1, len(jobs) // 4)
    if workers < 2:
        return 0
    command = command or [sys.executable, "-m", "kiln.deploy._triton_warm"]
    shares = [jobs[i::workers] for i in range(workers)]
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - a file, not a pipe: it never fills up
    processes = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=errors, env=worker_env(), text=True)
                 for _ in shares]  # fmt: skip
    try:
        for process, share in zip(processes, shares, strict=True):
            assert process.stdin is not None
            try:
                process.stdin.write(json.dumps(share))
                process.stdin.close()
            except OSError:  # it died already: its share is the tuner's to compile
                pass
        deadline = time.perf_counter() + timeout
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.perf_counter()))
    except subprocess.TimeoutExpired as e:
        log.info("triton_conv: precompiling the kernels stopped (%s); the tuner compiles the "
                 "rest", e)  # fmt: skip
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        with errors:
            errors.seek(0)
            if text := errors.read().decode(errors="replace").strip():
                log.debug("triton_conv precompile: %s", text[-2000:])
    return len(processes)


def _fields(config: Config) -> tuple[int, ...]:
    return (config.block_m, config.block_n, config.block_k, config.split_k, config.num_warps,
            config.num_stages, int(config.pdl))  # fmt: skip


def _layer(gm: fx.GraphModule, node: fx.Node) -> dict[str, Any] | None:
    """A fused (or plain) convolution node's parts, or None where the kernel cannot run it."""
    if node.op != "call_function" or node.target not in FUSED:
        return None
    kind = FUSED[node.target]
    args: list[Any] = list(node.args)
    if node.kwargs:
        return None
    if kind == "add_relu":
        x, w, _z, _alpha, b, stride, padding, dilation, groups = args
    else:
        defaults = [None, None, None, [1, 1], [0, 0], [1, 1], 1]
        x, w, b, stride, padding, dilation, groups = args + defaults[len(args) :]
    if not (isinstance(w, fx.Node) and w.op == "get_attr"):
        return None
    if b is not None and not (isinstance(b, fx.Node) and b.op == "get_attr"):
        return None
    value = x.meta.get("val") if isinstance(x, fx.Node) else None
    weight = graph_constant(gm, w.target)
    # (the traced value's dtype is the capture's: Precision changed the weights after it)
    if value is None or value.dim() != 4 or weight.dim() != 4:
        return None
    if weight.dtype not in (torch.float16, torch.bfloat16):
        return None
    kernel = tuple(weight.shape[2:])
    if not supports(int(value.shape[1]), kernel, tuple(stride), tuple(padding), tuple(dilation),
                    groups):  # fmt: skip
        return None
    oh, ow = output_size(int(value.shape[2]), int(value.shape[3]), kernel[0], stride[0],
                         padding[0])  # fmt: skip
    image = [int(d) for d in value.shape[1:]]  # (C, H, W); the batch may be symbolic
    bias = graph_constant(gm, b.target) if b is not None else None
    return {"x": value, "image": image, "w": weight, "w_node": w, "bias": bias, "bias_node": b,
            "stride": int(stride[0]), "padding": int(padding[0]), "relu": kind != "plain",
            "kind": kind, "m": oh * ow}  # fmt: skip


def candidates(m: int, n: int, c: int, kernel: int) -> list[Config]:
    """A few tile shapes, each with the smallest split of K that gives about 100 blocks or more
    (H100/H200: 132 SMs). The winners on ResNet-50 (H200, 2026-11-28) are among them."""
    k = kernel * kernel * c
    block_k = 128 if c % 128 == 0 else 64

    def split(bm: int, bn: int) -> int:
        count, steps = -(-m // bm) * -(-n // bn), k // block_k
        return next((s for s in (1, 2, 4, 8) if steps % s == 0 and count * s >= 100), 1)

    found = [Config(bm, bn, block_k, split(bm, bn), 4, 3)
             for bm, bn in ((16, 64), (32, 64), (64, 32), (64, 64), (16, 32), (32, 32), (64, 128))
             if bn <= max(32, n)]  # fmt: skip
    if c % 128 == 0:  # the search's winners for 256 -> 64 at 56x56 and 128 -> 128 at 28x28
        found += [Config(64, 32, 64, 1, 4, 3), Config(64, 32, 128, split(64, 32), 4, 4)]
    return list(dict.fromkeys(found))


def _tune(layer: dict[str, Any], reps: int) -> tuple[Config | None, float, float]:
    """(the fastest config whose output matches cuDNN's, cuDNN's us per call, its us)."""
    w, bias = layer["w"], layer["bias"]
    if w.device.type != "cuda":
        raise PassRejected("the Triton convolution kernel runs on CUDA GPUs only")
    generator = torch.Generator(device=w.device).manual_seed(0)
    shape = (1, *layer["image"])
    x = torch.randn(shape, device=w.device, dtype=w.dtype, generator=generator)
    x = x.contiguous(memory_format=torch.channels_last)
    oh, ow = output_size(shape[2], shape[3], w.shape[2], layer["stride"], layer["padding"])
    z = None
    if layer["kind"] == "add_relu":
        z = torch.randn((1, w.shape[0], oh, ow), device=w.device, dtype=w.dtype,
                        generator=generator)  # fmt: skip
        z = z.contiguous(memory_format=torch.channels_last)
    stride, padding, relu = layer["stride"], layer["padding"], layer["relu"]
    with torch.no_grad():
        reference = cudnn_call(x, w, bias, z, stride, padding, relu)
        cudnn_us = graph_time(lambda: cudnn_call(x, w, bias, z, stride, padding, relu), reps, 10)
        w_kn = gemm_weight(w)
        best: tuple[Config | None, float] = (None, float("inf"))
        for config in candidates(layer["m"], w.shape[0], shape[1], w.shape[2]):
            try:
                out = conv2d_b1(x, w_kn, bias, z, w.shape[2], stride, padding, relu, config)
            except Exception as e:  # a config this GPU cannot build (shared memory, registers)
                log.debug("triton_conv: %s: %s", config, e)
                continue
            scale = float(reference.float().abs().max()) or 1.0
            if float((out.float() - reference.float()).abs().max()) / scale > 2e-3:
                continue
            us = graph_time(lambda: conv2d_b1(x, w_kn, bias, z, w.shape[2], stride, padding,
                                              relu, config), reps, 10)  # noqa: B023  # fmt: skip
            if us < best[1]:
                best = (config, us)
    return best[0], cudnn_us, best[1]
