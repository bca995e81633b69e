"""kiln.deploy.optimize on the CPU: the engine's outputs match the original model."""

import sys

import pytest
import torch
from torch import nn

import kiln.deploy as deploy
from kiln.deploy import PassRejected
from kiln.deploy import _optimize as optimize_module
from kiln.deploy._passes import Pass

from .conftest import rel_error


@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-5), ("bf16", 3e-2)])
@pytest.mark.parametrize("model_name", ["conv_net", "mlp"])
def test_engine_outputs_match_the_original_model(request, model_name, precision, tolerance):
    model = request.getfixturevalue(model_name)
    shape = (3, 8, 8) if model_name == "conv_net" else (6,)
    example = torch.randn(2, *shape)
    engine = deploy.optimize(model, example, precision, batch_sizes=(1, 4))
    x = torch.randn(7, *shape)  # 4 + 3 (padded to 4)
    out = engine(x)
    assert out.dtype == torch.float32 and out.shape == (7, model(x).shape[1])
    assert rel_error(out, model(x).detach()) <= tolerance
    info = engine.info
    assert info["precision"] == precision and info["compiled"] is False
    assert info["autotune"] == "small"  # nothing fused on the CPU: the argument stands
    names = [p["name"] for p in info["passes"]]
    expected = ["capture", "fold_batchnorm"] + ([precision] if precision != "fp32" else [])
    assert names == [*expected, "eager"]
    assert all(p["rel"] <= p["tolerance"] for p in info["passes"])
    assert info["rel_error"] == info["passes"][-1]["rel"] <= tolerance
    assert info["skipped"] == []


def test_the_original_model_is_left_as_it_was(conv_net, images):
    before = conv_net(images).detach()
    deploy.optimize(conv_net, images, "bf16", batch_sizes=(2,))
    assert next(conv_net.parameters()).dtype == torch.float32
    torch.testing.assert_close(conv_net(images), before, rtol=0, atol=0)


def test_image_engine_takes_uint8_nhwc_and_normalizes_inside(conv_net, images):
    image = {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}
    engine = deploy.optimize(conv_net, images, "fp32", batch_sizes=(1, 4), image=image)
    assert engine.input_shape == (8, 8, 3) and engine.input_dtype == torch.uint8
    pixels = torch.randint(0, 256, (5, 8, 8, 3), dtype=torch.uint8)
    mean, std = torch.tensor(image["mean"]), torch.tensor(image["std"])
    x = ((pixels.float() / 255 - mean) / std).permute(0, 3, 1, 2)  # by hand, as torchvision
    assert rel_error(engine(pixels), conv_net(x).detach()) <= 1e-5
    assert engine.info["image"] == image
    assert [p["name"] for p in engine.info["passes"]][-2] == "image_input"


def test_a_pass_past_its_tolerance_is_refused_naming_it(mlp):
    # the budget adds up: capture 1e-5 + fold 1e-5 + bf16 (here 1e-9)
    with pytest.raises(PassRejected, match=r"'bf16' pass .* must be <= 2\.0001e-05\. Received"):
        deploy.optimize(mlp, torch.randn(4, 6), "bf16", batch_sizes=(4,), tolerance=1e-9)


class Failing(Pass):
    """A pass that raises, or that adds ``shift`` to the model's outputs."""

    name = "failing"

    def __init__(self, optional: bool, shift: float | None = None) -> None:
        self.optional, self.shift = optional, shift

    def apply(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.shift is None:
            raise RuntimeError("no kernel for this shape\nmore lines")
        shift = self.shift

        class Shifted(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.module = module

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.module(x) + shift

        return Shifted()


@pytest.mark.parametrize(("shift", "reason"), [
    (None, "no kernel for this shape"),
    (1.0, "the 'failing' pass changes the model's outputs by more than its tolerance"),
])  # fmt: skip
def test_an_optional_pass_that_fails_is_skipped_and_recorded(monkeypatch, conv_net, images,
                                                             shift, reason):  # fmt: skip
    passes = optimize_module._passes
    monkeypatch.setattr(optimize_module, "_passes",
                        lambda *args: [*passes(*args), Failing(True, shift)])  # fmt: skip
    engine = deploy.optimize(conv_net, images, "fp32", batch_sizes=(2,))
    assert "failing" not in [p["name"] for p in engine.info["passes"]]
    (entry,) = engine.info["skipped"]
    assert entry["name"] == "failing" and entry["reason"].startswith(reason)
    assert rel_error(engine(images), conv_net(images).detach()) <= 1e-5  # the pass is not in it
    monkeypatch.setattr(optimize_module, "_passes",
                        lambda *args: [*passes(*args), Failing(False, shift)])  # fmt: skip
    with pytest.raises((RuntimeError, PassRejected), match=reason.split(" pass ")[0]):
        deploy.optimize(conv_net, images, "fp32", batch_sizes=(2,))


def test_unknown_precision_wrong_sizes_and_fp8_on_cpu_are_clear_errors(mlp, conv_net, images):
    x = torch.randn(2, 6)
    with pytest.raises(ValueError, match=r"fp32, bf16, fp16, fp8\. Received: precision='int3'"):
        deploy.optimize(mlp, x, "int3")
    with pytest.raises(ValueError, match=r"Received: batch_sizes=\(0, 4\)"):
        deploy.optimize(mlp, x, "fp32", batch_sizes=(0, 4))
    with pytest.raises(ValueError, match=r"fp8 needs an NVIDIA GPU .* the device is cpu"):
        deploy.optimize(mlp, x, "fp8")
    with pytest.raises(ValueError, match=r"at least one sample.*Received: \(0, 6\)"):
        deploy.optimize(mlp, x[:0], "fp32")
    with pytest.raises(ValueError, match=r"image\['std'\] must hold 3 value.*Received: \[1, 2\]"):
        deploy.optimize(conv_net, images, "fp32", image={"std": [1, 2]})
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) images. Received: .* shape \(2, 6\)"):
        deploy.optimize(mlp, x, "fp32", image={})
    with pytest.raises(ValueError, match=r"'cudnn' \(the fused calls alone\) or False\. "
                                         r"Received: fuse='tensorrt'"):  # fmt: skip
        deploy.optimize(mlp, x, "fp32", fuse="tensorrt")


def test_engine_refuses_a_wrong_shape(mlp):
    engine = deploy.optimize(mlp, torch.randn(2, 6), "fp32", batch_sizes=(2,))
    with pytest.raises(ValueError, match=r"shape \(N, 6\).*Received: shape \(2, 5\)"):
        engine(torch.randn(2, 5))


def test_a_model_returning_a_tuple_is_refused():
    class Two(torch.nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(TypeError, match=r"single tensor\. Received: tuple from Two"):
        deploy.optimize(Two(), torch.randn(2, 3), "fp32")


def test_small_autotune_tunes_nothing_once_cudnn_runs_the_convolutions():
    fused = [{"name": "capture"}, {"name": "fuse_conv_relu", "fused": 49, "with_add": 16}]
    none_fused = [{"name": "capture"}, {"name": "fuse_conv_relu", "fused": 0, "with_add": 0}]
    assert optimize_module.effective_autotune("small", fused) == "none"
    assert optimize_module.effective_autotune("all", fused) == "all"  # asked for by name
    assert optimize_module.effective_autotune("small", none_fused) == "small"
    assert optimize_module.effective_autotune("small", [{"name": "capture"}]) == "small"


class Marked(Pass):
    """A pass for some batch sizes' graphs: it wraps the module in one that adds ``shift`` and
    counts the rows it sees."""

    name = "marked"
    tolerance = 1e-3

    def __init__(self, batch_sizes: tuple[int, ...], shift: float = 0.0,
                 optional: bool = False) -> None:  # fmt: skip
        self.batch_sizes, self.shift, self.optional = batch_sizes, shift, optional
        self.rows: list[int] = []

    def apply(self, module: torch.nn.Module) -> torch.nn.Module:
        marked = self

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.module = module

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                marked.rows.append(len(x))
                return self.module(x) + marked.shift

        return Wrapped()


def test_a_pass_for_some_batch_sizes_rewrites_only_their_graphs(mlp, monkeypatch):
    passes = optimize_module._passes
    marked = Marked((1, 2), shift=1e-5)
    monkeypatch.setattr(optimize_module, "_passes", lambda *args: [*passes(*args), marked])
    x = torch.randn(8, 6)
    engine = deploy.optimize(mlp, x, "fp32", batch_sizes=(1, 2, 8))
    entry = engine.info["passes"][-2]  # before the runners' entry
    assert entry["name"] == "marked" and entry["batch_sizes"] == [1, 2]
    # checked as a pass once, at the smallest of its sizes, then in its sizes' runners only
    assert marked.rows == [1, 1, 2]
    with torch.no_grad():
        expected = mlp(x)
        for size, shifted in ((1, True), (2, True), (8, False)):
            marked.rows.clear()
            out = engine.runners[size](x[:size])
            assert marked.rows == ([size] if shifted else [])
            torch.testing.assert_close(out, expected[:size] + (1e-5 if shifted else 0.0))
    # past its tolerance at batch 1: skipped where optional, refused where not
    too_far = Marked((1,), 1.0, optional=True)
    monkeypatch.setattr(optimize_module, "_passes", lambda *args: [*passes(*args), too_far])
    engine = deploy.optimize(mlp, x, "fp32", batch_sizes=(1, 8))
    assert [e["name"] for e in engine.info["skipped"]] == ["marked"]
    monkeypatch.setattr(optimize_module, "_passes",
                        lambda *args: [*passes(*args), Marked((1,), 1.0)])  # fmt: skip
    with pytest.raises(PassRejected, match="'marked' pass"):
        deploy.optimize(mlp, x, "fp32", batch_sizes=(1, 8))
    # a pass for sizes the engine is not built for is not applied
    unused = Marked((4,))
    monkeypatch.setattr(optimize_module, "_passes", lambda *args: [*passes(*args), unused])
    engine = deploy.optimize(mlp, x, "fp32", batch_sizes=(1, 8))
    assert unused.rows == [] and "marked" not in [e["name"] for e in engine.info["passes"]]


def test_fuse_picks_the_convolution_passes_and_the_batch_1_ones_only_with_batch_1(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    example = torch.randn(2, 3, 8, 8)

    def names(fuse, sizes=(1, 8), precision="fp16"):
        options = optimize_module._options(precision, sizes, None, None, "small", None, True, fuse)
        passes = optimize_module._passes(options, torch.device("cuda"), net, example)
        return [p.name for p in passes]

    common = ["fold_batchnorm", "fp16", "channels_last", "fuse_conv_relu"]
    batch_1 = ["space_to_depth_stem", "triton_conv"]
    assert names(True) == names("triton") == common + batch_1  # "triton": its old name
    assert names(True, sizes=(8, 64)) == names("cudnn") == common
    assert names(False) == common[:3]
    assert names(True, precision="fp32") == ["fold_batchnorm", "channels_last"]


def test_fuse_triton_without_triton_is_skipped_saying_how_to_get_it(mlp, monkeypatch):
    monkeypatch.setitem(sys.modules, "kiln.deploy._conv_b1", None)  # as if Triton were missing
    missing = optimize_module._triton_conv()
    monkeypatch.setattr(optimize_module, "_passes", lambda *args: [missing])
    x = torch.randn(2, 6)
    engine = deploy.optimize(mlp, x, "fp32")
    [skipped] = engine.info["skipped"]
    assert skipped["name"] == "triton_conv" and "pip install triton" in skipped["reason"]
    with torch.no_grad():
        torch.testing.assert_close(engine(x), mlp(x))
