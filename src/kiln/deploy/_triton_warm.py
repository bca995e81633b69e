"""``python -m kiln.deploy._triton_warm``: compile batch-1 convolution kernels into Triton's
on-disk cache, without running them, for ``TritonConv``'s tuning.

The jobs come as one JSON list on stdin, each ``[C, H, W, N, kernel, stride, padding, has_bias,
has_z, relu, config fields, dtype]`` (``_triton_conv.warm``'s arguments). A job that does not
compile (shared memory, registers) is reported on stderr and skipped: the tuner meets the same
failure and moves on. Several of these processes compile side by side while the main process
waits; it then finds every kernel in the cache.
"""

from __future__ import annotations

import json
import sys

import torch

from kiln.deploy._triton_conv import Config, warm


def main() -> int:
    for job in json.load(sys.stdin):
        c, h, w, n, kernel, stride, padding, has_bias, has_z, relu, fields, dtype = job
        try:
            warm(c, h, w, n, kernel, stride, padding, has_bias, has_z, relu, Config(*fields),
                 getattr(torch, dtype))  # fmt: skip
        except Exception as e:  # a config this GPU cannot build: the tuner skips it too
            print(f"{job}: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
