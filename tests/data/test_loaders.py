"""DeviceLoader, StreamingLoader and make_loader against index bookkeeping and torch.randperm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, IterableDataset

from kiln.data import DeviceLoader, StreamingLoader, epoch_order, make_loader
from kiln.data import _make_loader as choose

N, BS = 103, 10


def _ids(n: int = N) -> torch.Tensor:
    return torch.arange(n)


def _device_loader(data, batch_size=BS, device=None, **kw):
    return DeviceLoader(data, batch_size, device=device, **kw)


def _streaming_loader(data, batch_size=BS, device=None, **kw):
    return StreamingLoader(data, batch_size, device=device, num_workers=0, **kw)


LOADERS = [_device_loader, _streaming_loader]


@pytest.fixture(params=LOADERS, ids=["device", "streaming"])
def loader_cls(request):
    return request.param


def _seen(loader, epoch=0, start_step=0) -> list[int]:
    return [i for batch in loader.epoch(epoch, start_step) for i in batch[1].tolist()]


def _data(n: int = N):
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3)
    return x, _ids(n)


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_sample_once_per_epoch(loader_cls, device, shuffle: bool) -> None:
    loader = loader_cls(_data(), device=device, shuffle=shuffle)
    assert len(loader) == 11 and loader.num_samples == N
    batches = list(loader.epoch(3))
    assert [len(b[1]) for b in batches] == [10] * 10 + [3]
    assert all(b[0].shape[1:] == (3,) and b[0].device.type == device.type for b in batches)
    seen = torch.cat([b[1] for b in batches]).cpu()
    assert sorted(seen.tolist()) == list(range(N))
    assert torch.equal(torch.cat([b[0] for b in batches])[:, 0].cpu(), seen.float())
    if not shuffle:
        assert seen.tolist() == list(range(N))


def test_order_is_randperm_of_seed_and_epoch(loader_cls) -> None:
    loader = loader_cls(_data(), shuffle=True, seed=7)
    for epoch in (0, 1, 5):
        oracle = torch.randperm(N, generator=torch.Generator().manual_seed(7 * 1_000_003 + epoch))
        assert _seen(loader, epoch) == oracle.tolist()
        assert torch.equal(epoch_order(N, 7, epoch, True), oracle)


def test_same_seed_and_epoch_same_order_otherwise_different(loader_cls) -> None:
    a = loader_cls(_data(), shuffle=True, seed=1)
    b = loader_cls(_data(), shuffle=True, seed=1)
    assert _seen(a, 4) == _seen(b, 4) == _seen(a, 4)
    assert _seen(a, 4) != _seen(a, 5)
    assert _seen(a, 4) != _seen(loader_cls(_data(), shuffle=True, seed=2), 4)


def test_drop_last(loader_cls) -> None:
    loader = loader_cls(_data(), shuffle=True, drop_last=True)
    assert len(loader) == 10
    batches = list(loader.epoch(0))
    assert len(batches) == 10 and all(len(b[1]) == BS for b in batches)
    seen = _seen(loader)
    assert len(set(seen)) == 100 and set(seen) <= set(range(N))


def test_drop_last_with_no_full_batch_is_an_error(loader_cls) -> None:
    with pytest.raises(ValueError, match="batch_size=200 > num_samples=103"):
        loader_cls(_data(), batch_size=200, drop_last=True)


@pytest.mark.parametrize("start_step", [0, 1, 7, 10, 11])
def test_resume_yields_the_tail_of_the_epoch(loader_cls, start_step: int) -> None:
    loader = loader_cls(_data(), shuffle=True, seed=3)
    full = list(loader.epoch(2))
    resumed = list(loader.epoch(2, start_step=start_step))
    assert len(resumed) == len(full) - start_step
    for a, b in zip(resumed, full[start_step:]):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(("epoch", "start_step"), [(0, 12), (0, -1), (-1, 0), (1.0, 0)])
def test_bad_epoch_or_start_step(loader_cls, epoch, start_step) -> None:
    loader = loader_cls(_data())
    with pytest.raises(ValueError, match="Received: "):
        loader.epoch(epoch, start_step)


@pytest.mark.parametrize("batch_size", [0, -4, 2.5, True, "8"])
def test_bad_batch_size_is_echoed(loader_cls, batch_size) -> None:
    with pytest.raises(ValueError, match=f"Received: {batch_size!r}"):
        loader_cls(_data(), batch_size=batch_size)


def test_nested_structure_is_preserved(loader_cls, device) -> None:
    n = 25
    img, meta = torch.rand(n, 1, 4, 4), np.arange(n * 2, dtype=np.int64).reshape(n, 2)
    y1, y2 = np.arange(n, dtype=np.float64), [torch.arange(n)]
    data = ({"img": img, "meta": meta}, (y1, y2), None)
    loader = loader_cls(data, batch_size=8, device=device, shuffle=True)
    for batch in loader.epoch(1):
        (inputs, (b1, b2), none) = batch
        assert isinstance(batch, tuple) and isinstance(b2, list) and none is None
        assert list(inputs) == ["img", "meta"]
        ids = b2[0].cpu()
        assert torch.equal(inputs["img"].cpu(), img[ids])
        assert torch.equal(inputs["meta"].cpu(), torch.from_numpy(meta)[ids])
        assert b1.dtype == torch.float32  # float64 numpy becomes float32
        assert torch.equal(b1.cpu(), ids.float())


def test_single_tensor_data(loader_cls) -> None:
    batches = list(loader_cls(torch.arange(5), batch_size=2).epoch(0))
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3], [4]]


def test_numpy_is_not_copied_on_cpu() -> None:
    x = np.zeros((4, 2), np.float32)
    loader = DeviceLoader(x, 4)
    x[0, 0] = 5.0  # visible through the loader: torch.from_numpy shares memory
    assert next(iter(loader.epoch(0)))[0, 0] == 5.0


def test_mismatched_lengths_name_each_leaf(loader_cls) -> None:
    data = ({"a": torch.zeros(10), "b": np.zeros(9)}, torch.zeros(10))
    with pytest.raises(ValueError) as info:
        loader_cls(data)
    message = str(info.value)
    assert "data[0]['a']: 10" in message and "data[0]['b']: 9" in message
    assert "data[1]: 10" in message


@pytest.mark.parametrize(
    ("data", "error", "fragment"),
    [
        ((), ValueError, "at least one tensor"),
        ({"x": None}, ValueError, "at least one tensor"),
        ((torch.zeros(0, 3), torch.zeros(0)), ValueError, "0 samples"),
        ((torch.zeros(3), "labels"), TypeError, "data[1] of type str"),
        ((torch.zeros(3), torch.tensor(1.0)), ValueError, "data[1], a scalar"),
        (np.array(["a", "b"], dtype=object), TypeError, "numpy dtype object"),
    ],
    ids=["empty", "only-none", "zero-samples", "string-leaf", "scalar-leaf", "object-array"],
)
def test_bad_data(loader_cls, data, error, fragment) -> None:
    with pytest.raises(error) as info:
        loader_cls(data)
    assert fragment in str(info.value)


class _Pairs(Dataset):
    """Sample i is (x_i, y_i) of the given tensors: a map-style Dataset oracle."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_streaming_dataset_matches_device_loader(num_workers: int) -> None:
    x, y = _data()
    reference = DeviceLoader((x, y), BS, shuffle=True, seed=11)
    streaming = StreamingLoader(_Pairs(x, y), BS, shuffle=True, seed=11, num_workers=num_workers)
    assert len(streaming) == len(reference)
    for epoch, start in ((0, 0), (1, 4), (0, 0)):
        got, want = list(streaming.epoch(epoch, start)), list(reference.epoch(epoch, start))
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert isinstance(a, tuple)  # the Dataset's tuple, not default_collate's list
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_streaming_tensors_match_device_loader() -> None:
    data = ({"x": _data()[0]}, _ids())
    a = StreamingLoader(data, BS, shuffle=True, seed=5, num_workers=1)
    b = DeviceLoader(data, BS, shuffle=True, seed=5)
    for got, want in zip(a.epoch(2), b.epoch(2), strict=True):
        assert torch.equal(got[0]["x"], want[0]["x"]) and torch.equal(got[1], want[1])


def test_streaming_rejects_iterable_and_inconsistent_datasets() -> None:
    class Stream(IterableDataset):
        def __iter__(self):
            yield from range(3)

    with pytest.raises(TypeError, match=r"map-style Dataset.*Received: Stream"):
        StreamingLoader(Stream(), 2)

    class Ragged(_Pairs):
        def __getitem__(self, i):
            return (self.x[i], int(self.y[i])) if i % 2 else {"x": self.x[i]}

    loader = StreamingLoader(Ragged(*_data(4)), 2, num_workers=0)
    with pytest.raises(ValueError, match="same structure"):
        list(loader.epoch(0))


def test_make_loader_choices(capsys) -> None:
    data = _data()
    assert isinstance(make_loader(data, BS), DeviceLoader)
    assert isinstance(make_loader(data, BS, resident=False, num_workers=0), StreamingLoader)
    assert isinstance(make_loader(_Pairs(*data), BS, num_workers=0), StreamingLoader)
    with pytest.raises(ValueError, match="resident=True needs tensors"):
        make_loader(_Pairs(*data), BS, resident=True)
    make_loader(data, BS, device="cpu", verbose=True)
    assert "DeviceLoader (2.0 KB of data, target cpu" in capsys.readouterr().err


def test_make_loader_cuda_rule_uses_half_the_free_memory(monkeypatch) -> None:
    x = np.zeros((1000, 250), np.float64)  # counted as float32: 1,000,000 bytes
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2_000_001, 8 * 10**9))
    assert choose._resident(x, cuda, None)[0] is True
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2_000_000, 8 * 10**9))
    fits, why = choose._resident(x, cuda, None)
    assert fits is False and "over half of 1.9 MB free" in why
    assert choose._resident(x, cuda, True)[0] is True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_order_does_not_depend_on_the_device() -> None:
    data = _data(1000)
    on_cpu = DeviceLoader(data, 64, shuffle=True, seed=9)
    on_gpu = DeviceLoader(data, 64, shuffle=True, seed=9, device="cuda")
    streamed = StreamingLoader(data, 64, shuffle=True, seed=9, device="cuda")
    for a, b, c in zip(on_cpu.epoch(3), on_gpu.epoch(3), streamed.epoch(3), strict=True):
        assert b[1].is_cuda and c[1].is_cuda
        assert torch.equal(a[1], b[1].cpu()) and torch.equal(a[1], c[1].cpu())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("shuffle", [False, True])
def test_gpu_device_loader_never_syncs_the_host(shuffle: bool) -> None:
    loader = DeviceLoader(_data(1000), 64, shuffle=shuffle, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronizing CUDA call raises
    try:
        batches = list(loader.epoch(1))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(1000))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("rank", [None, 1])
def test_index_batches_gather_the_batches_the_epoch_yields(shuffle, rank) -> None:
    # the rows of epoch_indices, gathered, are epoch's batches (nested data, a None leaf,
    # resumed mid-epoch, and one rank's share of a sharded loader)
    n = 47
    data = ({"img": torch.rand(n, 1, 4, 4)}, (torch.arange(n), None))
    shards = {} if rank is None else {"rank": rank, "world_size": 3}
    loader = DeviceLoader(data, 5, shuffle=shuffle, seed=4, **shards)
    for start in (0, 2):
        indices = list(loader.epoch_indices(3, start))
        batches = list(loader.epoch(3, start))
        assert len(indices) == len(batches) == len(loader) - start
        for idx, batch in zip(indices, batches, strict=True):
            assert idx.dtype == torch.int64
            gathered = loader.gather(idx)
            assert gathered[1][1] is None and torch.equal(gathered[1][0], batch[1][0])
            assert torch.equal(gathered[0]["img"], batch[0]["img"])
    with pytest.raises(ValueError, match="start_step must be"):
        next(loader.epoch_indices(0, len(loader) + 1))
