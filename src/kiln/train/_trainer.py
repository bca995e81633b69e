"""The training loop: fit, evaluate and predict for any torch module.

Reads top to bottom: resolve data -> build the model from the first batch -> loop over epochs
and steps -> read metrics every ``log_every`` steps (the only host syncs) -> validate ->
callbacks -> resume checkpoint. Everything a step adds to the logs stays on the device.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_map

from kiln.data import make_loader
from kiln.data._device_loader import DeviceLoader
from kiln.train._batches import (
    build_model,
    call_model,
    concat_outputs,
    flatten_lists,
    resolve_precision,
    split_batch,
    unpack_validation,
)
from kiln.train._callback import Callback, Logs
from kiln.train._compile_behind import CompileBehind, CompileHere
from kiln.train._data import assemble, split_tail
from kiln.train._distributed import from_environment, full_state_dict
from kiln.train._fast_path import (
    auto_strategy,
    compile_mode,
    compile_step,
    keep_gathered,
    make_capturable,
    scoped_settings,
    to_channels_last,
    tune_kernels,
    use_background_compile,
    use_channels_last,
    use_compile,
    use_cuda_graphs,
    use_cudnn_benchmark,
    warm_compile_workers,
)
from kiln.train._fp8 import convert_linears
from kiln.train._graphed import CudaGraphStep
from kiln.train._history import History, NonFiniteLossError
from kiln.train._objective import Objective
from kiln.train._optimizers import make_optimizer
from kiln.train._resume import restore_checkpoint, save_checkpoint
from kiln.train._split_adam import split_fused_adam


class Trainer:
    """Trains ``model``; made by ``model.compile`` (any ``nn.Module`` works directly too).

    Options: ``device`` (default: CUDA when available), ``precision`` ("auto": bf16 autocast
    on GPUs that support it, else fp32; or "fp32", "bf16", "fp16" with loss scaling, "fp8":
    float8 linear layers through torchao on GPUs of compute capability >= 8.9, bf16 autocast
    for the rest, see ``_fp8``), ``lr``,
    ``log_every`` (steps between metric reads), ``seed`` (data order), and optimizer options.
    On a GPU, "auto" also turns on ``compile`` (torch.compile of forward + loss; or a mode,
    ``compile="max-autotune-no-cudagraphs"``: longer compiles that time kernel choices;
    ``"coordinate-descent"``: Inductor tunes its own kernels' block sizes, which "auto" picks
    for long fits of large conv nets, see ``_fast_path.tune_kernels``),
    ``cuda_graphs`` (the whole step captured, when the optimizer allows: see ``_fast_path``),
    ``channels_last`` (conv nets) and ``cudnn_benchmark`` (cuDNN times each convolution's
    algorithms at its first new shape; "auto" only for models with large convolutions, see
    ``_fast_path.use_cudnn_benchmark``; in force while fit, evaluate and predict run, the
    process's setting put back after); pass False to turn one off. Autotuning pays back over
    long runs of fixed shapes; in short trials of new architectures (a tuning study) it can
    cost more than the training (on an H100, 1.8 s of a 2.2 s LeNet-5 trial, BENCHMARKS.md).
    ``gather_in_graph=True`` (an experiment) moves the gathering of each batch from
    GPU-resident data into the captured step; measured on an H100 it made LeNet-5 11% slower
    than the default (BENCHMARKS.md), so it stays off.
    ``background_compile`` ("auto": small models whose step is captured on a GPU, see
    ``_fast_path.use_background_compile``) trains with the eager step while a thread compiles
    the step on a copy of the model, then switches (``CompileBehind``): the first epoch no
    longer waits for the compile. fit() returns once the compile is done.
    Started by ``kiln launch`` (torchrun), ``strategy`` "auto" trains with DDP, or with FSDP
    when the model's weights, gradients and optimizer state would take more than half of one
    GPU (``_fast_path.auto_strategy``); "ddp" or "fsdp" choose. Under FSDP,
    ``reshard_after_forward`` "auto" keeps each block's gathered weights until its backward
    where they fit (``_fast_path.keep_gathered``); True frees them after the forward.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Any = "adam",
        loss: Any = None,
        metrics: Any = None,
        loss_weights: Any = None,
        *,
        lr: float | None = None,
        device: str | torch.device | None = None,
        precision: str = "auto",
        log_every: int = 50,
        seed: int = 0,
        compile: bool | str = "auto",
        cuda_graphs: bool | str = "auto",
        channels_last: bool | str = "auto",
        cudnn_benchmark: bool | str = "auto",
        gather_in_graph: bool = False,
        background_compile: bool | str = "auto",
        strategy: str = "auto",
        reshard_after_forward: bool | str = "auto",
        **optimizer_options: Any,
    ) -> None:
        self.model = model
        self.dist = from_environment()  # set when started by `kiln launch` / torchrun
        default = (
            self.dist.device() if self.dist else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.device = torch.device(device or default)
        self.precision = resolve_precision(precision, self.device)
        self._fast_options = {"compile": compile, "cuda_graphs": cuda_graphs,
                              "channels_last": channels_last,
                              "gather_in_graph": gather_in_graph,
                              "background_compile": background_compile}  # fmt: skip
        self._gather_step: CudaGraphStep | None = None
        self.channels_last = False
        self._step_fn: Any = None
        self._captures = False  # whether the step is captured in CUDA graphs
        self.compiles_behind = False  # whether the step compiles behind the training
        self.compile_mode: str | None = None  # the compiled step's mode (None: torch's default)
        self._optimizer_step: Callable[[], Any] | None = None  # chosen with the step
        self._train_model: nn.Module = model  # DistributedDataParallel(model) when distributed
        if strategy not in ("auto", "ddp", "fsdp"):
            raise ValueError(f"strategy must be 'auto', 'ddp' or 'fsdp'; received {strategy!r}.")
        self._strategy_option = strategy
        self.strategy = "ddp" if strategy == "auto" else strategy  # "auto" decides in _setup
        self._reshard = reshard_after_forward  # "auto" decides in _setup, under FSDP
        self.keeps_gathered = False  # whether FSDP keeps gathered weights until the backward
        for name, value in (("cudnn_benchmark", cudnn_benchmark),
                            ("background_compile", background_compile),
                            ("reshard_after_forward", reshard_after_forward)):  # fmt: skip
            if value not in ("auto", True, False):
                raise ValueError(f"{name} must be 'auto', True or False; received {value!r}.")
        self._cudnn_benchmark = cudnn_benchmark  # "auto" decides in _setup, by the model
        self.cudnn_benchmark = cudnn_benchmark is True  # in force while fit & co. run
        self.objective = Objective(loss, metrics, loss_weights) if loss is not None else None
        self._optimizer_spec = (optimizer, lr, optimizer_options)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        self.log_every, self.seed = int(log_every), seed
        self.epoch = self.step = self.steps_per_epoch = self.epochs = 0
        self.history: dict[str, list[float]] = {}
        self.stop_training = False
        self.is_main_process = self.dist is None or self.dist.is_main
        self.verbose = 1
        self.step_in_epoch = 0
        self.global_batch = 0  # samples per optimizer step, all processes together
        # On the device, so the hot loop never syncs: (sum, count) per logged name, the step
        # counter and the first step whose loss was not finite. Sized in _setup.
        self._sums = torch.zeros(0, 2)
        self._batch_rows = 0  # fit's batch size (per process): the shape that is compiled
        self._step_t = torch.zeros(())
        self._first_bad = torch.zeros(())

    # ---- fit ----------------------------------------------------------------------------

    @scoped_settings
    def fit(
        self,
        x: Any = None,
        y: Any = None,
        *,
        batch_size: int = 32,
        epochs: int = 1,
        verbose: int = 1,
        callbacks: list[Callback] | None = None,
        validation_data: Any = None,
        validation_split: float = 0.0,
        shuffle: bool = True,
        class_weight: dict[int, float] | None = None,
        sample_weight: Any = None,
        resume: str | Path | None = None,
        checkpoint_every: int | None = None,
        track: Any = True,
    ) -> History:
        """Train for ``epochs`` epochs; see the class docstring for what is chosen for you.

        ``resume``: a file that holds the full training state. If it exists, training continues
        from it; it is rewritten at every epoch end and every ``checkpoint_every`` steps, so a
        killed run restarted with the same call ends with the same weights.

        ``track``: record the run in kiln's store (True: ``$KILN_STORE`` or ``./kiln.db``; or a
        ``kiln.track.Store`` or URL); ``kiln dashboard`` shows it. False turns it off.
        """
        self._require_objective("fit")
        if self._step_fn is None and use_compile(self._fast_options["compile"], self.device):
            warm_compile_workers()  # they start while the data moves and the step is traced
        data, targets = assemble(x, y, sample_weight, class_weight)
        if validation_split:
            data, validation_data = split_tail(data, validation_split)
        shards: dict[str, Any] = {}
        if self.dist:
            shards = {"rank": self.dist.rank, "world_size": self.dist.world_size}
        loader = make_loader(
            data,
            batch_size=batch_size,
            shuffle=shuffle,
            device=self.device,
            seed=self.seed,
            **shards,
        )
        val_loader = None
        if validation_data is not None:
            xv, yv, wv = unpack_validation(validation_data)
            val_data, _ = assemble(xv, yv, wv, None)
            val_loader = make_loader(
                self._my_part(val_data),
                batch_size=max(batch_size, 256),
                shuffle=False,
                device=self.device,
                seed=self.seed,
            )
        self._batch_rows = batch_size
        self.epochs, self.steps_per_epoch, self.verbose = epochs, len(loader), verbose
        self._setup(next(iter(loader.epoch(0))), targets)
        # made here, not in an earlier evaluate(): the fit's length counts; and made again when
        # this fit is long enough to repay kernel tuning that a shorter one before it skipped
        if self._step_fn is None or (self.compile_mode is None and self._repays_tuning()):
            self._step_fn = self._make_step()
        self._gather_step = self._make_gather_step(loader)
        self.global_batch = batch_size * (self.dist.world_size if self.dist else 1)
        self.stop_training = False
        self.epoch, self.step_in_epoch, self.history = 0, 0, {}
        self._first_bad.zero_()
        callbacks = self._callbacks(callbacks, verbose, batch_size, track)
        if resume is not None and Path(resume).exists():
            self._restore(resume, callbacks)
        for cb in callbacks:
            cb.on_train_begin(self)
        logs: Logs = {}
        try:
            while self.epoch < epochs and not self.stop_training:
                logs = self._run_epoch(loader, val_loader, callbacks, resume, checkpoint_every)
            self._finish_compile()  # it compiles under fit()'s settings: it ends in fit()
        except BaseException as error:  # Ctrl-C too: the tracked run says how it ended
            if not isinstance(error, KeyboardInterrupt):  # Ctrl-C does not wait: the next
                self._finish_compile(raise_error=False)  # fit() takes the compile's step
            for cb in callbacks:
                cb.on_train_error(self, error)
            raise
        for cb in callbacks:
            cb.on_train_end(self, logs)
        epochs_done = len(next(iter(self.history.values()), []))
        return History(self.history, list(range(epochs_done)))

    def _run_epoch(
        self,
        loader: Any,
        val_loader: Any,
        callbacks: list[Callback],
        resume: str | Path | None,
        checkpoint_every: int | None,
    ) -> Logs:
        epoch = self.epoch
        for cb in callbacks:
            cb.on_epoch_begin(self, epoch)
        if self.step_in_epoch == 0:
            self._sums.zero_()
        self.model.train()
        train: Callable[[Any], None] = self._train_step
        if self._gather_step is not None:  # index batches; the captured step gathers the rows
            batches, train = loader.epoch_indices(epoch, self.step_in_epoch), self._gather_step
        else:
            batches = loader.epoch(epoch, start_step=self.step_in_epoch)
        for batch in batches:
            train(batch)
            self.step += 1
            self.step_in_epoch += 1
            read = self.step % self.log_every == 0
            logs_now = self._read_logs() if read else None
            for cb in callbacks:
                cb.on_batch_end(self, self.step, logs_now)
            if resume is not None and checkpoint_every and self.step % checkpoint_every == 0:
                self._read_logs()  # never checkpoint weights that a NaN already spoiled
                self._save(resume, callbacks)
        logs = self._read_logs()
        if val_loader is not None:
            logs.update({f"val_{k}": v for k, v in self._evaluate_loader(val_loader).items()})
        self.epoch, self.step_in_epoch = epoch + 1, 0
        for cb in callbacks:
            cb.on_epoch_end(self, epoch, logs)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        if resume is not None:
            self._save(resume, callbacks)
        return logs

    def _train_step(self, batch: tuple[Any, ...]) -> None:
        self._step_fn(*split_batch(batch))

    def _make_gather_step(self, loader: Any) -> CudaGraphStep | None:
        """With ``gather_in_graph``, GPU-resident data and a captured step: a step of this
        loader's own that takes a batch's row indices and gathers the rows inside the graph, so
        a training step is one copy of the indices and one replay. One per ``fit`` call: the
        graph reads this loader's tensors."""
        wanted = self._fast_options["gather_in_graph"]
        if not (wanted and isinstance(loader, DeviceLoader)):
            return None
        if not isinstance(self._step_fn, CudaGraphStep):
            return None
        optimizer = self.optimizer
        assert optimizer is not None
        return CudaGraphStep(lambda idx: self._step(*split_batch(loader.gather(idx))),
                             lambda: optimizer.zero_grad(set_to_none=True))  # fmt: skip

    def _forward_loss(
        self,
        model: nn.Module,
        x: Any,
        y: Any,
        w: Tensor | None,
        sums: Tensor,
        step: Tensor,
        first_bad: Tensor,
    ) -> Tensor:
        """The compiled part: forward, loss, and the running metric sums, step count and first
        non-finite step updated in place (Inductor fuses that bookkeeping into the loss kernels
        instead of launching five tiny kernels a step). ``model`` is ``_train_model``, or its
        copy that a background compile traces."""
        if self.channels_last:
            x = tree_map(to_channels_last, x)
        with self._autocast():
            out = call_model(model, x)
        loss, stats = self.objective(out, y, w)  # type: ignore[misc]
        sums.add_(stats)
        step.add_(1)
        bad = (first_bad == 0) & ~torch.isfinite(loss.detach())
        first_bad.copy_(torch.where(bad, step, first_bad))
        return loss

    def _step(self, x: Any, y: Any, w: Tensor | None) -> None:
        """One optimizer step; every effect stays on the device (CUDA-graph safe)."""
        # Only full batches take the compiled path: the last, partial batch of an epoch would
        # cost a second compilation (seconds) to save a millisecond, so it runs eagerly.
        full = _rows(x) == self._batch_rows
        forward = self._forward_loss_fn if full else self._forward_loss
        loss = forward(self._train_model, x, y, w, self._sums, self._step_t, self._first_bad)
        optimizer = self.optimizer
        assert optimizer is not None
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            (self._optimizer_step or optimizer.step)()
        optimizer.zero_grad(set_to_none=True)

    def _read_logs(self) -> Logs:
        """Copy the epoch's running sums to the host (a sync) and stop on a non-finite loss."""
        sums, bad = self._sums, self._first_bad
        if self.dist:  # the one collective of a read: global sums, and any rank's bad step
            sums, bad = self.dist.sum(sums), self.dist.max(bad)
        values = torch.cat([sums.flatten(), bad.view(1)]).tolist()
        first_bad = int(values.pop())
        if first_bad:
            batch = first_bad - (self.step - self.step_in_epoch)
            raise NonFiniteLossError(
                f"The loss became NaN or infinite at step {first_bad} (epoch {self.epoch + 1}, "
                f"batch {batch}); training stopped, and no checkpoint was written after it, so the "
                "last saved checkpoint holds good weights. Lower the learning rate, check the data "
                "for NaNs, or use precision='fp32'.",
                first_bad,
                self.history,
            )
        return self._logs_from(values)

    def _logs_from(self, flat_sums: list[float]) -> Logs:
        names = self.objective.names  # type: ignore[union-attr]
        pairs = zip(flat_sums[0::2], flat_sums[1::2], strict=True)
        return {n: s / c if c else math.nan for n, (s, c) in zip(names, pairs, strict=True)}

    # ---- evaluate / predict ---------------------------------------------------------------

    @scoped_settings
    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        *,
        batch_size: int = 256,
        verbose: int = 1,
        sample_weight: Any = None,
    ) -> dict[str, float]:
        """Loss and metrics over the data, as a dict (``{"loss": .., "accuracy": ..}``)."""
        self._require_objective("evaluate")
        data, targets = assemble(x, y, sample_weight, None)
        loader = make_loader(
            self._my_part(data), batch_size=batch_size, shuffle=False, device=self.device, seed=0
        )
        self._setup(next(iter(loader.epoch(0))), targets)
        logs = self._evaluate_loader(loader)
        if verbose and self.is_main_process:
            from rich.console import Console

            Console().print("evaluate: " + " · ".join(f"{k} {v:.4f}" for k, v in logs.items()))
        return logs

    def _evaluate_loader(self, loader: Any) -> Logs:
        saved = self._sums.clone()
        self._sums.zero_()
        self.model.eval()
        with torch.inference_mode():
            for batch in loader.epoch(0):
                x, y, w = split_batch(batch)
                with self._autocast():
                    out = call_model(self.model, x)
                _, stats = self.objective(out, y, w)  # type: ignore[misc]
                self._sums += stats
        self.model.train()
        sums = self.dist.sum(self._sums) if self.dist and self._split_eval else self._sums.clone()
        self._sums.copy_(saved)
        return self._logs_from(sums.flatten().tolist())

    @scoped_settings
    def predict(self, x: Any, *, batch_size: int = 256) -> Any:
        """Model outputs for ``x`` as CPU tensors (same structure as the model's output).

        In a distributed run each rank predicts its part and every rank gets all of it, in order.
        """
        loader = make_loader(
            (self._my_part(x),), batch_size=batch_size, shuffle=False, device=self.device, seed=0
        )
        self._setup((next(iter(loader.epoch(0)))[0],), None)
        self.model.eval()
        outs = []
        with torch.inference_mode():
            for (xb,) in loader.epoch(0):
                with self._autocast():
                    out = call_model(self.model, xb)
                outs.append(
                    tree_map(lambda t: t.float().cpu() if t.is_floating_point() else t.cpu(), out)
                )
        self.model.train()
        if self.dist and self._split_eval:
            outs = flatten_lists(self.dist.gather(outs))
        return concat_outputs(outs)

    @property
    def _split_eval(self) -> bool:
        """Evaluate and predict a part per rank? Not with FSDP: there every forward is a
        collective, so every rank runs every batch (and the sums need no reduction)."""
        return self.dist is not None and self.strategy != "fsdp"

    def _probe(self, x: Any) -> Any:
        """The model's output for two samples of ``x``, in eval mode, without gradients: enough
        to see its structure. (A whole batch here set ResNet-50's peak memory.) An error is
        raised with the whole batch, so that its message shows the shape the user passed."""
        was_training = self.model.training
        self.model.eval()
        try:
            try:
                return self._forward_no_grad(tree_map(_first_two, x))
            except (ValueError, RuntimeError):
                return self._forward_no_grad(x)
        finally:
            self.model.train(was_training)

    def _forward_no_grad(self, x: Any) -> Any:
        if self.channels_last:
            x = tree_map(to_channels_last, x)
        with torch.no_grad(), self._autocast():
            return call_model(self.model, x)

    def _my_part(self, data: Any) -> Any:
        return self.dist.shard(data) if self.dist and self._split_eval else data

    # ---- set-up -------------------------------------------------------------------------

    def _setup(self, batch: tuple[Any, ...], targets: Any) -> None:
        """Build lazy layers from a first batch, move to the device, make the optimizer."""
        x = batch[0]
        build_model(self.model, x, self.device)
        self.model.to(self.device)
        if self.objective is None:
            return
        if self.optimizer is None:
            optimizer, lr, options = self._optimizer_spec
            if self.precision == "fp8":
                convert_linears(self.model, self.device)
            self.channels_last = use_channels_last(
                self._fast_options["channels_last"], self.model, self.device
            )
            if self.channels_last:
                self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            cuda = self.device.type == "cuda"
            gpu = torch.cuda.get_device_properties(self.device).total_memory if cuda else None
            if self.dist and self._strategy_option == "auto":
                self.strategy, why = auto_strategy(self.model, gpu)
                if self.strategy == "fsdp":
                    self._say(why)
            if self.dist and self.strategy == "fsdp":  # sharded in place: before the optimizer
                gathered = torch.bfloat16 if self.precision in ("bf16", "fp8") else None
                self.keeps_gathered = self._reshard is False
                if self._reshard == "auto":
                    size = gathered.itemsize if gathered else None
                    self.keeps_gathered, why = keep_gathered(
                        self.model, gpu, self.dist.world_size, size
                    )
                    if cuda:
                        self._say(why)
                self.dist.wrap(self.model, self.device, "fsdp", gathered, self.keeps_gathered)
            self.optimizer = make_optimizer(optimizer, self.model, lr, self.device, **options)
            if self.dist and self.strategy == "ddp":
                self._train_model = self.dist.wrap(self.model, self.device, "ddp")
        out = self._probe(x)
        self.cudnn_benchmark = use_cudnn_benchmark(self._cudnn_benchmark, self.model, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.cudnn_benchmark  # inside scoped_settings
        if not self.objective.names:
            self.objective.build(out)
        if targets is not None and len(batch) > 1:
            self.objective.check_targets(out, targets)
        if self._sums.shape[0] != len(self.objective.names):
            self._sums = torch.zeros(len(self.objective.names), 2, device=self.device)
            self._step_t = torch.zeros((), device=self.device)
            self._first_bad = torch.zeros((), device=self.device)

    def _make_step(self) -> Any:
        """Pick the step: compiled or not, captured in CUDA graphs or not, compiled while the
        eager step trains or before the first step."""
        assert self.optimizer is not None
        options = self._fast_options
        self._optimizer_step = split_fused_adam(self.optimizer, self.device) or self.optimizer.step
        compiled = use_compile(options["compile"], self.device)
        mode = compile_mode(options["compile"])
        graphs = options["cuda_graphs"]
        if self.dist and graphs == "auto":
            graphs = False  # not yet: capturing DDP's all-reduce needs its own care
        self._captures = use_cuda_graphs(graphs, self.device, self.precision, self.optimizer)
        if self._captures:
            make_capturable(self.optimizer, self.device)
        if compiled and self._repays_tuning():
            mode = "coordinate-descent"
            if self.verbose:
                self._say("a long fit of a large conv net: compiling with Inductor's "
                          "coordinate-descent tuning (minutes the first time, about half a "
                          "minute from the cache after; compile=True skips it)")  # fmt: skip
        optimizer = self.optimizer
        self.compile_mode = mode if compiled else None  # torch.compile's mode (kiln's names)
        self.compiles_behind = behind = compiled and use_background_compile(
            options["background_compile"], mode=mode, device=self.device, model=self.model,
            distributed=self.dist is not None, captures=self._captures,
            precision=self.precision, gather_in_graph=bool(options["gather_in_graph"]),
        )  # fmt: skip
        # behind the training, even torch.compile's call (it imports Dynamo: 1.1 s on an H200)
        # is made in the compile's thread
        self._forward_loss_fn = self._forward_loss
        if compiled and not behind:
            self._forward_loss_fn = compile_step(self._forward_loss, mode)

        def new_step(later_shapes: bool = True) -> Any:
            if not self._captures:
                return self._step
            zero_grad = lambda: optimizer.zero_grad(set_to_none=True)  # noqa: E731
            return CudaGraphStep(self._step, zero_grad, later_shapes=later_shapes)

        if not behind:
            return new_step()
        made: list[Any] = []  # the thread's torch.compile of the step

        def switch() -> Any:
            if not made:  # no full batch came: it compiles on its first call, as it would
                made.append(compile_step(self._forward_loss, mode))
            self._forward_loss_fn = made[0]
            return new_step()

        eager = new_step(later_shapes=False)
        ready = (lambda: eager.captured > 0) if isinstance(eager, CudaGraphStep) else (lambda: True)
        return CompileBehind(eager, partial(self._compile_on_copy, made, mode), switch, ready)

    def _repays_tuning(self) -> bool:
        """Does this fit's length repay Inductor's kernel tuning? Asked for ``compile="auto"``
        only, once ``_captures`` is known (``_fast_path.tune_kernels`` has the rule)."""
        return (
            self._fast_options["compile"] == "auto"
            and use_compile("auto", self.device)
            and tune_kernels(
                self.model, self.device, self.epochs * self.steps_per_epoch,
                captures=self._captures, distributed=self.dist is not None,
            )
        )  # fmt: skip

    def _compile_on_copy(
        self, made: list[Any], mode: str | None, x: Any, y: Any, w: Tensor | None
    ) -> Any:
        """For ``CompileBehind``: the work that compiles the step in a thread, on copies of the
        model, the batch and the running sums, so the run's own weights and logs stay as the
        eager step leaves them (None for a short batch: the compiled step takes full ones)."""
        if _rows(x) != self._batch_rows:
            return None
        # the model may hold its trainer (kiln's models do: ``model._trainer``), and through it
        # CUDA graphs, which cannot be copied: the copy shares the trainer
        try:
            model = copy.deepcopy(self._train_model, memo={id(self): self})
        except Exception as error:  # a module holding a lock, a file, ...
            raise CompileHere(
                f"background_compile: the model could not be copied ({type(error).__name__}: "
                f"{error})"
            ) from error
        x, y, w = tree_map(lambda t: t.clone() if isinstance(t, Tensor) else t, (x, y, w))
        state = [t.clone() for t in (self._sums, self._step_t, self._first_bad)]
        device = self.device

        def work() -> None:
            made.append(compile_step(self._forward_loss, mode))
            with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
                made[0](model, x, y, w, *state).backward()  # the backward compiles too

        return work

    @property
    def compiling_behind(self) -> bool:
        """Whether the step is compiling behind the training now (``background_compile``):
        the steps meanwhile run the eager step."""
        return isinstance(self._step_fn, CompileBehind) and self._step_fn.compiling

    def _finish_compile(self, raise_error: bool = True) -> None:
        """Wait for a compile running behind the training and take its step."""
        behind = self._step_fn
        if not isinstance(behind, CompileBehind):
            return
        if behind.compiling and self.verbose and self.is_main_process and raise_error:
            from rich.console import Console

            console = Console(stderr=True)
            what = "training is done; compiling the step for the next fit() (background_compile)"
            if not console.is_terminal:  # no spinner in a log: one line says why it waits
                console.print(f"kiln.train: {what}", highlight=False, soft_wrap=True)
            with console.status(what):
                self._step_fn = behind.finish(raise_error)
        else:
            self._step_fn = behind.finish(raise_error)

    def _say(self, message: str) -> None:
        """A line on stderr about a choice kiln made, from the main process only."""
        if self.dist is None or self.dist.is_main:
            from rich.console import Console

            Console(stderr=True).print(f"[bold]kiln.train[/]: {message}")

    def _require_objective(self, what: str) -> None:
        if self.objective is None:
            raise RuntimeError(f"Call model.compile(optimizer=..., loss=...) before {what}().")

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16  # bf16, fp8
        return torch.autocast(self.device.type, dtype=dtype)

    def _callbacks(
        self, callbacks: list[Callback] | None, verbose: int, batch_size: int, track: Any
    ) -> list[Callback]:
        callbacks = list(callbacks or [])
        if track is not False and track is not None:
            from kiln.track import TrackingCallback

            if not any(isinstance(cb, TrackingCallback) for cb in callbacks):
                callbacks.append(TrackingCallback(None if track is True else track))
        if verbose:
            from kiln.train.callbacks import ProgressBar

            if not any(isinstance(cb, ProgressBar) for cb in callbacks):
                callbacks.append(ProgressBar(batch_size=batch_size))
        return callbacks

    # ---- resume -------------------------------------------------------------------------

    def _save(self, path: str | Path, callbacks: list[Callback]) -> None:
        save_checkpoint(self, path, callbacks, sharded=self.strategy == "fsdp")

    def _restore(self, path: str | Path, callbacks: list[Callback]) -> None:
        restore_checkpoint(self, path, callbacks)
        if self._captures:
            make_capturable(self.optimizer, self.device)  # type: ignore[arg-type]
        self._step_t.fill_(self.step)

    def model_state_dict(self) -> dict[str, Tensor]:
        """The model's whole weights; with a sharded (FSDP) model, a collective on every rank."""
        if self.dist and self.strategy == "fsdp":
            return full_state_dict(self.model)
        return self.model.state_dict()


def _rows(x: Any) -> int:
    """The number of samples in a batch (a tensor or a pytree of them)."""
    if isinstance(x, Tensor):
        return x.shape[0]
    return next(t.shape[0] for t in tree_flatten(x)[0] if isinstance(t, Tensor))


def _first_two(t: Any) -> Any:
    return t[:2] if isinstance(t, Tensor) else t
