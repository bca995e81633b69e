from __future__ import annotations

import re

import pytest
import torch
from torch import Tensor, nn
from torch.testing import assert_close

import kiln.layers as L

from ._oracle import assert_same

TORCH = {"LSTM": nn.LSTM, "GRU": nn.GRU}


def _pair(cls_name: str, device: torch.device, **kwargs: object) -> tuple[L.Layer, nn.RNNBase]:
    """A built kiln layer and the torch module holding its weights."""
    layer = getattr(L, cls_name)(6, **kwargs)
    layer(torch.zeros(1, 2, 5, device=device))
    rnn_kwargs = {k: v for k, v in kwargs.items() if k in ("bidirectional", "num_layers")}
    ref = TORCH[cls_name](5, 6, batch_first=True, **rnn_kwargs).to(device)
    ref.load_state_dict(layer.rnn.state_dict())
    return layer, ref


def _final(state: Tensor, directions: int) -> Tensor:
    return torch.cat(list(state[-directions:]), -1)


@pytest.mark.parametrize("cls_name", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_outputs_and_states_match_torch(
    cls_name: str, bidirectional: bool, num_layers: int, device: torch.device
) -> None:
    kw = {"bidirectional": bidirectional, "num_layers": num_layers}
    x = torch.randn(3, 4, 5, device=device)
    dirs = 2 if bidirectional else 1

    layer, ref = _pair(cls_name, device, return_sequences=True, **kw)
    assert_same(layer, lambda t: ref(t)[0], x, layer.parameters(), ref.parameters())
    assert layer(x).shape == (3, 4, 6 * dirs)

    layer, ref = _pair(cls_name, device, return_state=True, **kw)

    def reference(t: Tensor) -> tuple[Tensor, ...]:
        _, state = ref(t)
        states = state if isinstance(state, tuple) else (state,)
        finals = [_final(s, dirs) for s in states]
        return (finals[0], *finals)

    assert_same(layer, reference, x, layer.parameters(), ref.parameters())
    outputs = layer(x)
    assert len(outputs) == (3 if cls_name == "LSTM" else 2)
    assert all(o.shape == (3, 6 * dirs) for o in outputs)
    full, _ = ref(x)
    assert_close(outputs[0][:, :6], full[:, -1, :6])  # forward direction: last step
    if bidirectional:  # backward direction's final state is its output at step 0
        assert_close(outputs[0][:, 6:], full[:, 0, 6:])


@pytest.mark.parametrize("cls_name", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_initial_state(cls_name: str, bidirectional: bool, device: torch.device) -> None:
    layer, ref = _pair(cls_name, device, return_sequences=True, bidirectional=bidirectional)
    dirs = 2 if bidirectional else 1
    x = torch.randn(3, 4, 5, device=device)
    states = [torch.randn(3, 6 * dirs, device=device) for _ in range(layer.n_states)]
    torch_states = [s.reshape(3, dirs, 6).transpose(0, 1).contiguous() for s in states]
    hx = tuple(torch_states) if cls_name == "LSTM" else torch_states[0]
    assert_close(layer(x, states), ref(x, hx)[0])
    with pytest.raises(ValueError, match=re.escape(f"Received: shapes [(3, {6 * dirs + 1})]")):
        layer(x, [torch.zeros(3, 6 * dirs + 1)])


def test_initial_state_in_a_functional_graph() -> None:
    seq = L.Input((None, 5))
    _, h, c = L.LSTM(6, return_state=True)(seq)
    out = L.LSTM(6, return_sequences=True)(seq, [h, c])
    assert (h.shape, c.shape, out.shape) == ((None, 6), (None, 6), (None, None, 6))


def test_keras_default_initialization() -> None:
    layer = L.LSTM(4)
    layer(torch.zeros(1, 2, 3))
    w_hh = layer.rnn.weight_hh_l0
    assert_close(w_hh.T @ w_hh, torch.eye(4), atol=1e-5, rtol=0)  # orthogonal
    assert layer.rnn.bias_ih_l0.tolist() == [0.0] * 4 + [1.0] * 4 + [0.0] * 8  # forget gate
    assert layer.rnn.bias_hh_l0.eq(0).all()
    gru = L.GRU(
        4, kernel_initializer="torch", recurrent_initializer="torch", bias_initializer="torch"
    )
    gru(torch.zeros(1, 2, 3))
    assert all(p.abs().max() <= 0.5 for p in gru.parameters())  # U(+-1/sqrt(units))


def test_symbolic_shapes_keep_none() -> None:
    x = L.Input((None, 8))
    assert L.LSTM(4, return_sequences=True)(x).shape == (None, None, 4)
    assert L.GRU(4, bidirectional=True)(x).shape == (None, 8)
    out, h = L.GRU(4, return_state=True, return_sequences=True)(x)
    assert out.shape == (None, None, 4) and h.shape == (None, 4)


def test_recurrent_errors() -> None:
    with pytest.raises(
        ValueError,
        match=r"LSTM expects inputs of shape \(batch, time, features\)"
        r".*\(2, 8\)",
    ):
        L.LSTM(4)(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="Received: units=0"):
        L.GRU(0)
    with pytest.raises(ValueError, match=re.escape("Received: dropout=1.5")):
        L.LSTM(3, dropout=1.5)
    layer = L.GRU(3)
    layer(torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"built for inputs with 4 features.*\(1, 2, 5\)"):
        layer(torch.zeros(1, 2, 5))
