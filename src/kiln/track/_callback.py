"""``TrackingCallback``: records a ``fit`` as a run of a ``Store`` (config, system, metrics)."""

from __future__ import annotations

import os
import traceback
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kiln.train._callback import Callback, Logs

if TYPE_CHECKING:
    from kiln.track._run import Run
    from kiln.track._store import Store
    from kiln.train._trainer import Trainer


class TrackingCallback(Callback):
    """Record training in ``store`` (a ``Store``, a URL, or None for ``$KILN_STORE`` /
    ``./kiln.db``) as run ``name``, with ``config`` (hyperparameters) merged over what the
    trainer tells (optimizer, learning rate, epochs, precision, model, parameter count).

    Per-step logs (every ``log_every`` steps) are recorded under their names (``loss``); epoch
    logs under ``epoch_<name>`` (``epoch_loss``, ``epoch_val_accuracy``). Writes go through
    the run's background recorder; a store that cannot be opened warns and training goes on
    untracked. A resumed training continues the same run. Main process only.
    """

    def __init__(
        self, store: Store | str | os.PathLike[str] | None = None, name: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        self._store_arg, self.name, self.config = store, name, dict(config or {})
        self.run: Run | None = None
        self._resume_id: int | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        if not trainer.is_main_process:
            return
        from kiln.track._store import Store
        from kiln.track._system import system_info

        try:
            store = (
                self._store_arg if isinstance(self._store_arg, Store) else _open(self._store_arg)
            )
            if self._resume_id is not None:
                self.run = store.resume_run(self._resume_id)
            else:
                name = self.name or _model_name(trainer.model)
                config = {**trainer_config(trainer), **self.config}
                self.run = store.create_run(name, config, system=system_info())
        except Exception as error:
            warnings.warn(f"kiln.track: training goes on untracked, the store cannot be opened "
                          f"({type(error).__name__}: {error}). Set KILN_STORE or pass "
                          "track=False.", RuntimeWarning, stacklevel=2)  # fmt: skip
            self.run = None

    def on_batch_end(self, trainer: Trainer, step: int, logs: Logs | None) -> None:
        if self.run is not None and logs is not None:
            self.run.log_metrics(logs, step=step, epoch=trainer.epoch)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        if self.run is not None:
            epoch_logs = {f"epoch_{k}": v for k, v in logs.items()}
            self.run.log_metrics(epoch_logs, step=trainer.step, epoch=epoch)

    def on_train_end(self, trainer: Trainer, logs: Logs) -> None:
        if self.run is not None:
            self.run.finish("finished", timeout=10)

    def on_train_error(self, trainer: Trainer, error: BaseException) -> None:
        """For the trainer to call when ``fit`` raises: marks the run failed (or killed on
        Ctrl-C) with the traceback."""
        if self.run is not None:
            status = "killed" if isinstance(error, KeyboardInterrupt) else "failed"
            text = "".join(traceback.format_exception(error))[-4000:]
            self.run.finish(status, text, timeout=10)

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run.id} if self.run is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_id = state.get("run_id")


_stores: dict[tuple[int, str], Store] = {}


def _open(url: str | os.PathLike[str] | None) -> Store:
    """One Store (engine, connection pool) per URL and process, shared by every fit (a forked
    child opens its own: database connections must not cross a fork)."""
    from kiln.track._store import Store
    from kiln.track._url import resolve_url

    key = (os.getpid(), resolve_url(url))
    if key not in _stores:
        _stores[key] = Store(key[1])
    return _stores[key]


def trainer_config(trainer: Trainer) -> dict[str, Any]:
    """What the trainer knows about the training: the hyperparameters a run should show."""
    model, optimizer = trainer.model, trainer.optimizer
    config: dict[str, Any] = {
        "model": _model_name(model),
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": trainer.epochs,
        "steps_per_epoch": trainer.steps_per_epoch,
        "log_every": getattr(trainer, "log_every", None),
        "precision": getattr(trainer, "precision", None),
        "device": str(getattr(trainer, "device", "")),
    }
    if optimizer is not None:
        config["optimizer"] = type(optimizer).__name__
        group = optimizer.param_groups[0]
        config.update(
            {k: float(group[k]) for k in ("lr", "weight_decay", "momentum") if k in group}
        )  # a CUDA-graph step keeps its lr in a device tensor
    losses = getattr(getattr(trainer, "objective", None), "losses", None)
    if losses:
        config["loss"] = ", ".join(name for name, _ in losses)
    return config


def _model_name(model: Any) -> str:
    return getattr(model, "name", None) or type(model).__name__
