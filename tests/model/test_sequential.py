import pytest
import torch
from torch import nn

import kiln
from kiln import layers as L


def test_sequential_matches_torch_reference_after_weight_copy():
    model = kiln.Sequential([kiln.Input((1, 12, 12)), L.Conv2D(4, 3), L.Flatten(), L.Dense(5)])
    ref = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 10 * 10, 5))
    ref.load_state_dict(model.state_dict())
    x = torch.randn(3, 1, 12, 12)
    torch.testing.assert_close(model(x), ref(x))


def test_layer_forms_are_equivalent():
    a = kiln.Sequential([L.Dense(3), L.Dense(2)])
    b = kiln.Sequential(L.Dense(3), L.Dense(2))
    c = kiln.Sequential([L.Dense(3)], [L.Dense(2)])
    assert [type(m) for m in a.layers] == [type(m) for m in b.layers] == [type(m) for m in c.layers]
    assert len(c) == 2


def test_builds_from_first_batch_and_accepts_torch_modules():
    model = kiln.Sequential([L.Dense(8), nn.ReLU(), L.Dense(2)])
    assert model.input_specs is None
    out = model(torch.randn(5, 7))  # lazy: weights made from this batch
    assert out.shape == (5, 2)
    assert model[0].weight.shape == (8, 7)


def test_input_shape_is_checked_with_a_clear_message():
    model = kiln.Sequential([kiln.Input((1, 28, 28)), L.Flatten(), L.Dense(10)])
    with pytest.raises(ValueError, match=r"\(1, 28, 28\).*received a batch of shape \(4, 28, 28\)"):
        model(torch.randn(4, 28, 28))
    with pytest.raises(TypeError, match="expects dtype float32, received uint8"):
        model(torch.zeros(4, 1, 28, 28, dtype=torch.uint8))


def test_input_must_come_first():
    with pytest.raises(ValueError, match="first entry"):
        kiln.Sequential([L.Dense(2), kiln.Input((3,))])


def test_rejects_non_modules():
    with pytest.raises(TypeError, match="received 'relu'"):
        kiln.Sequential(["relu"])
