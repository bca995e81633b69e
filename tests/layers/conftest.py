"""Layer-test fixtures: a test taking ``device`` runs on CPU and, when present, CUDA."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _exact_float32() -> Iterator[None]:
    """Seed; keep cuDNN/cuBLAS off TF32 so kiln and its oracle agree to float32 precision; use
    one CPU thread, since the tensors are tiny and a busy machine's thread pool can make CPU
    LSTMs several hundred times slower."""
    torch.manual_seed(0)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    threads = torch.get_num_threads()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_num_threads(1)
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    torch.set_num_threads(threads)
