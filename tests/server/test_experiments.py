"""/v1/experiments through FastAPI's TestClient: what it answers matches the in-process Study
on the same store, and bad requests get 4xx with the rule and the value."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from kiln.server import create_app
from kiln.track import Store
from kiln.tune import Float, Int, Sobol, Study, SuccessiveHalving

SPACE = {"x": Float(0.0, 1.0), "n": Int(1, 4)}
BODY = {
    "name": "exp",
    "space": {"params": {"x": {"type": "Float", "low": 0.0, "high": 1.0},
                         "n": {"type": "Int", "low": 1, "high": 4}}},
    "objectives": {"a": "max", "b": "min"},
    "constraints": {"c": [">=", 0.0]},
    "thresholds": {"a": 0.0, "b": 2.0},
    "sampler": {"type": "Sobol", "seed": 7},
}  # fmt: skip


def _values(params: dict) -> dict[str, float]:
    x, n = params["x"], params["n"]
    return {"a": x * n, "b": (x - 0.5) ** 2 + n / 4, "c": 0.5 - x * (n == 4)}


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "kiln.db")


@pytest.fixture
def client(store: Store) -> TestClient:
    return TestClient(create_app(store), raise_server_exceptions=False)


def _run(client: TestClient, count: int) -> list[dict]:
    told = []
    for _ in range(count):
        s = client.post("/v1/experiments/exp/suggestions")
        assert s.status_code == 201, s.text
        body = {"suggestion": s.json()["id"], "values": _values(s.json()["params"])}
        told.append(client.post("/v1/experiments/exp/observations", json=body).json())
    return told


def test_an_experiment_is_the_study_in_the_store(client: TestClient, store: Store):
    created = client.post("/v1/experiments", json=BODY)
    assert created.status_code == 201, created.text
    study = Study.load("exp", store)
    local = Study(SPACE, BODY["objectives"], constraints={"c": (">=", 0.0)},
                  thresholds=BODY["thresholds"], sampler=Sobol(seed=7))  # fmt: skip
    assert {k: v for k, v in created.json().items() if k not in ("id", "name", "trials")} == (
        local.config()
    )
    assert created.json()["trials"]["running"] == 0
    assert client.get("/v1/experiments/exp").json() == created.json()
    assert [e["id"] for e in client.get("/v1/experiments").json()["experiments"]] == ["exp"]
    told = _run(client, 6)
    local.optimize(lambda t: _values(t.params), trials=6)  # same seed: the same suggestions
    assert [t["params"] for t in told] == [t.params for t in local.trials]
    assert [t["state"] for t in told] == ["completed"] * 6
    pareto = client.get("/v1/experiments/exp/pareto_front").json()
    assert [t["id"] for t in pareto["trials"]] == [t.number for t in study.pareto_front()]
    assert [t["id"] for t in pareto["trials"]] == [t.number for t in local.pareto_front()]
    assert pareto["hypervolume"] == pytest.approx(local.hypervolume())
    assert pareto["reference"] == {"a": 0.0, "b": 2.0}
    history = client.get("/v1/experiments/exp/hypervolume").json()["history"]
    assert history == pytest.approx(local.hypervolume_history())
    scores = client.get("/v1/experiments/exp/importance?objective=b").json()["importance"]
    assert scores == pytest.approx(local.importance("b"))
    observed = client.get("/v1/experiments/exp/observations").json()["trials"]
    assert [t["values"] for t in observed] == [t.values for t in local.trials]
    assert client.get("/v1/experiments/exp").json()["trials"]["completed"] == 6


def test_suggestions_go_stale_without_heartbeats_and_stay_listed(client, store):
    client.post("/v1/experiments", json={**BODY, "stale_after": 60})
    first, second = (client.post("/v1/experiments/exp/suggestions").json() for _ in range(2))
    Study.load("exp", store).storage.heartbeat("exp", [0, 1], 0.0)  # both workers went silent
    listed = client.get("/v1/experiments/exp/suggestions").json()["trials"]
    assert [(t["id"], t["state"]) for t in listed] == [(0, "stale"), (1, "stale")]
    assert client.post("/v1/experiments/exp/suggestions/1/heartbeat").status_code == 204
    late = {"suggestion": 0, "values": _values(first["params"])}
    assert client.post("/v1/experiments/exp/observations", json=late).json()["state"] == (
        "completed"
    )
    listed = client.get("/v1/experiments/exp/suggestions").json()["trials"]
    assert [(t["id"], t["state"]) for t in listed] == [(1, "running")]
    assert second["id"] == 1


def test_reports_ask_the_pruner(client, store):
    pruner = SuccessiveHalving(min_step=1, reduction=2).to_json()
    client.post("/v1/experiments", json={**BODY, "objectives": {"a": "max"}, "pruner": pruner,
                                         "constraints": {}, "thresholds": {}})  # fmt: skip
    good, bad = (client.post("/v1/experiments/exp/suggestions").json()["id"] for _ in range(2))
    url = "/v1/experiments/exp/suggestions/{}/reports"
    assert client.post(url.format(good), json={"step": 1, "values": {"a": 5.0}}).json() == {
        "prune": False, "message": None}  # fmt: skip
    verdict = client.post(url.format(bad), json={"step": 1, "values": 1.0}).json()
    assert verdict == {"prune": True, "message": f"Trial {bad} pruned at step 1."}
    told = client.post("/v1/experiments/exp/observations", json={"suggestion": bad,
                                                                 "pruned": True})  # fmt: skip
    assert told.json()["state"] == "pruned" and told.json()["intermediate"] == {"1": {"a": 1.0}}
    assert Study.load("exp", store).trials[bad].state.value == "pruned"


def test_failed_observations_and_values_that_fail(client):
    client.post("/v1/experiments", json=BODY)
    for _ in range(3):
        client.post("/v1/experiments/exp/suggestions")
    failed = {"suggestion": 0, "failed": True, "error": "CUDA out of memory"}
    told = client.post("/v1/experiments/exp/observations", json=failed).json()
    assert (told["state"], told["error"]) == ("failed", "CUDA out of memory")
    missing = client.post("/v1/experiments/exp/observations",
                          json={"suggestion": 1, "values": {"a": 1.0}}).json()  # fmt: skip
    assert missing["state"] == "failed" and "Missing metrics ['b', 'c']" in missing["error"]
    nan = '{"suggestion": 2, "values": {"a": 1, "b": 1, "c": 1, "seconds": NaN}}'
    told = client.post("/v1/experiments/exp/observations", content=nan,
                       headers={"content-type": "application/json"})  # fmt: skip
    assert told.status_code == 201 and told.json()["values"]["seconds"] is None  # JSON: null


def test_token_required(store: Store):
    client = TestClient(create_app(store, token_required=True))
    assert client.post("/v1/experiments", json=BODY).status_code == 401
    headers = {"Authorization": f"Bearer {store.create_token('ci')}"}
    assert client.post("/v1/experiments", json=BODY, headers=headers).status_code == 201
    assert client.post("/v1/experiments/exp/suggestions", headers=headers).status_code == 201


def _new(**changes) -> dict:
    return {**BODY, "name": None, **changes}


def _space(**x) -> dict:
    return _new(space={"params": {"x": {"type": "Float", **x}}})


BAD = [
    ("get", "/v1/experiments/nope", None, 404, "no experiment 'nope'"),
    ("post", "/v1/experiments/nope/suggestions", None, 404, "no experiment 'nope'"),
    ("post", "/v1/experiments", _space(low=2, high=1), 422, "low=2, high=1"),
    ("post", "/v1/experiments", _space(low=0), 422, "missing 1 required positional argument"),
    ("post", "/v1/experiments", _new(space={"x": 1}), 422, "A space's JSON form is"),
    ("post", "/v1/experiments", _new(objectives={"a": "maximize"}), 422, "a='maximize'"),
    ("post", "/v1/experiments", _new(sampler={"type": "Grid"}), 422, "'Grid'"),
    ("post", "/v1/experiments", _new(constraints={"c": ["<", 1]}), 422, "c=['<', 1]"),
    ("post", "/v1/experiments", _new(thresholds={"z": 1}), 422, "['z']"),
    ("post", "/v1/experiments", {**BODY, "name": "a/b"}, 422, "name"),
    ("post", "/v1/experiments", _new(stale_after=0), 422, "stale_after"),
    ("post", "/v1/experiments", BODY, 409, "'exp' already exists"),
    ("post", "/v1/experiments/exp/observations", {"suggestion": 99, "values": {"a": 1}}, 404,
     "has no suggestion 99"),
    ("post", "/v1/experiments/exp/observations", {"suggestion": 0}, 422, "needs values"),
    ("post", "/v1/experiments/exp/observations", {"suggestion": 0, "failed": True,
                                                  "pruned": True}, 422, "not both"),
    ("post", "/v1/experiments/exp/observations", {"suggestion": 0, "values": {"a": "x"}}, 422,
     "values"),
    ("post", "/v1/experiments/exp/observations", {"suggestion": 1, "values": {"a": 1}}, 409,
     "suggestion 1 of experiment 'exp' is already failed"),
    ("post", "/v1/experiments/exp/suggestions/99/reports", {"step": 1, "values": 1}, 404,
     "no suggestion 99"),
    ("post", "/v1/experiments/exp/suggestions/1/reports", {"step": 1, "values": 1}, 409,
     "already failed"),
    ("post", "/v1/experiments/exp/suggestions/99/heartbeat", None, 404, "no suggestion 99"),
    ("get", "/v1/experiments/exp/importance?objective=zzz", None, 422, "Received: 'zzz'"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "body", "status", "message"), BAD)
def test_bad_requests_get_4xx_with_the_rule_and_the_value(client, method, url, body, status,
                                                          message):  # fmt: skip
    assert client.post("/v1/experiments", json=BODY).status_code == 201
    for _ in range(2):
        client.post("/v1/experiments/exp/suggestions")
    client.post("/v1/experiments/exp/observations", json={"suggestion": 1, "failed": True})
    kwargs = {"json": body} if body is not None else {}
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_openapi_schema_lists_the_experiment_routes(client: TestClient):
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/v1/experiments", "/v1/experiments/{experiment_id}/suggestions",
            "/v1/experiments/{experiment_id}/observations",
            "/v1/experiments/{experiment_id}/pareto_front"} <= paths  # fmt: skip
