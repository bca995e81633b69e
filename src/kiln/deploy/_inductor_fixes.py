"""Two costs torch 2.11's Inductor adds to kiln's builds, and ``inductor_fixes()``, which
removes them for the builds it wraps (newer torch fixed both; the context then changes
nothing that matters).

- **The CPU ISA probe.** Every process's first C++ build (an AOTInductor package, CUDA or
  not) checks each vector ISA the CPU lists by compiling a small library and loading it in a
  child Python that first runs ``import torch``. On the H200 hosts (2026-11-28) a batch-1
  ResNet-50 package built in a fresh worker in 44-47 s with it, 25-27 s without the import
  (the probe's libraries themselves are compiled once per machine, then cached on disk).
  Here the child finds torch's libraries through
  ``LD_LIBRARY_PATH`` instead of importing torch, as torch itself does since 2.12: the same
  check, without the import. (Preloading ``libtorch_cpu.so`` alone was not enough for torch
  2.11's probe library: every ISA failed the check, 2026-11-28.)
- **Implicit fallbacks' log line.** An operator without a lowering (kiln's Triton
  convolution, cuDNN's fused calls) gets a fallback, and torch 2.11 formats a log message
  for it whether or not the log is on, printing each input's whole IR tree: a ResNet-50
  batch-1 compile was still in it 30 s in, then crashed the process (2026-11-28). Inside the
  context the message names each input instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


@contextmanager
def inductor_fixes() -> Iterator[None]:
    """Inductor builds inside it skip the two costs in this module's docstring. On torch
    2.11 it puts torch's library folder first in ``LD_LIBRARY_PATH`` for the processes
    started inside it (the probe's child, the compilers); all is restored on exit."""
    from torch._inductor import cpu_vec_isa, exc

    saved_probe = cpu_vec_isa.VecISA._avx_py_load
    saved_str = exc.OperatorIssue.__dict__["operator_str"]
    saved_path = os.environ.get("LD_LIBRARY_PATH")
    script = probe_script(saved_probe)
    if script != saved_probe:  # the child finds torch's libraries without importing torch
        os.environ["LD_LIBRARY_PATH"] = library_path(saved_path)
        cpu_vec_isa.VecISA._avx_py_load = script
    exc.OperatorIssue.operator_str = staticmethod(operator_str)  # type: ignore[method-assign]
    try:
        yield
    finally:
        cpu_vec_isa.VecISA._avx_py_load = saved_probe
        exc.OperatorIssue.operator_str = saved_str  # type: ignore[method-assign]
        if saved_path is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = saved_path


TORCH_LIB = Path(torch.__file__).parent / "lib"


def probe_script(script: str) -> str:
    """The ISA probe's child script without ``import torch`` (Linux, with
    ``library_path()`` as the child's ``LD_LIBRARY_PATH``); elsewhere, or where torch already
    skips the import, ``script`` as it is."""
    if sys.platform != "linux" or "import torch\n" not in script or not TORCH_LIB.is_dir():
        return script
    return 'from ctypes import cdll\ncdll.LoadLibrary("__lib_path__")\n'


def library_path(current: str | None) -> str:
    """``LD_LIBRARY_PATH`` with torch's library folder first."""
    return os.pathsep.join([str(TORCH_LIB), *([current] if current else [])])


def operator_str(target: Any, args: Any, kwargs: dict[str, Any]) -> str:
    """``OperatorIssue.operator_str`` naming each input rather than printing its IR tree."""
    lines = [f"target: {target}"] + [f"args[{i}]: {brief(a)}" for i, a in enumerate(args)]
    if kwargs:
        lines.append("kwargs: " + ", ".join(f"{k}={brief(v)}" for k, v in kwargs.items()))
    return "\n".join("  " + line for line in lines)


def brief(value: Any) -> str:
    """``value`` for a log line: IR nodes by name, containers item by item, the rest as repr."""
    if isinstance(value, (list, tuple)):
        inner = ", ".join(brief(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    if type(value).__module__.startswith("torch._inductor"):  # an IR node: name it
        try:
            return f"{type(value).__name__}({value.get_name()})"
        except Exception:  # not every node has a name (views, constants)
            return type(value).__name__
    return repr(value)
