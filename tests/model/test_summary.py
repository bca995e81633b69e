import pytest
from torch import nn

import kiln
from kiln import layers as L


def test_summary_shapes_and_counts(capsys):
    model = kiln.zoo.create_model("lenet5")
    model.summary()
    out = capsys.readouterr().out
    assert "(None, 6, 28, 28)" in out and "(None, 16, 10, 10)" in out and "(None, 10)" in out
    assert "Total params: 61,706" in out
    assert model.count_params() == 61_706


def test_summary_keeps_unknown_dims_as_none(capsys):
    x = kiln.Input((None, 8))
    kiln.Model(x, L.LSTM(4, return_sequences=True)(x)).summary()
    assert "(None, None, 4)" in capsys.readouterr().out


def test_summary_of_unbuilt_model_says_how_to_build():
    with pytest.raises(ValueError, match="not built"):
        kiln.Sequential([L.Dense(3)]).summary()


def test_summary_of_subclassed_model_with_input_shape(capsys):
    class Net(kiln.Model):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(5, 3)
            self.frozen = nn.Linear(3, 2)
            self.frozen.requires_grad_(False)

        def forward(self, x):
            return self.frozen(self.body(x))

    Net().summary(input_shape=(5,))
    out = capsys.readouterr().out
    assert "Trainable params: 18" in out and "Non-trainable params: 8" in out
    assert "(None, 2)" in out
