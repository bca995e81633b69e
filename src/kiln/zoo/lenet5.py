"""LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998), with ReLU and max pooling as usual today."""

from __future__ import annotations

from kiln import layers as L
from kiln.model import Input, Sequential
from kiln.zoo._registry import register_model


@register_model("lenet5", dataset="mnist", epochs=40, batch_size=64, optimizer="adam",
                loss="cross_entropy", metrics=["accuracy"], schedule="cosine")  # fmt: skip
def lenet5(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
           augment: bool = True) -> Sequential:  # fmt: skip
    """LeNet-5 for 28x28 digits: two 5x5 convolutions, three dense layers (61,706 parameters).

    ``augment`` puts a ``RandomTranslation(0.1)`` in front (shifts of up to 10% in training, the
    identity in inference; no weights), which the small bundled MNIST set needs to reach 98%.
    """
    front = [L.RandomTranslation(0.1)] if augment else []
    return Sequential(
        [Input((in_channels, image_size, image_size)), *front],
        [L.Conv2D(6, 5, padding="same", activation="relu"), L.MaxPool2D(2)],
        [L.Conv2D(16, 5, activation="relu"), L.MaxPool2D(2), L.Flatten()],
        [L.Dense(120, activation="relu"), L.Dense(84, activation="relu"), L.Dense(num_classes)],
        name="lenet5",
    )
