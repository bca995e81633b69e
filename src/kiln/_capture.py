"""What every CUDA graph capture in kiln needs, shared by training (``kiln.train``) and
inference (``kiln.deploy``) without either importing the other."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def no_garbage_collection() -> Iterator[None]:
    """Collect garbage now, and none while the block runs (a graph capture).

    torch no longer collects before a capture (``torch.compiler.config.force_cudagraph_gc``), so
    Python's collector can run in the middle of one and destroy an earlier run's CUDA graphs
    and memory pool, freeing device memory: a call a capture forbids, which ends it with
    "operation failed due to a previous error during capture". Seen in tune trials that ran
    one after another in a worker process, a pruned trial's trainer held in a reference cycle.
    """
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
