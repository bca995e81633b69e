"""Plots draw exactly the study's front, hypervolume history and trials, into real image files."""

import struct

import pytest

from kiln import tune
from kiln.tune import Categorical, Float, Int, Random, Study

# (acc, ms, params, state): 0, 1 and 4 are the feasible front; 2 is dominated by 1; 3 would
# dominate everything but breaks the params constraint; 5 was pruned.
ROWS = [
    (0.9, 8.0, 100, "completed"),
    (0.8, 4.0, 100, "completed"),
    (0.7, 6.0, 100, "completed"),
    (0.95, 1.0, 5000, "completed"),
    (0.6, 2.0, 100, "completed"),
    (None, None, 0, "pruned"),
]
PARAMS = [
    {"lr": 1e-3, "width": 8, "opt": "adam"},
    {"lr": 1e-4, "width": 64, "opt": "sgd"},
    {"lr": 1e-2, "width": 36, "opt": "adam"},
    {"lr": 1e-3, "width": 8, "opt": "sgd"},
    {"lr": 1e-3, "width": 22, "opt": "adam"},
    {"lr": 1e-3, "width": 8, "opt": "adam"},
]
# Against the reference (acc 0.5, ms 10), by hand: trial 0 adds 0.4 x 2, trial 1 adds 0.3 x 4,
# trial 4 adds 0.1 x 2; the others add nothing.
HISTORY = [0.8, 2.0, 2.0, 2.0, 2.2, 2.2]


def _study() -> Study:
    space = {"lr": Float(1e-4, 1e-2, log=True), "width": Int(8, 64),
             "opt": Categorical(["adam", "sgd"])}  # fmt: skip
    study = Study(space, {"acc": "max", "ms": "min"}, constraints={"params": ("<=", 1000)},
                  thresholds={"acc": 0.5, "ms": 10.0}, sampler=Random(0), name="toy")  # fmt: skip
    for params, (acc, ms, n, state) in zip(PARAMS, ROWS):
        study.enqueue(params)
        trial = study.ask()
        if state == "completed":
            study.tell(trial, {"acc": acc, "ms": ms, "params": n})
        else:
            study.tell(trial, state=state)
    return study


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_pareto_front_data_and_figure_are_the_studys_front(tmp_path):
    study = _study()
    data = tune.plot_data(study, "pareto")
    assert data["axes"] == ["acc", "ms"] and data["directions"] == ["max", "min"]
    assert data["front"] == [4, 1, 0]  # worst to best accuracy
    assert sorted(data["front"]) == sorted(t.number for t in study.pareto_front())
    assert [p["trial"] for p in data["points"]] == [0, 1, 2, 3, 4]  # completed only
    assert [p["feasible"] for p in data["points"]] == [True, True, True, False, True]
    figure = tune.plot(study, "pareto", tmp_path / "front.png")
    drawn = figure.axes[0].lines[0].get_xydata().tolist()
    assert drawn == [[0.6, 2.0], [0.8, 4.0], [0.9, 8.0]]
    scattered = sorted(tuple(xy) for c in figure.axes[0].collections for xy in c.get_offsets())
    assert scattered == [(0.7, 6.0), (0.95, 1.0)]  # the dominated and the infeasible trial
    assert _png_size(tmp_path / "front.png") == (840, 540)
    assert 10_000 < (tmp_path / "front.png").stat().st_size < 500_000


def test_hypervolume_data_and_figure_match_a_hand_computed_history(tmp_path):
    study = _study()
    data = tune.plot_data(study, "hypervolume")
    assert data["trials"] == [0, 1, 2, 3, 4, 5]
    assert data["hypervolume"] == pytest.approx(HISTORY)
    assert data["hypervolume"] == study.hypervolume_history()
    assert data["reference"] == {"acc": 0.5, "ms": 10.0}
    figure = tune.plot(study, "hypervolume", tmp_path / "hv.svg")
    assert figure.axes[0].lines[0].get_ydata().tolist() == pytest.approx(HISTORY)
    text = (tmp_path / "hv.svg").read_text()
    assert text.startswith("<?xml") and "<svg" in text and len(text) > 5_000


def test_parallel_coordinates_place_each_trial_on_every_axis(tmp_path):
    study = _study()
    data = tune.plot_data(study, "parallel")
    assert [a["name"] for a in data["axes"]] == ["lr", "width", "opt", "acc", "ms"]
    assert data["axes"][3] == {"name": "acc", "low": 0.6, "high": 0.95, "log": False,
                               "choices": None}  # fmt: skip
    by_trial = {line["trial"]: line for line in data["lines"]}
    assert set(by_trial) == {0, 1, 2, 3, 4}
    # lr 1e-3 is half-way on the log axis 1e-4..1e-2; width 36 half-way on 8..64; sgd is 1
    assert by_trial[2]["values"] == [1e-2, 36, "adam", 0.7, 6.0]
    assert by_trial[2]["positions"] == pytest.approx([1.0, 0.5, 0.0, 0.1 / 0.35, 5.0 / 7.0])
    assert by_trial[1]["positions"][:3] == pytest.approx([0.0, 1.0, 1.0])
    assert by_trial[0]["positions"][0] == pytest.approx(0.5)
    figure = tune.plot(study, "parallel", tmp_path / "parallel.png")
    drawn = [line.get_ydata().tolist() for line in figure.axes[0].lines[: len(data["lines"])]]
    assert drawn == [pytest.approx(line["positions"]) for line in data["lines"]]
    assert _png_size(tmp_path / "parallel.png") == (840, 540)


def test_a_conditional_parameter_absent_from_a_trial_has_no_position():
    space = {"opt": Categorical(["adam", "sgd"]),
             "momentum": Float(0.0, 0.9, when={"opt": "sgd"})}  # fmt: skip
    study = Study(space, {"y": "min"}, sampler=Random(0))
    for params, y in [({"opt": "adam"}, 1.0), ({"opt": "sgd", "momentum": 0.45}, 2.0)]:
        study.enqueue(params)
        study.tell(study.ask(), {"y": y})
    lines = tune.plot_data(study, "parallel")["lines"]
    assert [line["positions"] for line in lines] == [[0.0, None, 0.0], [1.0, 0.5, 1.0]]


def test_errors_state_the_rule_and_echo_the_value(tmp_path):
    study = _study()
    with pytest.raises(ValueError, match="kind='scatter'"):
        tune.plot(study, "scatter")
    with pytest.raises(ValueError, match=r"front\.jpg"):
        tune.plot(study, "pareto", tmp_path / "front.jpg")
    one = Study({"x": Float(0.0, 1.0)}, {"y": "min"}, sampler=Random(0), name="one")
    with pytest.raises(ValueError, match="no completed trial"):
        tune.plot_data(one, "hypervolume")
    one.tell(one.ask(), {"y": 0.5})
    with pytest.raises(ValueError, match=r"two or more objectives.*\['y'\]"):
        tune.plot_data(one, "pareto")
    assert tune.plot_data(one, "hypervolume")["hypervolume"] == one.hypervolume_history()
