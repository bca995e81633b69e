"""kiln.deploy on a CUDA GPU: compiled engines, CUDA graphs, the repository's packages, fp8.

Run on a GPU machine: ``python -m pytest tests/deploy -m gpu`` (skipped without CUDA).
"""

import gc
import warnings
import weakref
from importlib.util import find_spec

import pytest
import torch

import kiln
import kiln.deploy as deploy

from .conftest import MLP, make_conv_net, rel_error

pytestmark = pytest.mark.gpu
IMAGE = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _images(n: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 8, 8, 3), dtype=torch.uint8, device="cuda")


def _reference(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    mean, std = (torch.tensor(IMAGE[k], device="cuda") for k in ("mean", "std"))
    x = ((pixels.float() / 255 - mean) / std).permute(0, 3, 1, 2)
    with deploy._check.strict_fp32(), torch.no_grad():
        return model(x)


def test_compiled_fp16_image_engine_matches_saves_and_cold_loads(tmp_path, record_property):
    model = make_conv_net().cuda()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = deploy.optimize(model, torch.randn(4, 3, 8, 8, device="cuda"), "fp16", (1, 4),
                                 image=IMAGE, autotune="none")  # fmt: skip
    info = engine.info
    assert info["compiled"] and info["cuda_graphs"] and engine.device.type == "cuda"
    assert "channels_last" in [p["name"] for p in info["passes"]]
    # both conv + ReLU pairs run as cuDNN's fused calls, in the AOTInductor packages too
    fused = next(p for p in info["passes"] if p["name"] == "fuse_conv_relu")
    assert fused["fused"] == 2 and info["skipped"] == [], info["skipped"]
    assert not [w for w in caught if "cudnn_convolution" in str(w.message)]
    record_property("measured", f"fp16 build {info['build_s']} s, rel error {info['rel_error']}")
    pixels = _images(6)  # 4 + 2 padded to 4
    out = engine(pixels)
    assert out.dtype == torch.float32 and rel_error(out, _reference(model, pixels)) <= 1e-2
    kept = out.clone()
    engine(_images(6))  # outputs are fresh tensors, not the graph's static buffer
    torch.testing.assert_close(out, kept, rtol=0, atol=0)
    onnx = all(find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))
    folder = deploy.save(engine, tmp_path, "conv", onnx=onnx)  # ONNX from a CUDA capture
    if info["passes"][-1]["name"] == "aoti_compile":
        assert sorted(p.name for p in (folder / "aoti").iterdir()) == [
            "batch_1.pt2", "batch_4.pt2"]  # fmt: skip
    else:  # torch's loader crashed the probe (torch 2.11 + CUDA 13 on an H100): compiled here
        assert info["passes"][-1]["name"] == "inductor_jit" and not (folder / "aoti").exists()
        record_property("aoti", "packages did not load in the probe: compiled in process")
    loaded = deploy.load(folder)
    assert loaded.info["compiled"] and loaded.device == engine.device
    torch.testing.assert_close(loaded(pixels), out, rtol=1e-3, atol=1e-3)


def test_a_cuda_graph_runner_keeps_the_function_it_captured_alive():
    # an AOTInductor package frees its weights with its runner: the graph would replay
    # kernels reading freed memory (an illegal memory access on an H100, 2026-11-28)
    class Doubler:
        def __init__(self) -> None:
            self.weight = torch.full((4,), 2.0, device="cuda")

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.weight

    fn = Doubler()
    alive = weakref.ref(fn)
    run = deploy._cuda_graph.GraphRunner(fn, torch.ones(4, device="cuda"))
    del fn
    gc.collect()
    assert alive() is not None
    out = run(torch.arange(4.0, device="cuda"))
    torch.testing.assert_close(out, torch.arange(4.0, device="cuda") * 2)


def test_fp32_cuda_graph_engine_stays_fp32_when_tf32_is_switched_on_later():
    model = make_conv_net().cuda()
    engine = deploy.optimize(model, torch.randn(4, 3, 8, 8, device="cuda"), "fp32", (4,),
                             compile=False)  # fmt: skip
    x = torch.randn(4, 3, 8, 8, device="cuda")
    with deploy._check.strict_fp32(), torch.no_grad():
        reference = model(x)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        assert rel_error(engine(x), reference) <= 1e-5  # kernels were captured with TF32 off
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_resnet50_fp16_is_within_1e_3_of_fp32():
    model = kiln.zoo.create_model("resnet50").eval().cuda()
    engine = deploy.optimize(model, torch.randn(8, 3, 224, 224, device="cuda"), "fp16", (8,),
                             compile=False)  # fmt: skip
    fused = next(p for p in engine.info["passes"] if p["name"] == "fuse_conv_relu")
    assert (fused["fused"], fused["with_add"]) == (49, 16)  # all but the 4 shortcut convs
    x = torch.randn(8, 3, 224, 224, device="cuda")
    with deploy._check.strict_fp32(), torch.no_grad():
        reference = model(x)
    assert rel_error(engine(x), reference) <= 1e-3
    unfused = deploy.optimize(model, x, "fp16", (8,), compile=False, fuse=False)
    assert "fuse_conv_relu" not in [p["name"] for p in unfused.info["passes"]]
    assert rel_error(engine(x), unfused(x)) <= 1e-3


def test_bf16_conv_net_runs_cudnns_fused_calls_within_its_tolerance():
    model = make_conv_net().cuda()
    x = torch.randn(4, 3, 8, 8, device="cuda")
    engine = deploy.optimize(model, x, "bf16", (4,), compile=False)
    assert engine.info["skipped"] == [], engine.info["skipped"]
    fused = next(p for p in engine.info["passes"] if p["name"] == "fuse_conv_relu")
    assert fused["fused"] == 2
    with deploy._check.strict_fp32(), torch.no_grad():
        assert rel_error(engine(x), model(x)) <= 3e-2


def test_fp8_runs_where_torchao_supports_the_card_and_says_why_not_elsewhere():
    class Wide(MLP):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(64, 128), torch.nn.Linear(128, 32)

    model, x = Wide().eval().cuda(), torch.randn(16, 64, device="cuda")
    if torch.cuda.get_device_capability() < (8, 9):
        with pytest.raises(ValueError, match=r"compute capability >= 8\.9"):
            deploy.optimize(model, x, "fp8", (16,))
        return
    pytest.importorskip("torchao")
    import torch._inductor.config as inductor

    def settings() -> dict:  # torch's AOTInductor build itself records its machine here
        return {k: v for k, v in inductor.save_config_portable().items()
                if k != "aot_inductor.metadata"}  # fmt: skip

    before = settings()
    engine = deploy.optimize(model, x, "fp8", (16,), autotune="none")
    # the process's Inductor settings are its own (torchao's quantize_ sets some by default)
    assert settings() == before
    fp8 = next(p for p in engine.info["passes"] if p["name"] == "fp8_linear")
    assert fp8["quantized"]  # at least one linear runs in float8
    with torch.no_grad():
        assert rel_error(engine(x), model(x)) <= 0.1


class _WideBlock(torch.nn.Module):
    """A ResNet bottleneck wide enough for the Triton kernel (64-channel multiples), with a
    strided 3x3 and a 1x1 shortcut convolution when ``stride`` is 2."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        nn = torch.nn

        def conv_bn(a: int, b: int, k: int, s: int = 1) -> torch.nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, k, s, k // 2, bias=False), nn.BatchNorm2d(b))

        self.a, self.b = conv_bn(cin, width, 1), conv_bn(width, width, 3, stride)
        self.c = conv_bn(width, 4 * width, 1)
        self.shortcut = conv_bn(cin, 4 * width, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c(torch.relu(self.b(torch.relu(self.a(x)))))
        return torch.relu(y + self.shortcut(x))


def _wide_net() -> torch.nn.Module:
    from .conftest import randomize_batchnorm

    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), _WideBlock(64, 64, 1),
                          _WideBlock(256, 128, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(512, 10))  # fmt: skip
    return randomize_batchnorm(model).eval().cuda()


@pytest.mark.skipif(find_spec("triton") is None, reason="needs Triton")
def test_triton_convolutions_match_cudnn_at_batch_1_eager_and_in_packages(tmp_path):
    """Every convolution the kernel supports, forced onto it (``margin`` infinite): eager at
    batch 1 (Triton) and 2 (cuDNN), and in AOTInductor packages built in worker processes."""
    from kiln.deploy._aoti import inductor_options, load_package
    from kiln.deploy._builds import build_packages
    from kiln.deploy._capture import capture
    from kiln.deploy._conv_b1 import TritonConv
    from kiln.deploy._fold import FoldBatchNorm
    from kiln.deploy._fuse_conv import FuseConvReLU
    from kiln.deploy._passes import ChannelsLast
    from kiln.deploy._precision import Precision

    model = _wide_net()
    x = torch.randn(2, 3, 16, 16, device="cuda")
    module = capture(model, x).module()
    for p in (FoldBatchNorm(), Precision(torch.float16), ChannelsLast(), FuseConvReLU()):
        module = p.apply(module)
    triton_pass = TritonConv(margin=float("inf"))
    replaced = triton_pass.apply(module)
    # the stem (3 input channels) stays cuDNN's; the 8 others run the kernel at batch 1
    assert (triton_pass.replaced, triton_pass.convolutions) == (8, 8), triton_pass.describe()
    with torch.no_grad():
        reference = model(x)
        for size in (1, 2):
            out = replaced(x[:size])
            assert rel_error(out, module(x[:size])) <= 2e-3
            assert rel_error(out, reference[:size]) <= 5e-3
        again = replaced(x[:1])  # the split-K counters are back at zero after each call
        torch.testing.assert_close(again, replaced(x[:1]), rtol=0, atol=0)
    options = {s: inductor_options(torch.device("cuda"), s, "none") for s in (1, 2)}
    paths = build_packages(dict.fromkeys((1, 2), replaced), {1: x[:1], 2: x}, options, tmp_path,
                           jobs=2)  # fmt: skip
    for size, path in paths.items():
        run = load_package(path, torch.device("cuda"))
        with torch.no_grad():
            assert rel_error(run(x[:size]), reference[:size]) <= 5e-3
            assert rel_error(run(x[:size]), run(x[:size])) == 0


@pytest.mark.skipif(find_spec("triton") is None, reason="needs Triton")
@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.get_device_capability()[0] < 9,
                    reason="dependent launches need compute capability 9+")  # fmt: skip
def test_triton_convolutions_launched_as_dependent_launches_match_in_a_replayed_graph():
    """With ``pdl`` each kernel may start while the one before it ends and must wait for it
    before touching memory: eight kernels in a row (some reading the one before's output, some
    split-K), replayed in one CUDA graph, give the graph without it to the bit, call after
    call."""
    from kiln.deploy._capture import capture
    from kiln.deploy._conv_b1 import TritonConv
    from kiln.deploy._cuda_graph import GraphRunner
    from kiln.deploy._fold import FoldBatchNorm
    from kiln.deploy._fuse_conv import FuseConvReLU
    from kiln.deploy._passes import ChannelsLast
    from kiln.deploy._precision import Precision

    model = _wide_net()
    x = torch.randn(2, 3, 16, 16, device="cuda")
    module = capture(model, x).module()
    for p in (FoldBatchNorm(), Precision(torch.float16), ChannelsLast(), FuseConvReLU()):
        module = p.apply(module)

    def tune(layer):  # the same configs, split-K where K allows, both ways
        from kiln.deploy._triton_conv import Config

        steps = layer["w"].shape[2] ** 2 * layer["image"][0] // 64
        return Config(16, 64, 64, 2 if steps % 2 == 0 else 1), 10.0, 1.0

    graphs = {}
    for pdl in (False, True):
        triton_pass = TritonConv(tune=tune, pdl=pdl)
        replaced = triton_pass.apply(module)
        assert triton_pass.replaced == 8
        graphs[pdl] = GraphRunner(torch.inference_mode()(replaced), x[:1].contiguous())
    with torch.no_grad():
        reference = module(x[:1])
    for _ in range(6):
        batch = torch.randn(1, 3, 16, 16, device="cuda")
        plain, dependent = graphs[False](batch).clone(), graphs[True](batch).clone()
        torch.testing.assert_close(dependent, plain, rtol=0, atol=0)
    assert rel_error(graphs[True](x[:1]), reference) <= 2e-3


def test_fuse_triton_rewrites_a_strided_stem_in_the_batch_1_graph_only():
    from .conftest import randomize_batchnorm

    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                          nn.MaxPool2d(3, 2, 1), _WideBlock(64, 64, 1), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(256, 10))  # fmt: skip
    model = randomize_batchnorm(model).eval().cuda()
    x = torch.randn(2, 3, 32, 32, device="cuda")
    # AOTInductor packages (the default): each size's package from its own graph
    engine = deploy.optimize(model, x, "fp16", (1, 2), autotune="none", fuse="triton")
    entry = next(p for p in engine.info["passes"] if p["name"] == "space_to_depth_stem")
    assert entry["rewritten"] == 1 and entry["batch_sizes"] == [1], entry
    assert engine.info["passes"][-1]["name"] == "aoti_compile"  # packages, not a fallback
    with deploy._check.strict_fp32(), torch.no_grad():
        reference = model(x)
    for size in (1, 2):
        assert rel_error(engine(x[:size]), reference[:size]) <= 5e-3


@pytest.mark.skipif(find_spec("triton") is None, reason="needs Triton")
def test_optimize_times_the_triton_convolutions_and_keeps_its_checks():
    model = _wide_net()
    x = torch.randn(2, 3, 16, 16, device="cuda")
    engine = deploy.optimize(model, x, "fp16", (1, 2), compile="jit", autotune="none",
                             fuse="triton")  # fmt: skip
    entry = next(p for p in engine.info["passes"] if p["name"] == "triton_conv")
    assert entry["convolutions"] == 8 and 0 <= entry["replaced"] <= 8, entry
    with deploy._check.strict_fp32(), torch.no_grad():
        reference = model(x)
    for size in (1, 2):
        assert rel_error(engine(x[:size]), reference[:size]) <= 5e-3
