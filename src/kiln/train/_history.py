"""What ``fit`` returns, and the error it raises when the loss stops being a number."""

from __future__ import annotations


class NonFiniteLossError(FloatingPointError):
    """A NaN or infinite loss: ``step`` says where, ``history`` holds the epochs before it."""

    def __init__(self, message: str, step: int, history: dict[str, list[float]]) -> None:
        super().__init__(message)
        self.step = step
        self.history = history


class History:
    """What ``fit`` returns: per-epoch logs, as in Keras (``history.history["loss"]``)."""

    def __init__(self, history: dict[str, list[float]], epochs: list[int]) -> None:
        self.history = history
        self.epoch = epochs

    def __repr__(self) -> str:
        last = {k: round(v[-1], 4) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"
