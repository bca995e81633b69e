"""Data: loaders that feed the trainer, and datasets (``kiln.data.datasets``).

``make_loader(data, batch_size, shuffle=..., device=..., seed=...)`` picks a
``DeviceLoader`` (data moved to the device once, batched there) or a ``StreamingLoader``
(a torch DataLoader with pinned, non-blocking transfers). Both share one contract, in
``kiln.data._loader``: ``len(loader)`` steps, ``loader.epoch(e, start_step=k)`` batches,
and an order that is a pure function of ``(seed, epoch)``, so resuming is exact.
"""

from kiln.data import datasets
from kiln.data._device_loader import DeviceLoader
from kiln.data._loader import Loader, epoch_order
from kiln.data._make_loader import make_loader
from kiln.data._streaming_loader import StreamingLoader

__all__ = ["DeviceLoader", "Loader", "StreamingLoader", "datasets", "epoch_order", "make_loader"]
