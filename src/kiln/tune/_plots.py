"""Pictures of a study: its Pareto front, its hypervolume over trials, and its trials in parallel
coordinates; each drawn from plain data (`plot_data`) that the dashboard can draw itself."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kiln._extras import require
from kiln.tune._space import Categorical

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kiln.tune._study import Study

KINDS = ("pareto", "hypervolume", "parallel")
_FORMATS = (".png", ".svg", ".pdf")


def plot_data(study: Study, kind: str = "pareto") -> dict[str, Any]:
    """What `plot(study, kind)` draws, as JSON-ready dicts and lists.

    - "pareto": `axes` (the first two objectives), `directions`, `points` (every completed trial:
      `trial`, `values`, `feasible`, `front`) and `front` (trial numbers on the Pareto front of
      all objectives, sorted along the first axis from worst to best).
    - "hypervolume": `trials` (trial numbers in order), `hypervolume` (after each, as
      `study.hypervolume_history()`) and `reference` (the reference point in metric units).
    - "parallel": `axes` (every parameter, then every objective: `name`, `low`, `high`, `log`,
      `choices`) and `lines` (per completed trial: `trial`, raw `values` and `positions` in
      [0, 1] along each axis, None where a conditional parameter is absent); `color` names the
      objective that colors the lines.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}. Received: kind={kind!r}")
    if not study.completed():
        raise ValueError(f"Nothing to plot: study {study.name!r} has no completed trial yet.")
    return {"pareto": _pareto, "hypervolume": _hypervolume, "parallel": _parallel}[kind](study)


def plot(study: Study, kind: str = "pareto", path: str | Path | None = None) -> Figure:
    """Draw `plot_data(study, kind)` with matplotlib (no window, no pyplot state) and return the
    figure; with `path` (.png, .svg or .pdf), also save it there.

    >>> plot(study, "pareto", "front.png")  # doctest: +SKIP (needs a study)
    """
    if path is not None and Path(path).suffix.lower() not in _FORMATS:
        raise ValueError(f"path must end in one of {list(_FORMATS)}. Received: path={str(path)!r}")
    data = plot_data(study, kind)
    figure = require("matplotlib.figure", "tune").Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = figure.add_subplot()
    {"pareto": _draw_pareto, "hypervolume": _draw_hypervolume,
     "parallel": _draw_parallel}[kind](figure, ax, data)  # fmt: skip
    ax.set_title(f"{study.name}: {kind}")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120)
    return figure


# --- data ---------------------------------------------------------------------------------
def _pareto(study: Study) -> dict[str, Any]:
    if len(study.objectives) < 2:
        raise ValueError(f"A Pareto front needs two or more objectives; study {study.name!r} has "
                         f"{list(study.objectives)}: plot 'hypervolume' instead.")  # fmt: skip
    axes = list(study.objectives)[:2]
    done = study.completed()
    front = {t.number for t in study.pareto_front()}
    points = [{"trial": t.number, "values": {m: t.values[m] for m in axes},
               "feasible": study.is_feasible(t.values), "front": t.number in front}
              for t in done]  # fmt: skip
    sign = 1 if study.objectives[axes[0]] == "max" else -1
    ordered = sorted((t for t in done if t.number in front),
                     key=lambda t: (sign * t.values[axes[0]], t.number))  # fmt: skip
    return {"kind": "pareto", "axes": axes, "directions": [study.objectives[m] for m in axes],
            "points": points, "front": [t.number for t in ordered]}  # fmt: skip


def _hypervolume(study: Study) -> dict[str, Any]:
    ref = study.reference_point()
    reference = {m: float((1 if d == "max" else -1) * r)
                 for (m, d), r in zip(study.objectives.items(), ref)}  # fmt: skip
    return {"kind": "hypervolume", "trials": [t.number for t in study.trials],
            "hypervolume": study.hypervolume_history(), "reference": reference}  # fmt: skip


def _parallel(study: Study) -> dict[str, Any]:
    done = study.completed()
    axes: list[dict[str, Any]] = []
    for name, p in study.space.params.items():
        if isinstance(p, Categorical):
            axes.append({"name": name, "low": 0, "high": len(p.choices) - 1, "log": False,
                         "choices": list(p.choices)})  # fmt: skip
        else:
            axes.append({"name": name, "low": p.low, "high": p.high, "log": p.log,
                         "choices": None})  # fmt: skip
    for name in study.objectives:
        values = [t.values[name] for t in done]
        axes.append({"name": name, "low": min(values), "high": max(values), "log": False,
                     "choices": None})  # fmt: skip
    lines = []
    for t in done:
        known = [(a["name"] in t.params or a["name"] in t.values) for a in axes]
        raw = [t.params.get(a["name"], t.values.get(a["name"])) for a in axes]
        positions = [_position(v, a) if k else None for v, a, k in zip(raw, axes, known)]
        lines.append({"trial": t.number, "values": raw, "positions": positions})
    return {"kind": "parallel", "axes": axes, "lines": lines,
            "color": next(iter(study.objectives))}  # fmt: skip


def _position(value: Any, axis: Mapping[str, Any]) -> float:
    """Where `value` sits on its axis, 0 (low) to 1 (high); log axes in log space."""
    if axis["choices"] is not None:
        index = axis["choices"].index(value)
        return index / max(1, len(axis["choices"]) - 1)
    warp = math.log if axis["log"] else float
    lo, hi = warp(axis["low"]), warp(axis["high"])
    return (warp(value) - lo) / (hi - lo) if hi > lo else 0.5


# --- drawing --------------------------------------------------------------------------------
def _draw_pareto(figure: Figure, ax: Any, data: dict[str, Any]) -> None:
    mx, my = data["axes"]
    by_trial = {p["trial"]: p for p in data["points"]}
    groups = {"feasible": [p for p in data["points"] if p["feasible"] and not p["front"]],
              "infeasible": [p for p in data["points"] if not p["feasible"]]}  # fmt: skip
    for label, pts, style in [("trials", groups["feasible"], {"color": "0.6", "marker": "o"}),
                              ("infeasible", groups["infeasible"],
                               {"color": "tab:red", "marker": "x"})]:  # fmt: skip
        if pts:
            ax.scatter([p["values"][mx] for p in pts], [p["values"][my] for p in pts], s=18,
                       label=label, **style)  # fmt: skip
    front = [by_trial[n]["values"] for n in data["front"]]
    # steps-pre walks each corner of the dominated region (sorted worst to best on x)
    ax.plot([v[mx] for v in front], [v[my] for v in front], "o-", drawstyle="steps-pre",
            color="tab:blue", label="Pareto front")  # fmt: skip
    for n, v in zip(data["front"], front):
        ax.annotate(str(n), (v[mx], v[my]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"{mx} ({data['directions'][0]})")
    ax.set_ylabel(f"{my} ({data['directions'][1]})")
    ax.legend(loc="best", fontsize=8)


def _draw_hypervolume(figure: Figure, ax: Any, data: dict[str, Any]) -> None:
    ax.plot(data["trials"], data["hypervolume"], drawstyle="steps-post", color="tab:blue")
    ax.set_xlabel("trial")
    ref = ", ".join(f"{k}={v:.4g}" for k, v in data["reference"].items())
    ax.set_ylabel(f"hypervolume (reference {ref})", fontsize=8)


def _draw_parallel(figure: Figure, ax: Any, data: dict[str, Any]) -> None:
    axes, lines = data["axes"], data["lines"]
    color_at = [a["name"] for a in axes].index(data["color"])
    cmap = require("matplotlib", "tune").colormaps["viridis"]
    shade = np.array([line["positions"][color_at] for line in lines], dtype=float)
    for line, c in zip(lines, shade):
        y = [np.nan if p is None else p for p in line["positions"]]
        ax.plot(range(len(axes)), y, color=cmap(c), alpha=0.7, linewidth=1)
    ax.set_xticks(range(len(axes)), [a["name"] for a in axes], rotation=20, fontsize=8)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    for i, a in enumerate(axes):
        ax.axvline(i, color="0.3", linewidth=0.8)
        ticks = ([(_position(c, a), c) for c in a["choices"]] if a["choices"]
                 else [(0.0, a["low"]), (1.0, a["high"])])  # fmt: skip
        for at, value in ticks:
            ax.annotate(_label(value), (i, at), xytext=(2, 4 if at else -10),
                        textcoords="offset points", fontsize=7)  # fmt: skip
    ax.set_xlabel(f"color: {data['color']}")


def _label(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
