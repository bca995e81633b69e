"""LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998), with ReLU and max pooling as usual today."""

from __future__ import annotations

from kiln import layers as L
from kiln.model import Input, Sequential
from kiln.zoo._registry import register_model


@register_model(
    "lenet5",
    dataset="mnist",
    epochs=12,
    batch_size=128,
    optimizer="adam",
    loss="cross_entropy",
    metrics=["accuracy"],
)
def lenet5(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> Sequential:
    """LeNet-5 for 28x28 digits: two 5x5 convolutions, three dense layers (61,706 parameters)."""
    return Sequential(
        [Input((in_channels, image_size, image_size))],
        [L.Conv2D(6, 5, padding="same", activation="relu"), L.MaxPool2D(2)],
        [L.Conv2D(16, 5, activation="relu"), L.MaxPool2D(2), L.Flatten()],
        [L.Dense(120, activation="relu"), L.Dense(84, activation="relu"), L.Dense(num_classes)],
        name="lenet5",
    )
