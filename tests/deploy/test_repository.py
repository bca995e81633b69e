"""The model repository: save, load (latest or a given version), load_repository, model.onnx."""

import json
import time

import pytest
import torch

import kiln
import kiln.deploy as deploy

from .conftest import MLP, make_conv_net, rel_error

IMAGE = {"mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.3]}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return make_conv_net(), MLP().eval()


@pytest.fixture(scope="module")
def repo(tmp_path_factory, models):
    """Built once for the module: each save exports and validates an ONNX file (seconds)."""
    conv_net, mlp = models
    path = tmp_path_factory.mktemp("repository")
    images = torch.randn(3, 3, 8, 8)
    conv = deploy.optimize(conv_net, images, "fp32", batch_sizes=(1, 4), image=IMAGE)
    deploy.save(conv, path, "conv")
    deploy.save(deploy.optimize(mlp, torch.randn(2, 6), "bf16", batch_sizes=(2,)), path,
                "mlp", onnx=False)  # fmt: skip
    return path


def test_engines_loaded_from_the_repository_match_the_original_models(repo, models):
    conv_net, mlp = models
    engines = deploy.load_repository(repo)
    assert sorted(engines) == ["conv", "mlp"]
    pixels = torch.randint(0, 256, (5, 8, 8, 3), dtype=torch.uint8)
    x = (pixels.float() / 255 - torch.tensor(IMAGE["mean"])) / torch.tensor(IMAGE["std"])
    reference = conv_net(x.permute(0, 3, 1, 2)).detach()
    assert engines["conv"].input_dtype == torch.uint8 and engines["conv"].name == "conv"
    assert rel_error(engines["conv"](pixels), reference) <= 1e-5
    features = torch.randn(3, 6)
    assert rel_error(engines["mlp"](features), mlp(features).detach()) <= 3e-2


def test_a_version_folder_holds_the_model_its_config_and_a_validated_onnx(repo):
    folder = repo / "conv" / "1"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "example.safetensors", "model.kiln", "model.onnx"]
    assert kiln.load_model(folder / "model.kiln") is not None
    config = json.loads((folder / "config.json").read_text())
    assert config["input"] == {"shape": [8, 8, 3], "dtype": "uint8"}
    assert config["model_input"] == {"shape": [3, 8, 8], "dtype": "float32"}
    assert config["batch_sizes"] == [1, 4] and config["precision"] == "fp32"
    assert config["image"] == IMAGE
    assert config["built_for"]["device"] == "cpu"
    assert config["built_for"]["torch"] == torch.__version__
    assert [p["name"] for p in config["passes"]][:2] == ["capture", "fold_batchnorm"]
    assert config["skipped"] == []
    assert config["onnx"]["rel"] <= 1e-4
    # a plain torch module is stored as its exported program
    assert (repo / "mlp" / "1" / "model.pt2").is_file()


def test_onnx_model_runs_in_onnxruntime_and_matches_the_original(repo, models):
    conv_net = models[0]
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(repo / "conv" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    pixels = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8)
    (out,) = session.run(None, {"input": pixels.numpy()})
    x = (pixels.float() / 255 - torch.tensor(IMAGE["mean"])) / torch.tensor(IMAGE["std"])
    assert rel_error(torch.from_numpy(out), conv_net(x.permute(0, 3, 1, 2)).detach()) <= 1e-5


def test_versions_count_up_and_load_takes_the_latest_or_the_one_named(tmp_path, mlp):
    first = deploy.optimize(mlp, torch.randn(2, 6), "fp32", batch_sizes=(2,))
    with torch.no_grad():
        mlp.fc2.bias.add_(10.0)
    second = deploy.optimize(mlp, torch.randn(2, 6), "fp32", batch_sizes=(2,))
    assert deploy.save(first, tmp_path, "m", onnx=False) == tmp_path / "m" / "1"
    assert deploy.save(second, tmp_path, "m", onnx=False) == tmp_path / "m" / "2"
    x = torch.randn(2, 6)
    torch.testing.assert_close(deploy.load(tmp_path / "m")(x), second(x))
    torch.testing.assert_close(deploy.load(tmp_path / "m" / "1")(x), first(x))
    with pytest.raises(ValueError, match=r"not yet in .* holds \[1, 2\]\)\. Received: version=2"):
        deploy.save(first, tmp_path, "m", version=2, onnx=False)
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.startswith(".")]


def test_missing_repository_model_or_version_and_bad_names_are_clear_errors(tmp_path, mlp):
    with pytest.raises(FileNotFoundError, match=r"No model repository at .*nowhere"):
        deploy.load_repository(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"No model at .*absent"):
        deploy.load(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"No version in .*empty"):
        deploy.load(tmp_path / "empty")
    assert deploy.load_repository(tmp_path) == {}
    engine = deploy.optimize(mlp, torch.randn(2, 6), "fp32", batch_sizes=(2,))
    with pytest.raises(ValueError, match=r"a folder name\)\. Received: name='../up'"):
        deploy.save(engine, tmp_path, "../up")
    with pytest.raises(ValueError, match=r"takes an engine built by kiln\.deploy\.optimize"):
        deploy.save(deploy.eager_engine(mlp, torch.randn(2, 6)), tmp_path, "eager")


@pytest.mark.slow
def test_aoti_packages_are_built_stored_and_loaded_without_compiling(
    tmp_path, mlp, recwarn, record_property, monkeypatch
):
    """One tiny AOTInductor build on the CPU (a C++ compile: ~20-30 s on 2 cores, cold), loaded
    in a probe process first (a few seconds), then here."""
    started = time.perf_counter()
    engine = deploy.optimize(mlp, torch.randn(2, 6), "fp32", batch_sizes=(2,), compile=True)
    record_property("measured", f"AOTInductor CPU build {time.perf_counter() - started:.1f} s "
                                f"(probe {engine.info['timings']['probe']:.1f} s)")  # fmt: skip
    timings = engine.info["timings"]
    assert {"capture", "packages", "package_2", "probe", "runners", "total"} <= set(timings)
    assert 0 < timings["package_2"] <= timings["packages"] <= timings["total"]
    # the probe is part of the packages phase (timings are rounded to milliseconds)
    assert 0 < timings["probe"] <= timings["packages"] - timings["package_2"] + 0.002
    assert engine.info["passes"][-1]["name"] == "aoti_compile"  # the probe passed
    assert not [w for w in recwarn if "AOTInductor" in str(w.message)]
    folder = deploy.save(engine, tmp_path, "mlp", onnx=False)
    assert (folder / "aoti" / "batch_2.pt2").is_file()

    def compiles(*args, **kwargs):
        raise AssertionError("loading a repository compiled")

    with monkeypatch.context() as patched:  # loading runs no compiler of any kind
        for name in ("_optimize.build_packages", "_optimize.jit_compile", "_aoti.build_package"):
            patched.setattr(f"kiln.deploy.{name}", compiles)
        patched.setattr(torch._inductor, "aoti_compile_and_package", compiles)
        patched.setattr(torch, "compile", compiles)
        loaded = deploy.load(folder)
    assert loaded.info["compiled"] is True and loaded.info["source"] == str(folder)
    assert loaded.info["load_s"] > 0
    x = torch.randn(3, 6)
    assert rel_error(loaded(x), mlp(x).detach()) <= 1e-5
    assert not [w for w in recwarn if "rebuilding" in str(w.message)]
    config = json.loads((folder / "config.json").read_text())
    config["built_for"]["torch"] = "0.0"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match=r"built for torch '0\.0' .* rebuilding the engine"):
        rebuilt = deploy.load(folder)
    assert rel_error(rebuilt(x), mlp(x).detach()) <= 1e-5


@pytest.mark.slow
def test_without_an_aoti_toolchain_the_engine_compiles_in_process_and_says_so(
    tmp_path, mlp, monkeypatch
):
    def no_toolchain(*args, **kwargs):
        raise OSError("CUDA_HOME environment variable is not set.")

    monkeypatch.setattr("kiln.deploy._optimize.build_packages", no_toolchain)
    with pytest.warns(UserWarning, match=r"could not build packages \(OSError: CUDA_HOME"):
        engine = deploy.optimize(mlp, torch.randn(2, 6), "fp32", (2,), compile=True)
    assert engine.info["passes"][-1]["name"] == "inductor_jit"
    x = torch.randn(3, 6)
    assert rel_error(engine(x), mlp(x).detach()) <= 1e-5
    folder = deploy.save(engine, tmp_path, "mlp", onnx=False)
    with pytest.warns(UserWarning, match="holds no AOTInductor packages"):
        assert rel_error(deploy.load(folder)(x), mlp(x).detach()) <= 1e-5


def test_compile_jit_builds_no_packages_and_load_says_why_it_compiles(tmp_path, mlp, monkeypatch):
    def no_packages(*args, **kwargs):
        raise AssertionError("compile='jit' must not build AOTInductor packages")

    compiled = []

    def jit_compile(module, example, options):  # the real one: the slow no-toolchain test
        compiled.append((len(example), options["freezing"]))
        return lambda x: module(x)

    monkeypatch.setattr("kiln.deploy._optimize.build_packages", no_packages)
    monkeypatch.setattr("kiln.deploy._optimize.jit_compile", jit_compile)
    engine = deploy.optimize(mlp, torch.randn(4, 6), "fp32", (1, 4), compile="jit")
    assert (
        compiled == [(1, True), (4, True)] and engine.info["passes"][-1]["name"] == "inductor_jit"
    )
    x = torch.randn(3, 6)
    assert rel_error(engine(x), mlp(x)) <= 1e-5
    folder = deploy.save(engine, tmp_path, "mlp", onnx=False)
    assert not (folder / "aoti").exists()
    with pytest.warns(UserWarning, match="built with compile='jit', without packages"):
        deploy.load(folder)
    with pytest.raises(ValueError, match="compile must be True, False, 'jit' or None"):
        deploy.optimize(mlp, torch.randn(4, 6), "fp32", (4,), compile="aot")
