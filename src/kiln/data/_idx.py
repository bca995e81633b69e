"""The IDX file format of MNIST and its relatives, raw or gzip-compressed.

Layout (big-endian): two zero bytes, a dtype code, the number of dimensions ``ndim``, then
``ndim`` uint32 sizes, then the data in C order. Compression is detected from the gzip magic
bytes, never from the file name.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder("="): code for code, dtype in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """An IDX file that is truncated, corrupt or not IDX at all."""


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a writable, native-endian numpy array.

    Raises ``IdxFormatError`` naming the path when the magic number, dtype code or sizes are
    invalid, when the data is shorter or longer than the header promises, or when the gzip
    stream is corrupt. A missing file raises ``FileNotFoundError``.
    """
    path = Path(path)
    blob = _decompressed(path)
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0:
        raise IdxFormatError(
            f"{path}: not an IDX file. Expected magic bytes 00 00 <dtype> <ndim>, "
            f"received {blob[:4].hex(' ') or 'an empty file'}. Check that this is an MNIST-style "
            f"IDX file (e.g. train-images-idx3-ubyte), raw or .gz."
        )
    code, ndim = blob[2], blob[3]
    if code not in _DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _DTYPES)
        raise IdxFormatError(f"{path}: unknown IDX dtype code 0x{code:02X}; known: {known}.")
    if ndim == 0 or len(blob) < 4 + 4 * ndim:
        raise IdxFormatError(
            f"{path}: header promises {ndim} dimension(s) (needs {4 + 4 * ndim} header "
            f"bytes), found {len(blob)} byte(s) in the whole file. The file is truncated or "
            f"corrupt; download it again."
        )
    shape = tuple(int(d) for d in np.frombuffer(blob, ">u4", count=ndim, offset=4))
    dtype = _DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(blob) - 4 - 4 * ndim
    if found != expected:
        what = "truncated" if found < expected else "longer than its header says (corrupt)"
        raise IdxFormatError(
            f"{path}: header promises shape {shape} of {dtype.newbyteorder('=').name} = "
            f"{expected:,} data bytes, found {found:,}. The file is {what}; download it again."
        )
    data = np.frombuffer(blob, dtype, offset=4 + 4 * ndim).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # a copy: writable and native-endian


def write_idx(path: str | os.PathLike[str], array: np.ndarray, *, compress: bool = False) -> None:
    """Write ``array`` as an IDX file, gzip-compressed if ``compress``."""
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim == 0:
        raise ValueError(
            f"IDX holds arrays of ndim >= 1 with dtype uint8, int8, int16, int32, float32 or "
            f"float64. Received: dtype={array.dtype}, ndim={array.ndim}."
        )
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    blob = header + np.ascontiguousarray(array, _DTYPES[code]).tobytes()
    Path(path).write_bytes(gzip.compress(blob, mtime=0) if compress else blob)


def _decompressed(path: Path) -> bytes:
    blob = path.read_bytes()
    if not blob.startswith(_GZIP_MAGIC):
        return blob
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as err:
        raise IdxFormatError(
            f"{path}: corrupt or truncated gzip stream ({type(err).__name__}: {err}). "
            f"Download the file again."
        ) from err
