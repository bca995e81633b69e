"""read_idx against arrays written by write_idx and against the format's byte layout."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from kiln.data._idx import write_idx
from kiln.data.datasets import IdxFormatError, read_idx

ARRAYS = {
    "uint8": np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    "int8": np.array([-128, -1, 0, 127], dtype=np.int8),
    "int16": np.array([[-30000, 1], [2, 30000]], dtype=np.int16),
    "int32": np.array([-(2**31), 7, 2**31 - 1], dtype=np.int32),
    "float32": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
    "float64": np.array([np.pi, -np.e, 1e300]),
}


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("name", ARRAYS)
def test_round_trip(tmp_path: Path, name: str, compress: bool) -> None:
    path = tmp_path / "a.idx"  # no .gz suffix: compression is detected from the bytes
    write_idx(path, ARRAYS[name], compress=compress)
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if compress else b"\x00\x00")
    out = read_idx(path)
    assert out.dtype == ARRAYS[name].dtype.newbyteorder("=")
    assert out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, ARRAYS[name])


def test_reads_hand_built_big_endian_file(tmp_path: Path) -> None:
    # the oracle: the IDX layout built by hand, independent of write_idx
    blob = bytes([0, 0, 0x0B, 2]) + struct.pack(">II", 2, 2) + struct.pack(">4h", 1, -2, 256, 3)
    (tmp_path / "h").write_bytes(blob)
    np.testing.assert_array_equal(read_idx(tmp_path / "h"), [[1, -2], [256, 3]])


def _raises(path: Path, *fragments: str) -> None:
    with pytest.raises(IdxFormatError) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_truncated_data(tmp_path: Path, compress: bool) -> None:
    blob = bytes([0, 0, 8, 3]) + struct.pack(">III", 5, 28, 28) + bytes(5 * 784 - 10)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(blob) if compress else blob)
    _raises(path, "(5, 28, 28)", "3,920", "3,910", "truncated")


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 3) + bytes(4))
    _raises(path, "shape (3,)", "found 4", "longer than its header")


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">I", 5))
    _raises(path, "3 dimension(s)", "found 8 byte(s)")


@pytest.mark.parametrize(
    ("blob", "fragment"),
    [
        (b"PK\x03\x04rest", "50 4b 03 04"),
        (b"\x00\x01\x08\x01", "00 01 08 01"),
        (b"", "an empty file"),
    ],
    ids=["zip", "bad-magic", "empty"],
)
def test_wrong_magic(tmp_path: Path, blob: bytes, fragment: str) -> None:
    path = tmp_path / "bad"
    path.write_bytes(blob)
    _raises(path, "not an IDX file", fragment)


def test_unknown_dtype_code(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(bytes([0, 0, 0x0A, 1]) + struct.pack(">I", 1) + b"\x00")
    _raises(path, "0x0A", "0x08")


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "t.gz"
    blob = gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 1000) + bytes(range(250)) * 4)
    path.write_bytes(blob[: len(blob) // 2])
    _raises(path, "corrupt or truncated gzip")


def test_corrupt_gzip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    payload = bytes([0, 0, 8, 1]) + struct.pack(">I", 4000) + rng.bytes(4000)
    blob = bytearray(gzip.compress(payload))
    blob[len(blob) // 2] ^= 0xFF  # flip one byte of the deflate stream
    path = tmp_path / "c.gz"
    path.write_bytes(bytes(blob))
    _raises(path, "corrupt or truncated gzip")


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Received: dtype=uint16"):
        write_idx(tmp_path / "x", np.zeros(3, np.uint16))
