"""Pick the right loader for the data and the device."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from kiln.data._device_loader import DeviceLoader
from kiln.data._loader import Loader
from kiln.data._streaming_loader import StreamingLoader
from kiln.data._tree import data_nbytes


def make_loader(
    data: Any,
    batch_size: int,
    *,
    shuffle: bool = False,
    device: torch.device | str | None = None,
    seed: int = 0,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    resident: bool | None = None,
    num_workers: int | None = None,
    verbose: bool = False,
) -> Loader:
    """A ``DeviceLoader`` or ``StreamingLoader`` for ``data`` (see ``kiln.data._loader``).

    - a ``torch.utils.data.Dataset`` is streamed;
    - tensors/arrays (a pytree of them) live on the device (``DeviceLoader``) when the device
      is not CUDA, or when their bytes are under half of the GPU's free memory; otherwise they
      are streamed from host memory.

    ``rank``/``world_size`` shard the batches for a distributed run (see ``Loader``).
    ``resident=True/False`` forces the choice for tensors/arrays. ``verbose`` prints the choice
    and the reason. ``num_workers`` applies to streaming only.
    """
    device = torch.device(device if device is not None else "cpu")
    if isinstance(data, Dataset):
        if resident:
            raise ValueError(
                f"resident=True needs tensors or numpy arrays; a Dataset is read sample by "
                f"sample and streamed. Received: {type(data).__name__}. Pass resident=None, "
                f"or pass the tensors themselves."
            )
        use_device, why = False, f"a {type(data).__name__} (Dataset) is read sample by sample"
    else:
        use_device, why = _resident(data, device, resident)
    common: dict[str, Any] = dict(
        shuffle=shuffle,
        device=device,
        seed=seed,
        drop_last=drop_last,
        rank=rank,
        world_size=world_size,
    )
    if use_device:
        loader: Loader = DeviceLoader(data, batch_size, **common)
    else:
        loader = StreamingLoader(data, batch_size, num_workers=num_workers, **common)
    if verbose:
        from rich.console import Console

        Console(stderr=True).print(f"[bold]kiln.data[/]: {type(loader).__name__} ({why})")
    return loader


def _resident(data: Any, device: torch.device, resident: bool | None) -> tuple[bool, str]:
    nbytes = data_nbytes(data)
    if resident is not None:
        return resident, f"forced with resident={resident}, {_size(nbytes)} of data"
    if device.type != "cuda":
        return True, f"{_size(nbytes)} of data, target {device}: batches are cut in place"
    free, _ = torch.cuda.mem_get_info(device)
    fits = nbytes < free / 2
    relation = "under" if fits else "over"
    return fits, f"{_size(nbytes)} of data is {relation} half of {_size(free)} free on {device}"


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    raise AssertionError("unreachable")
