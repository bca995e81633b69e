"""A model repository on disk, Triton-style: ``repository/<name>/<version>/``.

A version folder holds:

- ``config.json``: input shape and dtype, batch sizes, precision, image preprocessing, every
  pass with its measured error, the build's seconds per phase, and what the packages were
  built for (device, torch version);
- ``model.kiln`` (a kiln model's one-file save) or ``model.pt2`` (the exported program, for
  any other module): the original model, from which an engine can always be rebuilt;
- ``aoti/batch_<N>.pt2``: AOTInductor packages per batch size, when the engine was compiled;
- ``model.onnx``: the model in fp32, validated in onnxruntime on the CPU (error in config.json);
- ``example.safetensors``: a few inputs with the original model's and the engine's outputs.

``load`` uses the packages when the device kind, GPU generation and torch version match, and
checks that they reproduce the stored outputs; otherwise it rebuilds the engine from the
original model (with a warning: that compiles). Versions are written to a hidden folder and
renamed into place, so a reader never sees half a version.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.export import ExportedProgram
from torch.export.passes import move_to_device_pass

from kiln._version import __version__
from kiln.deploy._aoti import load_package
from kiln.deploy._check import check, error, strict_fp32
from kiln.deploy._cuda_graph import GraphRunner, Runner
from kiln.deploy._engine import Engine
from kiln.deploy._image_input import ImageModel, Normalize
from kiln.deploy._onnx import export_onnx, run_onnx
from kiln.deploy._optimize import RUNNER_TOLERANCE, Source, optimize, resolve_device
from kiln.deploy._passes import copy_module

FORMAT = "kiln.deploy/1"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ONNX_TOLERANCE = 1e-4


def save(
    engine: Engine,
    repository: str | os.PathLike[str],
    name: str,
    version: int | None = None,
    *,
    onnx: bool = True,
) -> Path:
    """Write ``engine`` (from ``kiln.deploy.optimize``) as ``repository/name/version``.

    ``version``: the next integer when None. Returns the version folder. ``onnx=False`` skips
    ``model.onnx`` (it needs the ``deploy`` extra: onnx, onnxscript, onnxruntime).
    """
    source: Source | None = engine.source
    if source is None:
        raise ValueError(
            f"save() takes an engine built by kiln.deploy.optimize (it keeps the original model "
            f"and its packages). Received: engine {engine.name!r} without a source (an "
            f"eager_engine, or one loaded from packages: copy its version folder instead)."
        )
    if not NAME.match(name):
        raise ValueError(f"name must be letters, digits, '_', '.' or '-', starting with a letter "
                         f"or digit (a folder name). Received: name={name!r}.")  # fmt: skip
    folder = Path(repository) / name
    folder.mkdir(parents=True, exist_ok=True)
    version = _new_version(folder, version)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=folder))
    try:
        _write(engine, source, tmp, name, version, onnx)
        os.rename(tmp, folder / str(version))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder / str(version)


def load(path: str | os.PathLike[str], device: str | torch.device | None = None) -> Engine:
    """The engine stored at ``path``: a version folder, or a model folder (its latest version).

    ``device``: default, the device it was built for when present here, else the CPU.
    """
    folder = _version_folder(Path(path))
    config = json.loads((folder / "config.json").read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{folder / 'config.json'} is not a kiln.deploy config (format "
                         f"{FORMAT!r}). Received: format={config.get('format')!r}.")  # fmt: skip
    target = _default_device(config) if device is None else resolve_device(torch.device(device))
    mismatch = _mismatch(config, target)
    if config["files"]["packages"] and mismatch is None:
        engine = _from_packages(folder, config, target)
    else:
        if config["options"]["compile"]:
            why = (f"its AOTInductor packages were built for {mismatch}" if mismatch
                   else "it was built with compile='jit', without packages"
                   if config["options"]["compile"] == "jit"
                   else "it holds no AOTInductor packages (they could not be built)")  # fmt: skip
            how = "compiling: minutes" if target.type == "cuda" else "eager, not compiled"
            warnings.warn(
                f"{folder}: {why}; rebuilding the engine from the original model on {target} "
                f"({how}). Run `kiln deploy` on this machine to store packages for it.",
                stacklevel=2,
            )
        engine = _rebuild(folder, config, target)
    engine.name = config["name"]
    return engine


def load_repository(
    path: str | os.PathLike[str], device: str | torch.device | None = None
) -> dict[str, Engine]:
    """Every model in the repository at ``path``, at its latest version, by name."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"No model repository at {str(root)!r}: expected a folder of <name>/<version>/ "
            f"folders (kiln.deploy.save or `kiln deploy` writes them)."
        )
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and _versions(p))
    return {name: load(root / name, device) for name in names}


# ---- writing -------------------------------------------------------------------------------


def _write(engine: Engine, source: Source, folder: Path, name: str, version: int,
           onnx: bool) -> None:  # fmt: skip
    files: dict[str, Any] = {"model": _save_model(source, folder)}
    tensors = {"example": source.example, "inputs": source.inputs,
               "reference": source.reference, "outputs": source.outputs}  # fmt: skip
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "example.safetensors"))
    files["example"] = "example.safetensors"
    files["packages"] = {}
    for size, package in sorted(source.packages.items()):
        (folder / "aoti").mkdir(exist_ok=True)
        shutil.copyfile(package, folder / "aoti" / f"batch_{size}.pt2")
        files["packages"][str(size)] = f"aoti/batch_{size}.pt2"
    onnx_info = _save_onnx(source, engine, folder) if onnx else None
    if onnx_info:
        files["onnx"] = "model.onnx"
    config = {
        "format": FORMAT, "name": name, "version": version,
        "input": {"shape": list(engine.input_shape), "dtype": _dtype_name(engine.input_dtype)},
        "model_input": {"shape": list(source.example.shape[1:]),
                        "dtype": _dtype_name(source.example.dtype)},
        "output": {"shape": list(source.outputs.shape[1:]),
                   "dtype": _dtype_name(source.outputs.dtype)},
        "batch_sizes": list(engine.batch_sizes), "precision": source.options["precision"],
        "image": source.options["image"], "options": source.options,
        "passes": engine.info.get("passes", []), "skipped": engine.info.get("skipped", []),
        "rel_error": engine.info.get("rel_error"),
        "max_abs_error": engine.info.get("max_abs_error"), "onnx": onnx_info,
        "timings": engine.info.get("timings"),  # optimize's seconds per phase
        "built_for": _platform(engine.device), "files": files,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def _save_model(source: Source, folder: Path) -> str:
    """The original model: kiln's one-file format when it has one, else the exported program."""
    if hasattr(source.model, "get_config"):
        try:
            source.model.save(str(folder / "model.kiln"))  # type: ignore[operator]
            return "model.kiln"
        except (TypeError, ValueError, NotImplementedError):
            pass  # a subclassed kiln model: its architecture is code, so store the program
    torch.export.save(_on_cpu(source.program), str(folder / "model.pt2"))
    return "model.pt2"


def _on_cpu(program: ExportedProgram) -> ExportedProgram:
    """The program with its weights and any device arguments on the CPU."""
    if all(t.device.type == "cpu" for t in program.state_dict.values()):
        return program
    return move_to_device_pass(program, "cpu")


def _save_onnx(source: Source, engine: Engine, folder: Path) -> dict[str, Any]:
    module = copy_module(_on_cpu(source.program).module())
    if source.options["image"] is not None:
        image = source.options["image"]
        module = ImageModel(Normalize(image["mean"], image["std"]), module)
    path = folder / "model.onnx"
    export_onnx(module, source.inputs, path)
    max_abs, rel = error(run_onnx(path, source.inputs), source.reference)
    if not rel <= ONNX_TOLERANCE:
        raise ValueError(
            f"model.onnx does not reproduce the model in onnxruntime: relative error must be "
            f"<= {ONNX_TOLERANCE:g}. Received: {rel:.3g} (max abs {max_abs:.3g}). Save without "
            f"it with onnx=False."
        )
    return {"file": "model.onnx", "runtime": "onnxruntime (CPU)", "max_abs": max_abs, "rel": rel}


def _platform(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": device.type, "torch": torch.__version__,
                            "kiln": __version__, "machine": platform.machine()}  # fmt: skip
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["capability"] = list(torch.cuda.get_device_capability(device))
    else:
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


# ---- reading -------------------------------------------------------------------------------


def _mismatch(config: dict[str, Any], device: torch.device) -> str | None:
    """What differs between the packages' platform and this one (None: they can be used)."""
    built, here = config["built_for"], _platform(device)
    keys = ["device", "torch", "machine"]
    keys += ["capability"] if device.type == "cuda" else ["cpu_capability"]
    diffs = [f"{k} {built.get(k)!r} (here: {here.get(k)!r})" for k in keys
             if built.get(k) != here.get(k)]  # fmt: skip
    return ", ".join(diffs) or None


def _from_packages(folder: Path, config: dict[str, Any], device: torch.device) -> Engine:
    started = time.perf_counter()
    shape, dtype = tuple(config["input"]["shape"]), getattr(torch, config["input"]["dtype"])
    runners: dict[int, Runner] = {}
    pool = None
    with strict_fp32(benchmark=True), torch.no_grad():
        for size_key, file in config["files"]["packages"].items():
            size = int(size_key)
            run = load_package(folder / file, device)
            if device.type == "cuda" and config["options"]["cuda_graphs"]:
                zeros = torch.zeros((size, *shape), dtype=dtype, device=device)
                run = graphed = GraphRunner(run, zeros, pool)
                pool = graphed.pool
            runners[size] = run
    info = {k: config[k] for k in ("precision", "image", "passes", "max_abs_error", "rel_error")}
    cuda_graphs = device.type == "cuda" and config["options"]["cuda_graphs"]
    info.update(device=str(device), compiled=True, source=str(folder), cuda_graphs=cuda_graphs)
    engine = Engine(runners, shape, dtype, device, info=info)
    _check_reproduces(engine, folder, config)
    info["load_s"] = round(time.perf_counter() - started, 4)
    return engine


def _check_reproduces(engine: Engine, folder: Path, config: dict[str, Any]) -> None:
    """The packages give the outputs stored at build time (same kernels: nearly exact)."""
    stored = load_file(str(folder / config["files"]["example"]))
    with strict_fp32():
        outputs = engine(stored["inputs"].to(engine.device))
    tolerance = RUNNER_TOLERANCE[config["precision"]]
    try:
        check(f"packages in {folder}", outputs.cpu(), stored["outputs"], tolerance)
    except ValueError as e:
        raise ValueError(f"{e} The packages do not reproduce the outputs they were built with: "
                         f"rebuild them with `kiln deploy` on this machine.") from e  # fmt: skip


def _rebuild(folder: Path, config: dict[str, Any], device: torch.device) -> Engine:
    files, options = config["files"], config["options"]
    if files["model"] == "model.kiln":
        from kiln.model import load_model

        model = load_model(folder / "model.kiln", compile=False)
    else:
        model = torch.export.load(str(folder / "model.pt2")).module()
    example = load_file(str(folder / files["example"]))["example"]
    compile = options["compile"] and device.type == "cuda"
    return optimize(
        model, example.to(device), config["precision"], config["batch_sizes"], device,
        options["image"], compile=compile, autotune=options["autotune"],
        tolerance=options["tolerance"], fold=options["fold"], fuse=options.get("fuse", True),
        cuda_graphs=options["cuda_graphs"],
        jobs=options.get("jobs"), inductor=options.get("inductor"),
    )  # fmt: skip


def _default_device(config: dict[str, Any]) -> torch.device:
    if config["built_for"]["device"] == "cuda" and torch.cuda.is_available():
        return resolve_device(torch.device("cuda"))
    return torch.device("cpu")


def _versions(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.iterdir()
                  if p.name.isdigit() and (p / "config.json").is_file())  # fmt: skip


def _version_folder(path: Path) -> Path:
    if (path / "config.json").is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(
            f"No model at {str(path)!r}: expected a model folder (<repository>/<name>) or a "
            f"version folder (<repository>/<name>/<version>) with a config.json."
        )
    versions = _versions(path)
    if not versions:
        raise FileNotFoundError(
            f"No version in {str(path)!r}: expected numbered folders with a config.json "
            f"(kiln.deploy.save or `kiln deploy` writes them). Found: "
            f"{sorted(p.name for p in path.iterdir())[:10]}."
        )
    return path / str(versions[-1])


def _new_version(folder: Path, version: int | None) -> int:
    existing = _versions(folder)
    if version is None:
        return existing[-1] + 1 if existing else 1
    if not isinstance(version, int) or version < 1 or (folder / str(version)).exists():
        raise ValueError(
            f"version must be a positive integer not yet in {str(folder)!r} (it holds "
            f"{existing or 'none'}). Received: version={version!r}."
        )
    return version


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
