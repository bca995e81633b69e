"""Search spaces: validation errors echo the value, the unit-cube encoding round-trips."""

import numpy as np
import pytest

from kiln.tune import Categorical, Float, Int, LinearConstraint, Space


def _space() -> Space:
    return Space(
        {
            "lr": Float(1e-4, 1e-1, log=True),
            "units": Int(8, 512, log=True),
            "layers": Int(1, 4),
            "opt": Categorical(["adam", "sgd"]),
            "momentum": Float(0.0, 0.99, when={"opt": "sgd"}),
            "epochs": 5,
        }
    )


def test_decode_gives_valid_params_and_encode_inverts_it():
    space, rng = _space(), np.random.default_rng(0)
    for _ in range(200):
        params = space.decode(rng.random(space.dims))
        assert space.validate(params) == params
        assert ("momentum" in params) == (params["opt"] == "sgd")
        assert space.decode(space.encode(params)) == pytest.approx(params)


def test_floats_with_integer_bounds_decode_to_floats_at_the_bounds_too():
    space = Space({"x": Float(0, 1)})
    assert [type(space.decode([u])["x"]) for u in (0.0, 0.5, 1.0)] == [float] * 3


def test_ints_cover_their_endpoints_evenly():
    space = Space({"k": Int(1, 4)})
    counts = np.bincount([space.decode([u])["k"] for u in np.linspace(0, 1, 4000)], minlength=5)
    assert counts[1:] == pytest.approx([1000] * 4, abs=2)


def test_log_floats_are_log_uniform():
    space = Space({"lr": Float(1e-4, 1e-0, log=True)})
    assert space.decode([0.5])["lr"] == pytest.approx(1e-2)
    assert space.encode({"lr": 1e-3}) == pytest.approx([0.25])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Float(1.0, 0.0), "low=1.0, high=0.0"),
        (lambda: Float(0.0, 1.0, log=True), "low=0.0"),
        (lambda: Int(1.5, 3), "low=1.5"),
        (lambda: Categorical([]), "Received: []"),
        (lambda: Categorical(["a", "a"]), "distinct"),
        (lambda: Space({"m": Float(0, 1, when={"opt": "sgd"})}), "'opt': 'sgd'"),
        (
            lambda: Space(
                {"x": Float(0, 1, log=False), "y": Float(1, 2, log=True)},
                [({"x": 1, "y": 1}, "<=", 1)],
            ),
            "'y'",
        ),
        (lambda: LinearConstraint({"x": 1}, "<", 1), "'<'"),
    ],
)
def test_bad_definitions_say_what_came(make, message):
    with pytest.raises((ValueError, TypeError)) as info:
        make()
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lr": 1.0, "units": 8, "layers": 1, "opt": "adam"}, "lr=1.0"),
        ({"lr": 1e-3, "units": 8.5, "layers": 1, "opt": "adam"}, "units=8.5"),
        ({"lr": 1e-3, "units": 8, "layers": 1, "opt": "rmsprop"}, "opt='rmsprop'"),
        ({"lr": 1e-3, "units": 8, "layers": 1, "opt": "adam", "momentum": 0.9}, "Inactive"),
        ({"lr": 1e-3, "units": 8, "layers": 1, "opt": "sgd"}, "Missing parameters ['momentum']"),
        ({"lr": 1e-3, "units": 8, "layers": 1, "opt": "adam", "epochs": 6}, "fixed to 5"),
        ({"lr": 1e-3, "units": 8, "layers": 1, "opt": "adam", "dropout": 0.1}, "Unknown"),
    ],
)
def test_invalid_params_are_rejected_with_the_value(params, message):
    with pytest.raises(ValueError) as info:
        _space().validate(params)
    assert message in str(info.value)


def test_linear_constraints_in_the_unit_cube_match_the_original_ones():
    space = Space({"x": Float(-1.0, 3.0), "y": Int(0, 10)}, [({"x": 2, "y": 1}, "<=", 4.0)])
    (idx, coef, rhs), rng = space.unit_inequalities()[0], np.random.default_rng(1)
    for u in rng.random((500, 2)):
        lo, hi = (-1.0, 3.0), (-0.5, 10.5)
        x, y = lo[0] + u[0] * (lo[1] - lo[0]), hi[0] + u[1] * (hi[1] - hi[0])
        assert (2 * x + y <= 4.0) == (sum(c * u[i] for i, c in zip(idx, coef)) >= rhs)


def test_json_round_trip():
    space = Space({**_space().params, "a": Float(0, 1)}, [({"a": 1.0}, "<=", 0.5)])
    again = Space.from_json(space.to_json())
    assert again.to_json() == space.to_json()
    assert again.decode([0.3] * space.dims) == space.decode([0.3] * space.dims)


def test_json_form_may_leave_out_fixed_and_linear_constraints():
    space = Space.from_json({"params": {"n": {"type": "Int", "low": 1, "high": 3}}})
    assert space.to_json() == Space({"n": Int(1, 3)}).to_json()


@pytest.mark.parametrize(("data", "message"), [
    ({"x": {"type": "Float"}}, "A space's JSON form is"),
    ({"params": {"x": {"type": "Real", "low": 0}}}, "Received: {'type': 'Real', 'low': 0}"),
    ({"params": {"x": {"type": "Float", "low": 2, "high": 1}}}, "low=2, high=1"),
    ({"params": {"x": {"type": "Int", "low": 0.5, "high": 2}}}, "low=0.5, high=2"),
    ({"params": {"x": {"type": "Float", "lo": 0, "high": 1}}}, "argument 'lo'"),
    ({"params": {"x": {"type": "Float", "low": 0, "high": 1}}, "linear_constraints": [[{"x": 1}]]},
     "Received: [{'x': 1}]"),
])  # fmt: skip
def test_a_bad_json_form_names_the_rule_and_echoes_the_part(data, message):
    with pytest.raises(ValueError) as info:
        Space.from_json(data)
    assert message in str(info.value)


def test_one_hot_combinations_enumerate_joint_choices():
    space = Space({"a": Categorical([1, 2]), "x": Float(0, 1), "b": Categorical(["u", "v", "w"])})
    combos = space.one_hot_combinations(limit=6)
    assert len(combos) == 6
    assert {(space.decode([c[0], c[1], 0.5, c[3], c[4], c[5]])["a"],
             space.decode([c[0], c[1], 0.5, c[3], c[4], c[5]])["b"]) for c in combos} == {
        (a, b) for a in (1, 2) for b in "uvw"}  # fmt: skip
    assert space.one_hot_combinations(limit=5) is None
    assert space.categorical_dims() == [0, 1, 3, 4, 5]
