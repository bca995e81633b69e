"""Search spaces: parameters, conditions, linear constraints, and the unit-cube encoding.

Every sampler works in the unit cube: a numeric parameter is one coordinate in [0, 1] (after a
log when `log=True`), a categorical one is a one-hot block whose largest coordinate picks the
choice. `Space.decode` turns any point of the cube into valid parameters (rounding integers,
dropping inactive conditional parameters), `Space.encode` turns parameters back into a point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class _Param:
    when: Mapping[str, Any] | None = field(default=None, kw_only=True)

    def _active(self, params: Mapping[str, Any]) -> bool:
        for parent, allowed in (self.when or {}).items():
            options = allowed if isinstance(allowed, list | tuple | set) else [allowed]
            if parent not in params or params[parent] not in options:
                return False
        return True


@dataclass(frozen=True)
class Float(_Param):
    """A real number in [low, high]; `log=True` searches its logarithm uniformly.

    `when={"optimizer": "sgd"}` makes the parameter exist only when `optimizer` is "sgd" (a list
    of values allows several)."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(
                f"{type(self).__name__} needs finite low < high. "
                f"Received: low={self.low!r}, high={self.high!r}"
            )
        if self.log and self.low <= 0:
            raise ValueError(f"log=True needs low > 0. Received: low={self.low!r}")

    @property
    def dims(self) -> int:
        return 1

    def _warp(self, v: float) -> float:
        return math.log(v) if self.log else float(v)

    def _range(self) -> tuple[float, float]:
        return self._warp(self.low), self._warp(self.high)

    def to_unit(self, value: Any) -> list[float]:
        lo, hi = self._range()
        return [min(1.0, max(0.0, (self._warp(value) - lo) / (hi - lo)))]

    def from_unit(self, u: Any) -> Any:
        lo, hi = self._range()
        x = lo + min(1.0, max(0.0, float(u[0]))) * (hi - lo)
        return float(min(self.high, max(self.low, math.exp(x) if self.log else x)))

    def check(self, name: str, value: Any) -> None:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not self.low <= value <= self.high:
            raise ValueError(
                f"Parameter {name!r} must be a number in [{self.low}, {self.high}]. "
                f"Received: {name}={value!r}"
            )

    def to_json(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Int(Float):
    """An integer in [low, high] (both included); `log=True` searches its logarithm."""

    low: int  # type: ignore[assignment]
    high: int  # type: ignore[assignment]

    def __post_init__(self) -> None:
        for bound in (self.low, self.high):
            if not isinstance(bound, int) or isinstance(bound, bool):
                raise TypeError(
                    f"Int bounds must be integers. Received: low={self.low!r}, high={self.high!r}"
                )
        super().__post_init__()

    def _range(self) -> tuple[float, float]:
        # Each integer owns an equal slice of the cube: widen the range by half a step per side.
        return self._warp(self.low - 0.5), self._warp(self.high + 0.5)

    def from_unit(self, u: Any) -> Any:
        lo, hi = self._range()
        x = lo + min(1.0, max(0.0, float(u[0]))) * (hi - lo)
        return int(min(self.high, max(self.low, round(math.exp(x) if self.log else x))))

    def check(self, name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"Parameter {name!r} must be an integer. Received: {name}={value!r}")
        super().check(name, int(value))


@dataclass(frozen=True)
class Categorical(_Param):
    """One of a list of choices (strings, numbers, booleans or None)."""

    choices: Sequence[Any]

    def __post_init__(self) -> None:
        if isinstance(self.choices, str) or len(self.choices) < 1:
            raise ValueError(
                f"Categorical needs a non-empty list of choices. Received: {self.choices!r}"
            )
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"Categorical choices must be distinct. Received: {self.choices!r}")
        object.__setattr__(self, "choices", list(self.choices))

    @property
    def dims(self) -> int:
        return len(self.choices)

    def to_unit(self, value: Any) -> list[float]:
        return [1.0 if c == value else 0.0 for c in self.choices]

    def from_unit(self, u: Any) -> Any:
        return self.choices[int(np.argmax(np.asarray(u, dtype=float)))]

    def check(self, name: str, value: Any) -> None:
        if not any(value == c and type(value) is type(c) for c in self.choices):
            raise ValueError(
                f"Parameter {name!r} must be one of {self.choices!r}. Received: {name}={value!r}"
            )

    def to_json(self) -> dict[str, Any]:
        return {"type": "Categorical", "choices": list(self.choices)}


Param = Float | Int | Categorical
_OPS = ("<=", ">=")


def _bad_linear(c: Any) -> Any:
    raise ValueError('A linear constraint\'s JSON form is [{name: coefficient}, "<=" or ">=", '
                     f"bound]. Received: {c!r}")  # fmt: skip


@dataclass(frozen=True)
class LinearConstraint:
    """`sum(coefficients[name] * params[name]) <op> bound` over numeric, unconditional,
    non-log parameters; e.g. `LinearConstraint({"x": 1, "y": 1}, "<=", 1.0)`."""

    coefficients: Mapping[str, float]
    op: str
    bound: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(
                f"A linear constraint's op must be '<=' or '>='. Received: {self.op!r}"
            )

    def satisfied(self, params: Mapping[str, Any], tol: float = 1e-9) -> bool:
        total = sum(c * float(params[n]) for n, c in self.coefficients.items())
        scale = tol * (1 + abs(self.bound))
        return total <= self.bound + scale if self.op == "<=" else total >= self.bound - scale


class Space:
    """The parameters of a study: `{name: Float | Int | Categorical | fixed value}`.

    >>> space = Space({"lr": Float(1e-4, 1e-1, log=True), "opt": Categorical(["adam", "sgd"]),
    ...                "momentum": Float(0.0, 0.99, when={"opt": "sgd"}), "epochs": 5})
    >>> space.decode([0.5, 0.0, 1.0, 0.5])["opt"]
    'sgd'
    """

    def __init__(
        self,
        params: Mapping[str, Any],
        linear_constraints: Iterable[LinearConstraint | tuple] = (),
    ) -> None:
        if not params:
            raise ValueError("A search space needs at least one parameter. Received: {}")
        self.fixed = {n: v for n, v in params.items() if not isinstance(v, _Param)}
        self.params: dict[str, Param] = self._ordered(
            {n: v for n, v in params.items() if isinstance(v, Float | Categorical)}
        )
        self.linear_constraints = [
            c if isinstance(c, LinearConstraint) else LinearConstraint(*c)
            for c in linear_constraints
        ]
        for c in self.linear_constraints:
            self._check_linear(c)
        offsets = np.cumsum([0] + [p.dims for p in self.params.values()])
        self._slices = {n: slice(int(offsets[i]), int(offsets[i + 1])) for i, n in
                        enumerate(self.params)}  # fmt: skip
        self.dims = int(offsets[-1])

    def _ordered(self, params: dict[str, Param]) -> dict[str, Param]:
        # Parents before children, so decoding sees a parent's value before it decides a child.
        ordered: dict[str, Param] = {}
        while len(ordered) < len(params):
            ready = [
                n
                for n, p in params.items()
                if n not in ordered
                and all(parent in ordered or parent in self.fixed for parent in (p.when or {}))
            ]
            if not ready:
                missing = {n: dict(p.when or {}) for n, p in params.items() if n not in ordered}
                raise ValueError(
                    "Conditions must name other categorical or fixed parameters, without "
                    f"cycles. Received: {missing}"
                )
            ordered.update((n, params[n]) for n in ready)
        return ordered

    def _check_linear(self, c: LinearConstraint) -> None:
        for name in c.coefficients:
            p = self.params.get(name)
            if not isinstance(p, Float) or p.log or p.when:
                raise ValueError(
                    "Linear constraints may only use numeric, non-log, unconditional "
                    f"parameters. Received: {name!r} = {p!r} in {c}"
                )

    def active(self, params: Mapping[str, Any]) -> list[str]:
        return [n for n, p in self.params.items() if p._active({**self.fixed, **params})]

    def decode(self, u: Sequence[float]) -> dict[str, Any]:
        """Parameters for a point of the unit cube (inactive ones left out, fixed ones added)."""
        point = np.asarray(u, dtype=float).reshape(-1)
        if point.shape[0] != self.dims:
            raise ValueError(f"Expected {self.dims} coordinates. Received: shape {point.shape}")
        values: dict[str, Any] = dict(self.fixed)
        for name, p in self.params.items():
            if p._active(values):
                values[name] = p.from_unit(point[self._slices[name]])
        return values

    def encode(self, params: Mapping[str, Any]) -> list[float]:
        """The point of the unit cube for valid parameters; an inactive parameter encodes as the
        middle of its range (or no category), a constant the models can ignore."""
        u = [0.5] * self.dims
        for name, p in self.params.items():
            s = self._slices[name]
            if name in params:
                u[s] = p.to_unit(params[name])
            elif isinstance(p, Categorical):
                u[s] = [0.0] * p.dims
        return u

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Raise ValueError naming the first rule `params` break; return them with fixed ones."""
        full = {**self.fixed, **params}
        for name, value in self.fixed.items():
            if full[name] != value:
                raise ValueError(
                    f"Parameter {name!r} is fixed to {value!r}. Received: {full[name]!r}"
                )
        active = set(self.active(full))
        unknown = set(full) - set(self.params) - set(self.fixed)
        extra = {n for n in self.params if n in full and n not in active}
        missing = active - set(full)
        for label, names in (("Unknown", unknown), ("Inactive", extra), ("Missing", missing)):
            if names:
                raise ValueError(f"{label} parameters {sorted(names)}. Received: {dict(full)}")
        for name in active:
            self.params[name].check(name, full[name])
        for c in self.linear_constraints:
            if not c.satisfied(full):
                raise ValueError(f"Parameters break the linear constraint {c}. Received: {full}")
        return full

    def feasible(self, params: Mapping[str, Any]) -> bool:
        return all(c.satisfied(params) for c in self.linear_constraints)

    def categorical_dims(self) -> list[int]:
        """Unit-cube coordinates that are one-hot blocks of categorical parameters."""
        return [i for n, p in self.params.items() if isinstance(p, Categorical)
                for i in range(self._slices[n].start, self._slices[n].stop)]  # fmt: skip

    def one_hot_combinations(self, limit: int) -> list[dict[int, float]] | None:
        """Every joint choice of the categorical parameters as fixed unit-cube coordinates, or
        None when there are none or more than `limit` (then samplers relax and round)."""
        cats = [(self._slices[n].start, p.dims) for n, p in self.params.items()
                if isinstance(p, Categorical)]  # fmt: skip
        if not cats or math.prod(d for _, d in cats) > limit:
            return None
        out: list[dict[int, float]] = [{}]
        for start, dims in cats:
            out = [{**fixed, **{start + k: float(k == pick) for k in range(dims)}}
                   for fixed in out for pick in range(dims)]  # fmt: skip
        return out

    def unit_inequalities(self) -> list[tuple[list[int], list[float], float]]:
        """Linear constraints in the unit cube as BoTorch wants them: sum(c * u[i]) >= rhs."""
        out = []
        for c in self.linear_constraints:
            sign = 1.0 if c.op == ">=" else -1.0
            idx, coef, rhs = [], [], c.bound
            for name, a in c.coefficients.items():
                p = self.params[name]
                assert isinstance(p, Float)
                lo, hi = p._range()
                idx.append(self._slices[name].start)
                coef.append(sign * a * (hi - lo))
                rhs -= a * lo
            out.append((idx, coef, sign * rhs))
        return out

    def to_json(self) -> dict[str, Any]:
        params = {n: {**p.to_json(), "when": dict(p.when) if p.when else None}
                  for n, p in self.params.items()}  # fmt: skip
        return {
            "params": params,
            "fixed": self.fixed,
            "linear_constraints": [
                [dict(c.coefficients), c.op, c.bound] for c in self.linear_constraints
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> Space:
        """The space of `to_json()`'s form; "fixed" and "linear_constraints" may be left out.
        Raises ValueError naming the rule a part breaks, and echoing that part."""
        from kiln.tune._json import build

        if not isinstance(data, Mapping) or not isinstance(data.get("params"), Mapping):
            raise ValueError(
                'A space\'s JSON form is {"params": {name: {"type": "Float", "low": 0.0, '
                '"high": 1.0}, ...}, "fixed": {name: value}, "linear_constraints": '
                f'[[{{name: coefficient}}, "<=", bound], ...]}}. Received: {data!r}'
            )
        kinds = {"Float": Float, "Int": Int, "Categorical": Categorical}
        params: dict[str, Any] = dict(data.get("fixed") or {})
        for name, spec in data["params"].items():
            params[name] = build(kinds, spec, f"parameter {name!r}")
        linear = [c if isinstance(c, list | tuple) and len(c) == 3 else _bad_linear(c)
                  for c in data.get("linear_constraints") or []]  # fmt: skip
        return cls(params, [LinearConstraint(*c) for c in linear])

    def __repr__(self) -> str:
        return f"Space({ {**self.params, **self.fixed}!r})"
