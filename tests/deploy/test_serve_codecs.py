"""Request bodies to batches and outputs to bodies, checked against numpy and Pillow."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from kiln.deploy import eager_engine
from kiln.deploy._codecs import decode_binary, decode_json, decode_outputs, encode, to_numpy
from kiln.deploy._images import decode_images, takes_images


def _engine(shape: tuple[int, ...], dtype: torch.dtype):
    return eager_engine(torch.nn.Identity(), torch.zeros(1, *shape, dtype=dtype), (1,))


def _encoded(array: np.ndarray, kind: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(out, kind)
    return out.getvalue()


def test_binary_views_the_body_in_the_engine_dtype():
    engine = _engine((2, 3), torch.float16)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float16)
    body = bytearray(x.tobytes())
    for shape in (None, "4,2,3", "4x2x3"):
        batch = decode_binary(engine, body, shape, "float16")
        assert np.array_equal(batch, x) and np.shares_memory(batch, np.frombuffer(body, np.uint8))
    bf16 = _engine((2, 3), torch.bfloat16)  # numpy has no bfloat16: a torch view
    y = torch.randn(4, 2, 3).bfloat16()
    body = bytearray(y.view(torch.uint8).numpy().tobytes())
    assert torch.equal(decode_binary(bf16, body, None, None), y)


def test_json_nested_and_flat_forms_convert_to_the_engine_dtype():
    engine = _engine((3,), torch.uint8)
    nested = torch.as_tensor(decode_json(engine, b'{"inputs": [[0, 128, 255], [1.0, 2, 3]]}'))
    assert nested.dtype == torch.uint8 and nested.tolist() == [[0, 128, 255], [1, 2, 3]]
    flat = decode_json(engine, b'{"shape": [2, 3], "data": [0, 128, 255, 1, 2, 3]}')
    assert torch.equal(torch.as_tensor(flat), nested)
    with pytest.raises(ValueError, match=r"integers in \[0, 255\]. Received values from 0.5"):
        decode_json(engine, b'{"inputs": [[0.5, 1, 2]]}')
    with pytest.raises(ValueError, match=r"prod\(shape\) numbers. Received: shape \[2, 2\]"):
        decode_json(engine, b'{"shape": [2, 2], "data": [1, 2, 3]}')
    with pytest.raises(ValueError, match="must hold numbers only"):
        decode_json(engine, b'{"inputs": [["a", "b", "c"]]}')


@pytest.mark.parametrize("channels", [3, 1])
def test_png_round_trip_is_exact_and_jpeg_matches_pillow(channels):
    engine = _engine((5, 7, channels), torch.uint8)
    assert takes_images(engine)
    rng = np.random.default_rng(channels)
    images = rng.integers(0, 256, (2, 5, 7, channels), dtype=np.uint8)
    batch = decode_images(engine, [_encoded(image, "PNG") for image in images])
    assert batch.dtype == np.uint8 and np.array_equal(batch, images)
    jpeg = _encoded(images[0], "JPEG")
    oracle = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB" if channels == 3 else "L"))
    decoded = decode_images(engine, [jpeg])[0]
    assert np.array_equal(decoded.reshape(oracle.shape), oracle)


def test_image_errors_name_the_expected_size_and_the_culprit():
    engine = _engine((5, 7, 3), torch.uint8)
    good = _encoded(np.zeros((5, 7, 3), np.uint8), "PNG")
    wide = _encoded(np.zeros((5, 9, 3), np.uint8), "PNG")
    with pytest.raises(ValueError, match=r"takes 7x5 images .* image 2 of 2 is 9x5"):
        decode_images(engine, [good, wide])
    with pytest.raises(ValueError, match=r"image 1 of 2 could not be decoded .*7 bytes"):
        decode_images(engine, [b"garbage", good])
    with pytest.raises(ValueError, match="not images"):
        decode_images(_engine((5, 7, 3), torch.float32), [good])


@pytest.mark.parametrize(
    ("dtype", "sent"),
    [(torch.float32, "float32"), (torch.bfloat16, "float32"), (torch.int64, "int64"),
     (torch.bool, "bool")],
)  # fmt: skip
def test_outputs_round_trip_through_binary_and_json(dtype, sent):
    outputs = (torch.randn(3, 4) * 100).to(dtype)
    array = to_numpy(outputs)  # what the batcher hands each request (bfloat16 as float32)
    assert torch.equal(torch.from_numpy(array).to(dtype), outputs)
    body, media_type, headers = encode(array, "application/octet-stream", "m")
    assert media_type == "application/octet-stream"
    assert headers == {"X-Shape": "3,4", "X-Dtype": sent}
    assert np.array_equal(decode_outputs(body, headers["X-Shape"], headers["X-Dtype"]), array)
    body, media_type, _ = encode(array, "*/*", "m")
    document = json.loads(body)
    assert media_type == "application/json" and document["shape"] == [3, 4]
    assert document["dtype"] == sent and np.array_equal(np.array(document["outputs"]), array)
