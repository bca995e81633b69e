import gc
import weakref

import pytest
import torch
import torch.nn.functional as F

import kiln
from kiln import layers as L


def _two_in_two_out():
    a, b = kiln.Input((6,), name="a"), kiln.Input((3,), name="b")
    shared = L.Dense(4, name="shared")
    h = L.Concatenate()([shared(a), L.Dense(4)(b)])
    return kiln.Model([a, b], [L.Dense(2, name="head1")(h), L.Dense(1, name="head2")(h)]), shared


def test_multi_input_multi_output_matches_reference_math():
    model, _ = _two_in_two_out()
    a, b = torch.randn(5, 6), torch.randn(5, 3)
    out1, out2 = model(a, b)
    sd = model.state_dict()
    h = torch.cat(
        [
            F.linear(a, sd["shared.weight"], sd["shared.bias"]),
            F.linear(b, sd["dense.weight"], sd["dense.bias"]),
        ],
        dim=1,
    )
    torch.testing.assert_close(out1, F.linear(h, sd["head1.weight"], sd["head1.bias"]))
    torch.testing.assert_close(out2, F.linear(h, sd["head2.weight"], sd["head2.bias"]))
    # the same inputs as a list or by name
    torch.testing.assert_close(model([a, b])[0], out1)
    torch.testing.assert_close(model(a=a, b=b)[1], out2)


def test_shared_layer_is_one_module_with_one_set_of_weights():
    x = kiln.Input((4,))
    dense = L.Dense(4)
    model = kiln.Model(x, dense(dense(x)))
    assert len(list(model.children())) == 1
    t = torch.randn(2, 4)
    w, b = dense.weight, dense.bias
    torch.testing.assert_close(model(t), F.linear(F.linear(t, w, b), w, b))


def test_dict_outputs_and_symbolic_shapes():
    x = kiln.Input((1, 28, 28))
    h = L.Conv2D(6, 5)(x)
    assert h.shape == (None, 6, 24, 24)
    model = kiln.Model(x, {"features": h, "logits": L.Dense(3)(L.Flatten()(h))})
    out = model(torch.randn(2, 1, 28, 28))
    assert set(out) == {"features", "logits"} and out["logits"].shape == (2, 3)


def test_missing_input_and_wrong_input_count_are_clear():
    a, b = kiln.Input((2,)), kiln.Input((2,))
    out = L.Add()([a, b])
    with pytest.raises(ValueError, match="not in `inputs`"):
        kiln.Model(a, out)
    model = kiln.Model([a, b], out)
    with pytest.raises(ValueError, match=r"takes 2 input\(s\).*received 1"):
        model(torch.randn(3, 2))


def test_subclassed_model_without_forward_explains():
    with pytest.raises(NotImplementedError, match="define forward"):
        kiln.Model()(torch.zeros(1))


def test_an_output_no_later_layer_reads_is_released_during_the_forward():
    # eager PyTorch frees a tensor once nothing refers to it; the graph runner must not keep
    # every layer's output alive to the end of the forward (peak memory of deep models)
    seen = []

    def remember(x):
        seen.append(weakref.ref(x))
        return x

    def released(x):
        gc.collect()
        return x + (0.0 if seen[0]() is None else float("nan"))

    inputs = kiln.Input((4,))
    h = L.Lambda(lambda x: x * 2)(inputs)
    h = L.Lambda(remember)(L.Lambda(torch.exp)(h))  # `seen` holds exp's output, weakly
    h = L.Lambda(torch.tanh)(h)  # the last reader of exp's output
    skip = L.Lambda(lambda x: x - 1)(inputs)  # the input stays: it is read again below
    out = L.Lambda(released)(L.Add()([h, skip]))
    model = kiln.Model(inputs, out)
    x = torch.randn(3, 4)
    seen.clear()  # building the model ran the layers on example tensors
    with torch.no_grad():  # so autograd holds nothing either
        y = model(x)
    assert not torch.isnan(y).any(), "exp's output was still alive at the last layer"
    torch.testing.assert_close(y, torch.tanh(torch.exp(2 * x)) + x - 1)
