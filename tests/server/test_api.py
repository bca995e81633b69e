"""The REST API over a real store: runs, metrics, artifacts, OpenAPI, and 4xx for bad requests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from kiln.server import create_app
from kiln.track import Store


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    monkeypatch.setenv("KILN_ARTIFACTS", str(tmp_path / "artifacts"))
    store = Store(tmp_path / "kiln.db")
    for name, losses in [("first", [2.0, 1.0, 0.5]), ("second", [3.0, 0.2, 0.1])]:
        with store.create_run(name, config={"lr": 0.1}) as run:
            for step, loss in enumerate(losses, 1):
                run.log_metrics({"loss": loss, "accuracy": step / 10}, step=step, epoch=0)
            run.log_artifact(b"\x89PNG sample", name="samples/a.png")
    return store


@pytest.fixture
def client(store: Store) -> TestClient:
    return TestClient(create_app(store, max_upload_bytes=1000), raise_server_exceptions=False)


def test_runs_list_filter_sort(client: TestClient):
    runs = client.get("/v1/runs").json()["runs"]
    assert [r["name"] for r in runs] == ["second", "first"]
    assert runs[0]["summary"] == {"loss": 0.1, "accuracy": 0.3}
    assert [r["name"] for r in client.get("/v1/runs?sort=-loss").json()["runs"]] == [
        "first",
        "second",
    ]
    assert [r["name"] for r in client.get("/v1/runs?name=fir").json()["runs"]] == ["first"]
    assert client.get("/v1/runs?status=running").json()["runs"] == []


def test_run_detail_and_metrics(client: TestClient):
    run_id = client.get("/v1/runs?name=first").json()["runs"][0]["id"]
    detail = client.get(f"/v1/runs/{run_id}").json()
    assert detail["metric_keys"] == ["accuracy", "loss"] and detail["status"] == "finished"
    assert [a["name"] for a in detail["artifacts"]] == ["samples/a.png"]
    metrics = client.get(f"/v1/runs/{run_id}/metrics?keys=loss&downsample=2").json()["metrics"]
    assert list(metrics) == ["loss"] and metrics["loss"]["total"] == 3
    assert sorted(metrics["loss"]["value"]) == [0.5, 2.0]  # min and max survive
    image = client.get(f"/v1/runs/{run_id}/artifacts/samples/a.png")
    assert image.status_code == 200 and image.content == b"\x89PNG sample"
    assert image.headers["content-type"] == "image/png"


def test_upload_artifact(client: TestClient):
    run_id = client.get("/v1/runs").json()["runs"][0]["id"]
    done = client.put(f"/v1/runs/{run_id}/artifacts/notes/log.txt", content=b"hello")
    assert done.status_code == 201 and done.json()["size"] == 5
    assert client.get(f"/v1/runs/{run_id}/artifacts/notes/log.txt").content == b"hello"


BAD = [
    ("get", "/v1/runs/999", 404, "no run with id 999"),
    ("get", "/v1/runs/abc", 422, "run_id"),
    ("get", "/v1/runs?limit=-1", 422, "limit"),
    ("get", "/v1/runs?status=done", 422, "status"),
    ("get", "/v1/runs?sort=name;drop", 422, "sort"),
    ("get", "/v1/runs/999/metrics", 404, "no run with id 999"),
    ("get", "/v1/runs/1/metrics?downsample=1", 422, "downsample"),
    ("get", "/v1/runs/1/metrics?downsample=x", 422, "downsample"),
    ("get", "/v1/runs/1/artifacts/missing.png", 404, "no artifact named"),
    ("get", "/v1/runs/1/artifacts/../../etc/passwd", 404, ""),
    ("put", "/v1/runs/1/artifacts/big.bin", 413, "upload too large"),
    ("put", "/v1/runs/999/artifacts/a.txt", 404, "no run with id 999"),
    ("get", "/v1/nothing", 404, "Not Found"),
]


@pytest.mark.parametrize(("method", "url", "status", "message"), BAD)
def test_bad_requests_get_4xx_with_a_message(client, method, url, status, message):
    kwargs = {"content": b"x" * 5000} if method == "put" else {}
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_openapi_schema(client: TestClient):
    schema = client.get("/openapi.json").json()
    assert {"/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/metrics"} <= set(schema["paths"])


def test_token_required(store: Store):
    client = TestClient(create_app(store, token_required=True))
    assert client.get("/v1/runs").status_code == 401
    assert "kiln token create" in client.get("/v1/runs").json()["error"]
    token = store.create_token("ci")
    ok = client.get("/v1/runs", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and len(ok.json()["runs"]) == 2
    bad = client.get("/v1/runs", headers={"Authorization": "Bearer kiln_wrong"})
    assert bad.status_code == 401


def test_serve_refuses_open_address_without_token(store: Store):
    from kiln.server import serve

    with pytest.raises(SystemExit, match="requires an API token"):
        serve(store, host="0.0.0.0")


def test_dashboard_pages_and_vendored_chart_library_are_served(client: TestClient):
    page = client.get("/")
    assert page.status_code == 200 and "kiln dashboard" in page.text
    assert "uPlot" in client.get("/ui/vendor/uPlot.iife.min.js").text
    assert "MIT" in client.get("/ui/vendor/uPlot.LICENSE").text


def test_missing_extra_names_the_pip_command():
    from kiln._extras import require

    with pytest.raises(ImportError, match=r"pip install 'kiln\[server\]'"):
        require("kiln_no_such_module", "server")
