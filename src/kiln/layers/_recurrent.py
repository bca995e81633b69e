"""LSTM and GRU over batch-first sequences (batch, time, features), on torch's cuDNN kernels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from kiln.layers import _initializers as initializers
from kiln.layers._base import Layer
from kiln.layers._config import serialize_callables
from kiln.layers._validate import expect_rank, expect_size, fraction, positive_int

_LAYOUT = "(batch, time, features)"


class _RNN(Layer):
    """Shared by LSTM and GRU: a torch ``nn.LSTM``/``nn.GRU`` held as the child ``rnn``.

    The state dict therefore has torch's keys (``rnn.weight_ih_l0``, ...). Gates use tanh and
    sigmoid, the only activations cuDNN offers.

    Outputs, as in Keras:

    - ``return_sequences=False``: the final output, (batch, directions * units); for a
      bidirectional layer, the forward direction's last step next to the backward direction's
      first step (each direction's final state), not ``output[:, -1]``.
    - ``return_sequences=True``: every step, (batch, time, directions * units).
    - ``return_state=True``: ``(output, h, c)`` for LSTM, ``(output, h)`` for GRU, each state
      the last stacked layer's final state, (batch, directions * units), forward first.

    ``initial_state`` (a list of tensors in the same layout as the returned states) can be
    passed as second argument, e.g. ``decoder(x, [h, c])``, for a single-layer RNN.
    ``dropout`` is PyTorch's: applied between stacked layers, so it needs ``num_layers > 1``.
    Initializers default to Keras's: glorot_uniform inputs kernels, orthogonal recurrent kernels,
    zero biases; "torch" gives PyTorch's U(-1/sqrt(units), 1/sqrt(units)).
    """

    torch_cls: ClassVar[type[nn.RNNBase]]
    n_states: ClassVar[int]

    def __init__(
        self,
        units: int,
        return_sequences: bool = False,
        return_state: bool = False,
        bidirectional: bool = False,
        num_layers: int = 1,
        dropout: float = 0.0,
        kernel_initializer: initializers.InitializerLike = "glorot_uniform",
        recurrent_initializer: initializers.InitializerLike = "orthogonal",
        bias_initializer: initializers.InitializerLike = "zeros",
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        owner = type(self).__name__
        self.units = positive_int(owner, "units", units)
        self.num_layers = positive_int(owner, "num_layers", num_layers)
        self.dropout = fraction(owner, "dropout", dropout)
        self.return_sequences, self.return_state = return_sequences, return_state
        self.bidirectional = bidirectional
        self.directions = 2 if bidirectional else 1
        self.kernel_initializer = initializers.check(kernel_initializer)
        self.recurrent_initializer = initializers.check(recurrent_initializer)
        self.bias_initializer = initializers.check(bias_initializer)

    def build(self, input_shape: Any) -> None:
        shape = input_shape[0] if isinstance(input_shape, list) else input_shape  # x, states
        expect_rank(self, shape, (3,), _LAYOUT)
        self.input_size = shape[2]
        self.rnn = type(self).torch_cls(
            shape[2],
            self.units,
            self.num_layers,
            batch_first=True,
            dropout=self.dropout,
            bidirectional=self.bidirectional,
        )
        self._init_weights()

    def _init_weights(self) -> None:
        default = initializers.torch_uniform(self.units)
        for name, param in self.rnn.named_parameters():
            kind = {"weight_ih": self.kernel_initializer, "weight_hh": self.recurrent_initializer}
            initializers.initialize(param, kind.get(name[:9], self.bias_initializer), default)

    def forward(self, x: Tensor, initial_state: Sequence[Tensor] | Tensor | None = None) -> Any:
        expect_rank(self, x.shape, (3,), _LAYOUT)
        expect_size(self, x.shape, 2, self.input_size, "features")
        output, state = self.rnn(x, self._to_torch_state(initial_state))
        states = state if isinstance(state, tuple) else (state,)
        final = [self._final(s) for s in states]
        result = output if self.return_sequences else final[0]
        return (result, *final) if self.return_state else result

    def _final(self, state: Tensor) -> Tensor:
        """torch's (layers * dirs, batch, units) -> the last layer's (batch, dirs * units)."""
        return torch.cat(list(state[-self.directions :]), dim=-1)

    def _to_torch_state(self, initial: Sequence[Tensor] | Tensor | None) -> Any:
        if initial is None:
            return None
        states = [initial] if isinstance(initial, Tensor) else list(initial)
        want = (self.directions * self.units,)
        owner = type(self).__name__
        if (
            self.num_layers != 1
            or len(states) != self.n_states
            or any(s.dim() != 2 or tuple(s.shape[1:]) != want for s in states)
        ):
            raise ValueError(
                f"{owner} expects initial_state as {self.n_states} tensor(s) of shape (batch, "
                f"{want[0]}) for num_layers=1. Received: shapes "
                f"{[tuple(s.shape) for s in states]}, num_layers={self.num_layers}"
            )
        per_direction = [
            s.reshape(s.shape[0], self.directions, self.units).transpose(0, 1).contiguous()
            for s in states
        ]
        return tuple(per_direction) if self.n_states == 2 else per_direction[0]

    def get_config(self) -> dict[str, Any]:
        return serialize_callables(super().get_config())


class LSTM(_RNN):
    """Long short-term memory; see ``_RNN`` for outputs. ``unit_forget_bias`` (Keras) sets the
    forget-gate bias to 1 after initialization."""

    torch_cls = nn.LSTM
    n_states = 2

    def __init__(
        self,
        units: int,
        return_sequences: bool = False,
        return_state: bool = False,
        bidirectional: bool = False,
        num_layers: int = 1,
        dropout: float = 0.0,
        kernel_initializer: initializers.InitializerLike = "glorot_uniform",
        recurrent_initializer: initializers.InitializerLike = "orthogonal",
        bias_initializer: initializers.InitializerLike = "zeros",
        unit_forget_bias: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(
            units,
            return_sequences,
            return_state,
            bidirectional,
            num_layers,
            dropout,
            kernel_initializer,
            recurrent_initializer,
            bias_initializer,
            name,
        )
        self.unit_forget_bias = unit_forget_bias

    def _init_weights(self) -> None:
        super()._init_weights()
        if self.unit_forget_bias:  # torch's gate order is input, forget, cell, output
            with torch.no_grad():
                for name, param in self.rnn.named_parameters():
                    if name.startswith("bias_ih"):
                        param[self.units : 2 * self.units] = 1.0
                    elif name.startswith("bias_hh"):
                        param[self.units : 2 * self.units] = 0.0


class GRU(_RNN):
    """Gated recurrent unit (cuDNN form: reset gate after the matmul, Keras's reset_after=True);
    see ``_RNN`` for outputs; ``return_state`` gives ``(output, h)``."""

    torch_cls = nn.GRU
    n_states = 1
