"""``python -m kiln.deploy._aoti_worker PROGRAM OPTIONS_JSON PACKAGE``: one AOTInductor build.

Run by ``kiln.deploy._builds`` in a process of its own; exits non-zero with the traceback.
With ``KILN_BUILD_STACKS=<seconds>`` in the environment it prints every thread's stack that
often to its output (kept where ``KILN_BUILD_LOGS`` says): where a slow build spends its time.
``kiln.deploy`` does the same around the builds it runs in its own process
(``kiln.deploy._progress.watching``).
"""

from __future__ import annotations

import json
import sys

import torch

from kiln.deploy._check import strict_fp32
from kiln.deploy._fuse_conv import register_operators
from kiln.deploy._inductor_fixes import inductor_fixes
from kiln.deploy._progress import watching


def main(argv: list[str]) -> int:
    program_path, options, package = argv
    register_operators()  # programs with cuDNN's fused calls or kiln's Triton ones load with them
    program = torch.export.load(program_path)
    # fp32 programs compile without TF32, as in-process
    with watching(), strict_fp32(), torch.no_grad(), inductor_fixes():
        torch._inductor.aoti_compile_and_package(
            program, package_path=package, inductor_configs=json.loads(options)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
