"""`connect`: drive a study served by a kiln server (`kiln dashboard`) from any host.

>>> study = kiln.tune.connect("http://gpu-box:8765").study("mlp")  # doctest: +SKIP
>>> study.optimize(train_fn, trials=20)                            # doctest: +SKIP

The standard library's urllib speaks HTTP, so workers need nothing beyond kiln itself.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from kiln.tune._pruner import BasePruner
from kiln.tune._sampler import BaseSampler
from kiln.tune._space import Space
from kiln.tune._trial import Trial, TrialPruned, TrialState

_ERRORS: dict[int, type[Exception]] = {400: ValueError, 401: PermissionError, 404: KeyError,
                                       409: ValueError, 422: ValueError}  # fmt: skip


def connect(
    url: str, token: str | None = None, *, timeout: float = 60.0, wait: float = 0.0
) -> Client:
    """A client of the kiln server at `url` ("http://host:8765"). `token` (default
    `$KILN_TOKEN`) is needed by a server that listens beyond loopback. `wait`: seconds to wait
    for the server to answer (workers that start with it), else ConnectionError."""
    client = Client(url, token if token is not None else os.environ.get("KILN_TOKEN"), timeout)
    client.wait(wait)
    return client


class Client:
    """Studies on one server. Errors the server answers come back as the exceptions a local
    `Study` raises: ValueError (a broken rule), KeyError (unknown), PermissionError (token)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://. Received: {url!r}")
        self.url, self.timeout = url.rstrip("/"), timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data, self._headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raise _error(method, path, e) from None
        return json.loads(raw) if raw else None

    def wait(self, seconds: float) -> None:
        """Return once the server answers (any HTTP status), or raise ConnectionError."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                urllib.request.urlopen(self.url + "/v1", timeout=self.timeout).close()
                return
            except urllib.error.HTTPError:  # an answer, though not a page
                return
            except OSError as e:
                if time.monotonic() >= deadline:
                    raise ConnectionError(f"no kiln server answers at {self.url} "
                                          f"(waited {seconds} s): {e}") from e  # fmt: skip
                time.sleep(0.1)

    def studies(self) -> list[str]:
        return [e["name"] for e in self.request("GET", "/v1/experiments")["experiments"]]

    def study(self, name: str) -> RemoteStudy:
        return RemoteStudy(self, self.request("GET", f"/v1/experiments/{_quote(name)}"))

    def create_study(
        self,
        space: Space | Mapping[str, Any],
        objectives: Mapping[str, str],
        *,
        name: str | None = None,
        constraints: Mapping[str, tuple[str, float]] | None = None,
        thresholds: Mapping[str, float] | None = None,
        sampler: BaseSampler | None = None,
        pruner: BasePruner | None = None,
        stale_after: float = 300.0,
    ) -> RemoteStudy:
        """A new study on the server, with `Study`'s arguments (default sampler: Bayes)."""
        space = space if isinstance(space, Space) else Space(space)
        body = {"name": name, "space": space.to_json(), "objectives": dict(objectives),
                "constraints": {k: list(v) for k, v in (constraints or {}).items()},
                "thresholds": dict(thresholds or {}), "stale_after": stale_after,
                "sampler": sampler.to_json() if sampler else None,
                "pruner": pruner.to_json() if pruner else None}  # fmt: skip
        return RemoteStudy(self, self.request("POST", "/v1/experiments", body))


class RemoteStudy:
    """A study on a kiln server, driven like a local one: `ask`/`tell`, or `optimize(fn,
    trials, workers)` (threads, or one process per GPU, as `Study.optimize`), which sends
    heartbeats while trials run and relays `trial.report` to the server's pruner."""

    def __init__(self, client: Client, config: dict[str, Any]) -> None:
        self.client, self.config = client, config
        self.name: str = config["name"]
        self.objectives: dict[str, str] = config["objectives"]
        self.stale_after = float(config["stale_after"])
        self._path = f"/v1/experiments/{_quote(self.name)}"

    def __repr__(self) -> str:
        return f"RemoteStudy({self.name!r} at {self.client.url})"

    def ask(self) -> Trial:
        """A new running trial, which no other worker gets while it runs."""
        trial = _trial(self.client.request("POST", self._path + "/suggestions", {}))
        trial._study = self
        return trial

    def tell(
        self, trial: Trial | int, values: Mapping[str, float] | float | None = None, *,
        state: TrialState | str | None = None, error: str | None = None,
    ) -> Trial:  # fmt: skip
        """Finish a trial, as `Study.tell`: with its values, or a state ("failed", "pruned")."""
        number = trial if isinstance(trial, int) else trial.number
        state = TrialState(state) if state is not None else None
        body: dict[str, Any] = {"suggestion": number, "error": error,
                                "failed": state is TrialState.FAILED,
                                "pruned": state is TrialState.PRUNED}  # fmt: skip
        try:
            body["values"] = _numbers(values)
        except (TypeError, ValueError):
            body.update(failed=True, pruned=False, values=None, error=(
                f"The objective function must return a dict of {list(self.objectives)} "
                f"numbers. Received: {values!r}"))  # fmt: skip
        return _trial(self.client.request("POST", self._path + "/observations", body))

    def heartbeat(self, *trials: Trial | int) -> None:
        for t in trials:
            number = t if isinstance(t, int) else t.number
            self.client.request("POST", f"{self._path}/suggestions/{number}/heartbeat")

    def optimize(
        self, fn: Callable[[Trial], Mapping[str, float] | float], trials: int,
        workers: int | None = None, processes: bool | None = None,
    ) -> None:  # fmt: skip
        from kiln.tune._workers import run_workers

        run_workers(self, fn, trials, workers, processes)

    @property
    def trials(self) -> list[Trial]:
        """Every trial, by number (open suggestions and observations)."""
        both = [*self._list("suggestions"), *self._list("observations")]
        return sorted(both, key=lambda t: t.number)

    def pareto_front(self) -> list[Trial]:
        return [_trial(t) for t in self.client.request("GET", self._path + "/pareto_front")
                ["trials"]]  # fmt: skip

    def hypervolume(self) -> float | None:
        return self.client.request("GET", self._path + "/pareto_front")["hypervolume"]

    def hypervolume_history(self) -> list[float]:
        return self.client.request("GET", self._path + "/hypervolume")["history"]

    def _list(self, kind: str) -> list[Trial]:
        return [_trial(t) for t in self.client.request("GET", f"{self._path}/{kind}")["trials"]]

    def _report(self, trial: Trial, step: int, values: Mapping[str, float] | float) -> None:
        body = {"step": int(step), "values": _numbers(values)}
        path = f"{self._path}/suggestions/{trial.number}/reports"
        answer = self.client.request("POST", path, body)
        if answer["prune"]:
            raise TrialPruned(answer["message"])


def _trial(data: Mapping[str, Any]) -> Trial:
    fields = {k: v for k, v in data.items() if k != "id"}
    return Trial.from_json({**fields, "number": data["id"]})


def _numbers(values: Any) -> dict[str, float] | float | None:
    if values is None or isinstance(values, Mapping):
        return None if values is None else {str(k): float(v) for k, v in values.items()}
    if isinstance(values, bool) or not isinstance(values, int | float):
        raise TypeError(f"expected a dict of numbers or a number, got {values!r}")
    return float(values)


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _error(method: str, path: str, e: urllib.error.HTTPError) -> Exception:
    try:
        message = json.loads(e.read())["error"]
    except (ValueError, KeyError, TypeError):
        message = e.reason
    return _ERRORS.get(e.code, RuntimeError)(f"{method} {path}: {e.code} {message}")
