import pytest
import torch

import kiln
from kiln import callbacks as C
from kiln import layers as L
from kiln.train import NonFiniteLossError


def _model(out=3):
    return kiln.Sequential([kiln.Input((4,)), L.Dense(out)])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizer": "adamm", "loss": "mse"}, "Unknown optimizer 'adamm'"),
        ({"loss": "crossentropy"}, "Unknown loss 'crossentropy'"),
        ({"loss": "mse", "metrics": ["acuracy"]}, "Unknown metric 'acuracy'"),
    ],
)
def test_unknown_names_list_the_known_ones(kwargs, match):
    model = _model()
    model.compile(device="cpu", **kwargs)
    with pytest.raises(ValueError, match=match):
        model.fit(torch.randn(8, 4), torch.randn(8, 3), verbose=0)


def test_keras_names_are_accepted():
    model = kiln.Sequential([kiln.Input((4,)), L.Dense(3, activation="softmax")])
    model.compile(
        optimizer="Adam",
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
        device="cpu",
    )
    history = model.fit(torch.randn(16, 4), torch.randint(0, 3, (16,)), verbose=0)
    assert "sparse_categorical_accuracy" in history.history


def test_labels_out_of_range():
    model = _model(3)
    model.compile(loss="cross_entropy", device="cpu")
    with pytest.raises(
        ValueError, match=r"labels must be in \[0, 2\]; received labels in \[0, 7\]"
    ):
        model.fit(torch.randn(8, 4), torch.tensor([0, 1, 2, 7, 0, 1, 2, 0]), verbose=0)


def test_float_labels_for_class_loss():
    model = _model(3)
    model.compile(loss="cross_entropy", device="cpu")
    with pytest.raises(TypeError, match="integer class labels, received float32"):
        model.fit(torch.randn(8, 4), torch.rand(8), verbose=0)


def test_keras_probability_loss_given_logits():
    model = _model(3)
    model.compile(loss="sparse_categorical_crossentropy", device="cpu")
    with pytest.raises(ValueError, match="look like logits"):
        model.fit(torch.randn(8, 4) * 10, torch.randint(0, 3, (8,)), verbose=0)


def test_regression_target_shape_mismatch():
    model = _model(1)
    model.compile(loss="mse", device="cpu")
    with pytest.raises(ValueError, match=r"outputs have per-sample shape \(1,\), targets \(\)"):
        model.fit(torch.randn(8, 4), torch.randn(8), verbose=0)


def test_wrong_input_shape_in_fit():
    model = kiln.Sequential([kiln.Input((1, 28, 28)), L.Flatten(), L.Dense(10)])
    model.compile(loss="cross_entropy", device="cpu")
    with pytest.raises(ValueError, match=r"received a batch of shape \(32, 28, 28\)"):
        model.fit(torch.randn(64, 28, 28), torch.randint(0, 10, (64,)), verbose=0)


def test_fit_before_compile():
    with pytest.raises(RuntimeError, match="compile"):
        _model().fit(torch.randn(8, 4), torch.randn(8, 3))


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    x = torch.randn(64, 4)
    y = torch.randn(64, 3)
    x[40] = float("nan")  # step 6 of epoch 2 (batch 8, no shuffle) sees it
    model = _model(3)
    model.compile(optimizer="sgd", loss="mse", device="cpu", log_every=1000)
    ckpt = tmp_path / "last.kiln"
    model.fit(
        x[:40],
        y[:40],
        epochs=1,
        batch_size=8,
        shuffle=False,
        verbose=0,
        callbacks=[C.ModelCheckpoint(str(ckpt))],
    )
    good = kiln.load_model(ckpt).state_dict()
    with pytest.raises(NonFiniteLossError, match=r"step 11 \(epoch 1, batch 6\)") as info:
        model.fit(
            x,
            y,
            epochs=1,
            batch_size=8,
            shuffle=False,
            verbose=0,
            callbacks=[C.ModelCheckpoint(str(ckpt))],
        )
    assert info.value.step == 11
    for k, v in kiln.load_model(ckpt).state_dict().items():
        assert torch.equal(v, good[k])
