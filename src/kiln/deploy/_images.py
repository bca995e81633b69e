"""Encoded images (JPEG, PNG, ...) to a uint8 NHWC batch for an engine built for images.

JPEGs for a CUDA engine decode on the GPU (``torchvision.io.decode_jpeg``) when torchvision is
installed; everything else decodes with Pillow on the CPU. Images are never resized: one of
another size is rejected, naming the size the model takes.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from kiln._extras import require
from kiln.deploy._codecs import expected
from kiln.deploy._engine import Engine


def takes_images(engine: Engine) -> bool:
    """Whether ``engine`` takes uint8 NHWC images with 1 or 3 channels."""
    shape = engine.input_shape
    return engine.input_dtype == torch.uint8 and len(shape) == 3 and shape[2] in (1, 3)


def decode_images(engine: Engine, blobs: list[bytes]) -> np.ndarray | torch.Tensor:
    """One batch of ``len(blobs)`` images; raises ValueError for any undecodable or misfit one."""
    if not takes_images(engine):
        raise ValueError(
            f"the model takes tensors {expected(engine)}, not images (uint8 "
            "NHWC with 1 or 3 channels): send them as application/octet-stream or JSON."
        )
    if not blobs:
        raise ValueError("the request holds no image: send one or more image files.")
    if engine.device.type == "cuda" and all(b[:2] == b"\xff\xd8" for b in blobs) and _gpu_ok():
        return _decode_jpegs_on_gpu(engine, blobs)
    return np.stack([_decode_pillow(engine, blob, i, len(blobs)) for i, blob in enumerate(blobs)])


def _decode_pillow(engine: Engine, blob: bytes, index: int, count: int) -> np.ndarray:
    image_module = require("PIL.Image", "serve")
    height, width, channels = engine.input_shape
    which = f"image {index + 1} of {count}" if count > 1 else "the image"
    try:
        image = image_module.open(io.BytesIO(blob))
        if image.size != (width, height):  # read from the header, before decoding
            raise _SizeError(
                f"the model takes {width}x{height} images (width x "
                f"height); {which} is {image.size[0]}x{image.size[1]}. Resize it "
                "on the client."
            )
        pixels = np.asarray(image.convert("RGB" if channels == 3 else "L"), dtype=np.uint8)
    except _SizeError:
        raise
    except Exception as error:  # Pillow raises many kinds for bad bytes
        raise ValueError(
            f"{which} could not be decoded ({len(blob)} bytes): {type(error).__name__}: {error}"
        ) from None
    return pixels.reshape(height, width, channels)


def _gpu_ok() -> bool:
    try:
        import torchvision.io  # noqa: F401
    except Exception:  # a torchvision that does not match torch fails to import
        return False
    return True


def _decode_jpegs_on_gpu(engine: Engine, blobs: list[bytes]) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg

    height, width, channels = engine.input_shape
    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    data = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob in blobs]
    try:
        images = decode_jpeg(data, mode=mode, device=engine.device)
    except RuntimeError as error:
        raise ValueError(f"a JPEG could not be decoded on {engine.device}: {error}") from None
    for i, image in enumerate(images):
        if tuple(image.shape[1:]) != (height, width):
            raise ValueError(
                f"the model takes {width}x{height} images (width x "
                f"height); image {i + 1} of {len(images)} is {image.shape[2]}x"
                f"{image.shape[1]}. Resize it on the client."
            )
    return torch.stack(images).permute(0, 2, 3, 1).contiguous()


class _SizeError(ValueError):
    pass
