"""The inference server over a real uvicorn server on a free port: answers match the model,
concurrent requests share a batch, a full queue answers 429, bad input 400, /metrics parses."""

from __future__ import annotations

import copy
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from kiln.deploy import eager_engine, inference_app
from kiln.deploy._codecs import decode_outputs
from kiln.deploy._serve import serving

BINARY = {"content-type": "application/octet-stream", "accept": "application/octet-stream"}


class Images(torch.nn.Module):
    """Takes uint8 NHWC images (as an engine built for images does) and returns their pixels
    as floats, so a test reads back exactly what the server decoded."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).float()


class Gated(torch.nn.Module):
    """A model whose first call waits for a gate, and that records every batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        self.gate, self.sizes = threading.Event(), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        if len(self.sizes) == 1:
            assert self.gate.wait(30), "the test never opened the gate"
        if (x[:, 0] == -999).any():
            raise RuntimeError("sample marked -999 is poison")
        return self.linear(x)


@pytest.fixture
def linear() -> torch.nn.Module:
    return torch.nn.Linear(4, 3).eval()


@pytest.fixture
def url(linear, device):
    """A server of two engines on ``device`` (CUDA engines stage batches in pinned memory)."""
    images = torch.zeros(1, 6, 8, 3, dtype=torch.uint8, device=device)
    engines = {
        "linear": eager_engine(copy.deepcopy(linear).to(device), torch.zeros(1, 4, device=device),
                               (1, 2, 4, 8)),
        "pixels": eager_engine(Images(), images, (1, 4)),
    }  # fmt: skip
    with serving(inference_app(engines, max_delay_ms=0.5)) as base:
        yield base


def _metrics(base: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{base}/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _png(array: np.ndarray, kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, kind)
    return out.getvalue()


def test_models_and_health(url):
    assert httpx.get(f"{url}/health").json() == {"status": "live"}
    assert httpx.get(f"{url}/health/ready").json() == {"status": "ready",
                                                        "models": ["linear", "pixels"]}  # fmt: skip
    models = {m["name"]: m for m in httpx.get(f"{url}/v1/models").json()["models"]}
    assert models["linear"]["input"] == {"shape": [4], "dtype": "float32", "layout": None}
    assert models["linear"]["batch_sizes"] == [1, 2, 4, 8]
    pixels = httpx.get(f"{url}/v1/models/pixels").json()
    assert pixels["input"] == {"shape": [6, 8, 3], "dtype": "uint8", "layout": "NHWC"}
    assert "image/png" in pixels["content_types"]
    for missing in (httpx.get(f"{url}/v1/models/nope"),
                    httpx.post(f"{url}/v1/models/nope/infer", json={"inputs": [[0]]})):  # fmt: skip
        assert missing.status_code == 404 and "['linear', 'pixels']" in missing.json()["error"]


def test_json_and_binary_answers_match_the_model(url, linear):
    x = torch.randn(5, 4)
    with torch.no_grad():
        expected = linear(x)
    answer = httpx.post(f"{url}/v1/models/linear/infer", json={"inputs": x.tolist()}).json()
    assert answer["shape"] == [5, 3] and answer["dtype"] == "float32"
    torch.testing.assert_close(torch.tensor(answer["outputs"]), expected)
    flat = {"shape": [5, 4], "data": x.flatten().tolist()}
    answer = httpx.post(f"{url}/v1/models/linear/infer", json=flat).json()
    torch.testing.assert_close(torch.tensor(answer["outputs"]), expected)
    for query in ("", "?shape=5,4"):
        reply = httpx.post(f"{url}/v1/models/linear/infer{query}", content=x.numpy().tobytes(),
                           headers=BINARY)  # fmt: skip
        assert reply.headers["content-type"] == "application/octet-stream"
        got = decode_outputs(reply.content, reply.headers["x-shape"], reply.headers["x-dtype"])
        torch.testing.assert_close(torch.tensor(got), expected)


def test_a_chunked_body_without_content_length(url, linear):
    x = torch.randn(3, 4)
    data = x.numpy().tobytes()

    def chunks():
        yield data[:5]
        yield data[5:]

    reply = httpx.post(f"{url}/v1/models/linear/infer", content=chunks(), headers=BINARY)
    assert reply.status_code == 200 and "content-length" not in reply.request.headers
    got = decode_outputs(reply.content, reply.headers["x-shape"], reply.headers["x-dtype"])
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(got), linear(x))


def test_uint8_images_raw_png_jpeg_and_multipart(url):
    rng = np.random.default_rng(0)
    first, second = (rng.integers(0, 256, (6, 8, 3), dtype=np.uint8) for _ in range(2))
    infer = f"{url}/v1/models/pixels/infer"
    raw = httpx.post(infer, content=np.stack([first, second]).tobytes(),
                     headers={**BINARY, "x-shape": "2,6,8,3"})  # fmt: skip
    rows = decode_outputs(raw.content, raw.headers["x-shape"], raw.headers["x-dtype"])
    assert np.array_equal(rows.reshape(2, 6, 8, 3), np.stack([first, second]))
    png = httpx.post(infer, content=_png(first), headers={"content-type": "image/png"}).json()
    assert np.array_equal(np.array(png["outputs"]).reshape(6, 8, 3), first)  # lossless, exact
    jpeg = _png(first, "JPEG")
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))  # Pillow is the oracle
    answer = httpx.post(infer, content=jpeg, headers={"content-type": "image/jpeg"}).json()
    assert np.array_equal(np.array(answer["outputs"]).reshape(6, 8, 3), decoded)
    files = [
        ("a", ("a.png", _png(first), "image/png")),
        ("b", ("b.png", _png(second), "image/png")),
    ]
    both = httpx.post(infer, files=files).json()
    assert np.array_equal(np.array(both["outputs"]).reshape(2, 6, 8, 3), np.stack([first, second]))


@pytest.mark.parametrize(
    ("model", "body", "headers", "message"),
    [
        ("linear", b"{not json", {"content-type": "application/json"}, "not valid JSON"),
        (
            "linear",
            b'{"inputs": [[1, 2, 3]]}',
            {},
            "takes inputs of shape (N, 4) float32. Received: shape [1, 3]",
        ),
        ("linear", b'{"inputs": [[1, 2], [3]]}', {}, "rectangular nested list"),
        ("linear", b'{"values": [1]}', {}, "Received: ['values']"),
        ("linear", b"\0" * 20, BINARY, "samples of 16 bytes each; the body has 20 bytes"),
        (
            "linear",
            b"\0" * 16,
            {**BINARY, "x-shape": "1,5"},
            "takes shape (N, 4) float32. Received: shape '1,5'",
        ),
        ("linear", b"\0" * 16, {**BINARY, "x-dtype": "float16"}, "Received: dtype 'float16'"),
        ("pixels", b'{"inputs": [[[[300, 0, 0]]]]}', {}, "shape (N, 6, 8, 3) uint8"),
        (
            "pixels",
            _png(np.zeros((5, 8, 3), np.uint8)),
            {"content-type": "image/png"},
            "takes 8x6 images (width x height); the image is 8x5",
        ),
        ("pixels", b"\x89PNG garbage", {"content-type": "image/png"}, "could not be decoded"),
        (
            "linear",
            _png(np.zeros((6, 8, 3), np.uint8)),
            {"content-type": "image/png"},
            "not images",
        ),
    ],
)
def test_malformed_input_is_a_400_that_says_what_was_expected(url, model, body, headers, message):
    reply = httpx.post(f"{url}/v1/models/{model}/infer", content=body, headers=headers)
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"]


def test_uint8_json_out_of_range_and_unsupported_media_type(url):
    pixel = np.full((1, 6, 8, 3), 300).tolist()
    reply = httpx.post(f"{url}/v1/models/pixels/infer", json={"inputs": pixel})
    assert reply.status_code == 400 and "integers in [0, 255]" in reply.json()["error"]
    reply = httpx.post(f"{url}/v1/models/linear/infer", content=b"x",
                       headers={"content-type": "text/csv"})  # fmt: skip
    assert reply.status_code == 415 and "'text/csv'" in reply.json()["error"]


def test_concurrent_requests_share_one_batch_and_metrics_parse():
    model = Gated().eval()
    engine = eager_engine(model, torch.zeros(1, 4), (1, 8))
    # take-all: no warm-up call meets the gate, and no timed choice splits the eight
    app = inference_app({"gated": engine}, max_delay_ms=0, preferred_sizes=False)
    with (
        serving(app) as url,
        ThreadPoolExecutor(9) as pool,
    ):
        infer = f"{url}/v1/models/gated/infer"
        inputs = torch.randn(9, 4)
        replies = [pool.submit(httpx.post, infer, json={"inputs": inputs[:1].tolist()})]
        _wait(lambda: model.sizes == [1])  # the worker is busy with the first request
        replies += [pool.submit(httpx.post, infer, json={"inputs": inputs[i : i + 1].tolist()})
                    for i in range(1, 9)]  # fmt: skip
        _wait(lambda: _metrics(url)[("kiln_serve_queue_samples", (("model", "gated"),))] == 8)
        model.gate.set()
        outputs = torch.tensor([r.result().json()["outputs"][0] for r in replies])
        assert model.sizes == [1, 8]  # eight waiting requests, one engine call
        with torch.no_grad():
            torch.testing.assert_close(outputs, model.linear(inputs))
        metrics = _metrics(url)
    labels = (("model", "gated"),)
    assert metrics[("kiln_serve_batch_size_count", labels)] == 2
    assert metrics[("kiln_serve_batch_size_sum", labels)] == 9
    assert metrics[("kiln_serve_batch_size_bucket", (("le", "4"), ("model", "gated")))] == 1
    assert metrics[("kiln_serve_requests_total", (("model", "gated"), ("status", "200")))] == 9
    assert metrics[("kiln_serve_request_seconds_count", labels)] == 9
    assert metrics[("kiln_serve_queue_wait_seconds_count", labels)] == 9
    assert metrics[("kiln_serve_engine_seconds_count", labels)] == 2


def test_a_full_queue_answers_429_at_once_and_the_engine_error_500_only_its_batch():
    model = Gated().eval()
    engine = eager_engine(model, torch.zeros(1, 4), (1, 8))
    app = inference_app({"gated": engine}, max_delay_ms=0, max_queue=4, preferred_sizes=False)
    with serving(app) as url, ThreadPoolExecutor(3) as pool:
        infer = f"{url}/v1/models/gated/infer"
        first = pool.submit(httpx.post, infer, json={"inputs": [[1.0] * 4]})
        _wait(lambda: model.sizes == [1])
        poison = [[-999.0, 0, 0, 0], [1.0] * 4, [1.0] * 4]
        queued = pool.submit(httpx.post, infer, json={"inputs": poison})
        _wait(lambda: _metrics(url)[("kiln_serve_queue_samples", (("model", "gated"),))] == 3)
        full = httpx.post(infer, json={"inputs": [[1.0] * 4] * 2}, timeout=5)
        assert full.status_code == 429 and full.headers["retry-after"] == "1"
        assert "queue holds 3 samples and takes at most 4" in full.json()["error"]
        huge = httpx.post(infer, json={"inputs": [[1.0] * 4] * 5})
        assert huge.status_code == 413 and "larger --max-queue" in huge.json()["error"]
        model.gate.set()
        assert first.result().status_code == 200
        failed = queued.result()
        assert (
            failed.status_code == 500 and "sample marked -999 is poison" in failed.json()["error"]
        )
        after = httpx.post(infer, json={"inputs": [[1.0] * 4]})  # the server lives on
        assert after.status_code == 200
        counts = _metrics(url)
    statuses = {dict(k[1])["status"]: v for k, v in counts.items()
                if k[0] == "kiln_serve_requests_total"}  # fmt: skip
    assert statuses == {"200": 2, "429": 1, "413": 1, "500": 1}


def test_ready_waits_for_the_loader_and_reports_its_failure(linear):
    release = threading.Event()

    def load() -> dict:
        release.wait(30)
        return {"linear": eager_engine(linear, torch.zeros(1, 4), (1,))}

    with serving(inference_app(load)) as url:
        waiting = httpx.get(f"{url}/health/ready")
        assert waiting.status_code == 503 and "loading" in waiting.json()["error"]
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.post(f"{url}/v1/models/linear/infer", json={"inputs": [[0] * 4]}
                          ).status_code == 503  # fmt: skip
        release.set()
        _wait(lambda: httpx.get(f"{url}/health/ready").status_code == 200)

    def broken() -> dict:
        raise FileNotFoundError("no engine file in /models/resnet")

    with serving(inference_app(broken)) as url:
        _wait(lambda: "failed" in httpx.get(f"{url}/health/ready").text)
        error = httpx.get(f"{url}/health/ready").json()["error"]
        assert error == "loading the models failed: FileNotFoundError: no engine file in " \
            "/models/resnet"  # fmt: skip


class _Gate(torch.nn.Module):
    """The identity, whose calls wait at the gate while it is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed, self.opened = False, threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.closed:
            self.opened.wait(30)
        return x


def test_ready_waits_until_the_batch_sizes_are_timed():
    gate = _Gate()
    engine = eager_engine(gate, torch.zeros(1, 4), (1, 8))
    gate.closed = True  # the batcher's timing calls wait now

    with serving(inference_app(lambda: {"gate": engine})) as url:
        waiting = httpx.get(f"{url}/health/ready")
        assert waiting.status_code == 503
        gate.opened.set()
        _wait(lambda: httpx.get(f"{url}/health/ready").status_code == 200)


def test_tokens_beyond_loopback(tmp_path, linear):
    from kiln.track import Store

    store = Store(tmp_path / "kiln.db")
    token = store.create_token("ci")
    engines = {"linear": eager_engine(linear, torch.zeros(1, 4), (1,))}
    with serving(inference_app(engines, token_required=True, store=store)) as url:
        assert httpx.get(f"{url}/v1/models").status_code == 401
        refused = httpx.post(f"{url}/v1/models/linear/infer", json={"inputs": [[0] * 4]})
        assert refused.status_code == 401 and "requires an API token" in refused.json()["error"]
        assert refused.headers["www-authenticate"] == "Bearer"
        bad = httpx.get(f"{url}/v1/models", headers={"authorization": "Bearer nope"})
        assert bad.status_code == 401 and "unknown API token" in bad.json()["error"]
        auth = {"authorization": f"Bearer {token}"}
        for _ in range(2):  # the second is answered from the verified-token cache
            reply = httpx.post(f"{url}/v1/models/linear/infer", json={"inputs": [[0] * 4]},
                               headers=auth)  # fmt: skip
            assert reply.status_code == 200
        assert httpx.get(f"{url}/health").status_code == 200  # probes need no token
        assert httpx.get(f"{url}/metrics").status_code == 200


def _wait(condition, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)
