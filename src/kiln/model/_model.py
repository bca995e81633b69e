"""``kiln.Model``: a torch module with Keras's compile/fit/evaluate/predict/save."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kiln.model._graph import Graph, InputSpec


class Model(nn.Module):
    """A trainable model. Three ways to make one:

    - functional: ``kiln.Model(inputs, outputs)`` with ``kiln.Input`` s and layer calls;
    - ``kiln.Sequential([...])``, a stack of layers or any torch modules;
    - subclassing: define ``forward`` (and layers in ``__init__``) as with ``nn.Module``.

    Training, evaluation and prediction live in ``kiln.train``; these methods only forward to it.
    """

    def __init__(self, inputs: Any = None, outputs: Any = None, name: str | None = None) -> None:
        super().__init__()
        self.name = name
        self._compile_args: dict[str, Any] | None = None
        self._trainer: Any = None
        self._graph: Graph | None = None
        if inputs is None and outputs is None:
            return
        if inputs is None or outputs is None:
            raise ValueError(
                "A functional model needs both inputs and outputs: Model(inputs, outputs)."
            )
        self._graph, modules = Graph.trace(inputs, outputs)
        for layer_name, module in modules.items():
            self.add_module(layer_name, module)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._graph is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no forward(): subclass kiln.Model and define "
                "forward(), or build a functional model with kiln.Model(inputs, outputs)."
            )
        return self._graph.run(self, args, kwargs)

    @property
    def input_specs(self) -> list[InputSpec] | None:
        """Per-sample shapes and dtypes of the inputs, when known."""
        return self._graph.inputs if self._graph is not None else None

    @property
    def built(self) -> bool:
        return self.input_specs is not None

    # ---- training (implemented in kiln.train) -------------------------------------------

    def compile(  # type: ignore[override]  # nn.Module.compile is torch.compile in place
        self,
        optimizer: Any = "adam",
        loss: Any = None,
        metrics: Any = None,
        loss_weights: Any = None,
        **options: Any,
    ) -> None:
        """Choose the optimizer, loss(es) and metrics; names (kiln's or Keras's) or objects.

        ``options`` go to ``kiln.train.Trainer`` (e.g. ``device``, ``lr``, ``log_every``).
        """
        self._compile_args = dict(
            optimizer=optimizer, loss=loss, metrics=metrics, loss_weights=loss_weights, **options
        )
        self._trainer = None

    def fit(self, x: Any = None, y: Any = None, **kwargs: Any) -> Any:
        """Train; see ``kiln.train.Trainer.fit``. Returns a History."""
        return self._get_trainer().fit(x, y, **kwargs)

    def evaluate(self, x: Any = None, y: Any = None, **kwargs: Any) -> dict[str, float]:
        """Loss and metrics on the given data; see ``kiln.train.Trainer.evaluate``."""
        return self._get_trainer().evaluate(x, y, **kwargs)

    def predict(self, x: Any, **kwargs: Any) -> Any:
        """Outputs for ``x`` as CPU tensors, computed in batches; see ``Trainer.predict``."""
        return self._get_trainer(require_compiled=False).predict(x, **kwargs)

    def _get_trainer(self, require_compiled: bool = True) -> Any:
        from kiln.train import Trainer

        if self._trainer is None:
            if self._compile_args is None:
                if require_compiled:
                    raise RuntimeError(
                        "Call model.compile(optimizer=..., loss=...) before fit() or evaluate()."
                    )
                return Trainer(self)
            self._trainer = Trainer(self, **self._compile_args)
        return self._trainer

    # ---- inspection and saving -----------------------------------------------------------

    def summary(self, input_shape: Any = None) -> None:
        """Print each layer's output shape and parameter count."""
        from kiln.model._summary import print_summary

        print_summary(self, input_shape)

    def build(self, input_shape: Any) -> None:
        """Create lazy weights by running a small batch of zeros of per-sample ``input_shape``."""
        from kiln.model._summary import probe

        probe(self, input_shape)

    def get_config(self) -> dict[str, Any]:
        if self._graph is None:
            raise TypeError(
                f"{type(self).__name__} is a subclassed model: its architecture is Python code, "
                "not data. Save weights with model.save_weights(path), or give the class "
                "get_config()/from_config()."
            )
        from kiln.model._serialize import module_config

        layers = {name: module_config(m) for name, m in self.named_children()}
        return {"name": self.name, "layers": layers, "graph": self._graph.to_config()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Model:
        from kiln.model._serialize import module_from_config

        model = cls(name=config.get("name"))
        for name, spec in config["layers"].items():
            model.add_module(name, module_from_config(spec))
        model._graph = Graph.from_config(config["graph"])
        model.build([s.shape for s in model._graph.inputs])
        return model

    def save(self, path: str, state_dict: dict[str, Any] | None = None) -> None:
        """Write one file: safetensors weights with the JSON architecture in its header.

        ``state_dict``: the weights to write, when they are not this module's own (a sharded
        model's gathered weights); by default ``self.state_dict()``.
        """
        from kiln.model._saving import save_model

        save_model(self, path, state_dict)

    def save_weights(self, path: str) -> None:
        from kiln.model._saving import save_weights

        save_weights(self, path)

    def load_weights(self, path: str) -> None:
        from kiln.model._saving import load_weights

        load_weights(self, path)

    def count_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _input_dtypes(self) -> list[torch.dtype]:
        specs = self.input_specs or []
        return [getattr(torch, s.dtype) for s in specs]
