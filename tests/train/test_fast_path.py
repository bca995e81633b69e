"""The GPU fast path (compile, CUDA graphs, channels_last, mixed precision) against eager fp32."""

import pytest
import torch
from torch import nn

import kiln
from kiln import callbacks as C
from kiln import layers as L
from kiln.train import Trainer
from kiln.train._fast_path import scoped_settings, use_cudnn_benchmark
from kiln.train._graphed import CudaGraphStep

gpu = pytest.mark.gpu


def _convnet():
    torch.manual_seed(0)
    return kiln.Sequential(
        [kiln.Input((1, 12, 12)), L.Conv2D(4, 3, activation="relu"), L.Flatten()],
        [L.Dropout(0.1), L.Dense(5)],
    )


def _train(steps_kw, **options):
    model = _convnet()
    model.compile(
        optimizer="adam",
        loss="cross_entropy",
        metrics=["accuracy"],
        device="cuda",
        **options,
    )
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(100, 1, 12, 12, generator=g), torch.randint(0, 5, (100,), generator=g)
    torch.manual_seed(2)
    history = model.fit(x, y, batch_size=16, verbose=0, **steps_kw)  # 100 = 6 x 16 + 4
    return model, history


@gpu
def test_cuda_graph_step_equals_eager_step_with_a_schedule():
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    fixed = {"precision": "fp32", "compile": False, "channels_last": False}
    kw = {"epochs": 5, "callbacks": [C.WarmupCosine(warmup_steps=4)]}
    eager, h_eager = _train(kw, cuda_graphs=False, **fixed)
    kw = {"epochs": 5, "callbacks": [C.WarmupCosine(warmup_steps=4)]}
    graphed, h_graphed = _train(kw, cuda_graphs=True, **fixed)
    assert isinstance(graphed._trainer._step_fn, CudaGraphStep)
    # full batches and the last, short one (after 3 eager warm-up steps of its own)
    assert len(graphed._trainer._step_fn._graphs) == 2
    for a, b in zip(eager.state_dict().values(), graphed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert h_eager.history["loss"] == pytest.approx(h_graphed.history["loss"], rel=1e-5)


@gpu
def test_a_later_shape_captured_after_one_warm_up_trains_the_same_weights(monkeypatch):
    """``LATER_WARMUP = 1``: the short last batch is captured in epoch 2, not epoch 4."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    fixed = {"precision": "fp32", "compile": False, "channels_last": False}
    eager, h_eager = _train({"epochs": 3}, cuda_graphs=False, **fixed)
    monkeypatch.setattr(CudaGraphStep, "LATER_WARMUP", 1)
    graphed, h_graphed = _train({"epochs": 3}, cuda_graphs=True, **fixed)
    step = graphed._trainer._step_fn
    assert len(step._graphs) == 2  # full batches and the short one, by epoch 3
    assert sorted(step._eager_runs.values()) == [1, 3]  # the short one ran eagerly once
    for a, b in zip(eager.state_dict().values(), graphed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert h_eager.history["loss"] == pytest.approx(h_graphed.history["loss"], rel=1e-5)


@gpu
def test_gathering_batches_inside_the_graph_trains_the_same_weights():
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    fixed = {"precision": "fp32", "compile": False, "channels_last": False}
    kw = {"epochs": 5, "callbacks": [C.WarmupCosine(warmup_steps=4)]}
    plain, h_plain = _train(kw, cuda_graphs=True, **fixed)
    kw = {"epochs": 5, "callbacks": [C.WarmupCosine(warmup_steps=4)]}
    gathered, h_gathered = _train(kw, cuda_graphs=True, gather_in_graph=True, **fixed)
    step = gathered._trainer._gather_step
    assert isinstance(step, CudaGraphStep) and len(step._graphs) == 2  # full and short batch
    for a, b in zip(plain.state_dict().values(), gathered.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert h_plain.history["loss"] == pytest.approx(h_gathered.history["loss"], rel=1e-5)


def test_gather_in_graph_needs_a_captured_step_and_is_off_otherwise():
    model = _convnet()
    model.compile(optimizer="adam", loss="cross_entropy", device="cpu", gather_in_graph=True)
    history = model.fit(torch.randn(20, 1, 12, 12), torch.randint(0, 5, (20,)), verbose=0)
    assert model._trainer._gather_step is None  # no CUDA graphs on a CPU: batches as usual
    assert len(history.history["loss"]) == 1


@gpu
def test_defaults_compile_capture_and_use_channels_last():
    model, history = _train({"epochs": 2})
    trainer = model._trainer
    assert trainer.precision == "bf16" and trainer.channels_last
    assert isinstance(trainer._step_fn, CudaGraphStep)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert history.history["loss"][1] < history.history["loss"][0]


class _SeesCompiling(C.Callback):
    """Counts the steps trained while the step compiled in the background."""

    def __init__(self) -> None:
        self.while_compiling = 0

    def on_batch_end(self, trainer, step, logs):
        self.while_compiling += int(getattr(trainer._step_fn, "compiling", False))


@gpu
def test_small_models_train_while_the_step_compiles_then_switch_to_the_copys_graph():
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    def graphs() -> int:  # Dynamo's compiled entries for the step's code, all trainers'
        return len(_debug_get_cache_entry_list(Trainer._forward_loss.__code__))

    before = graphs()
    seen = _SeesCompiling()
    model, history = _train({"epochs": 3, "callbacks": [seen]})
    trainer = model._trainer
    assert seen.while_compiling > 0  # the eager step, replayed, trained while Inductor worked
    # fit() waited for the compile: the next one starts with the compiled step, captured
    assert isinstance(trainer._step_fn, CudaGraphStep)
    assert trainer._forward_loss_fn is not trainer._forward_loss
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(100, 1, 12, 12, generator=g), torch.randint(0, 5, (100,), generator=g)
    again = model.fit(x, y, batch_size=16, epochs=4, verbose=0)
    assert trainer._step_fn.captured == 2  # full batches, and the short one from epoch 4
    # traced once (or not at all, where an earlier test traced the same step), for the copy of
    # the model: the model itself passed the same guards
    assert graphs() - before <= 1
    assert again.history["loss"][-1] < history.history["loss"][0]


class _SeesCudnn(C.Callback):
    """Records ``torch.backends.cudnn.benchmark`` as the training steps see it."""

    def __init__(self) -> None:
        self.seen: set[bool] = set()

    def on_batch_end(self, trainer, step, logs):
        self.seen.add(torch.backends.cudnn.benchmark)


@gpu
def test_cudnn_autotuning_is_off_for_small_convolutions_on_when_asked_and_scoped_to_fit():
    saved = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = True  # the process's own setting, put back after fit
        small = _SeesCudnn()
        _train({"epochs": 1, "callbacks": [small]})  # a small conv net: cuDNN's heuristics
        assert small.seen == {False} and torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False
        asked = _SeesCudnn()
        _, history = _train({"epochs": 2, "callbacks": [asked]}, cudnn_benchmark=True)
        assert asked.seen == {True} and not torch.backends.cudnn.benchmark
        assert history.history["loss"][1] < history.history["loss"][0]
    finally:
        torch.backends.cudnn.benchmark = saved


def test_auto_autotunes_cudnn_for_large_convolutions_on_gpus_only():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    lenet = kiln.zoo.create_model("lenet5")
    lenet.build((1, 28, 28))
    wide = torch.nn.Conv2d(512, 512, 3)  # 2.4M weights
    assert not use_cudnn_benchmark("auto", lenet, cuda)  # 2,550 convolution weights
    assert use_cudnn_benchmark("auto", wide, cuda)
    assert not use_cudnn_benchmark("auto", wide, cpu)
    assert use_cudnn_benchmark(True, lenet, cuda) and not use_cudnn_benchmark(False, wide, cuda)


def test_cudnn_benchmark_option_refuses_other_values_and_leaves_the_cpu_alone():
    saved = torch.backends.cudnn.benchmark
    with pytest.raises(
        ValueError, match=r"cudnn_benchmark must be 'auto', True or False; received 'yes'"
    ):
        Trainer(_convnet(), loss="cross_entropy", device="cpu", cudnn_benchmark="yes")
    Trainer(_convnet(), loss="cross_entropy", device="cpu", cudnn_benchmark=not saved)
    assert torch.backends.cudnn.benchmark == saved


@gpu
def test_sgd_falls_back_to_compile_without_graphs_and_true_explains():
    model = _convnet()
    model.compile(optimizer="sgd", loss="cross_entropy", device="cuda")
    model.fit(torch.randn(32, 1, 12, 12), torch.randint(0, 5, (32,)), verbose=0)
    assert not isinstance(model._trainer._step_fn, CudaGraphStep)
    model = _convnet()
    model.compile(optimizer="sgd", loss="cross_entropy", device="cuda", cuda_graphs=True)
    with pytest.raises(ValueError, match="not a fused Adam"):
        model.fit(torch.randn(32, 1, 12, 12), torch.randint(0, 5, (32,)), verbose=0)


@gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_matches_fp32_accuracy(precision):
    # Mean test accuracy over three seeds: one run's accuracy on 2,000 digits moves by a few
    # tenths of a point with the seed alone, in fp32 too.
    (x, y), (xt, yt) = kiln.datasets.mnist()
    accuracy = {}
    for p in ("fp32", precision):
        runs = []
        for seed in range(3):
            torch.manual_seed(seed)
            model = kiln.zoo.create_model("lenet5")
            model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"],
                          precision=p, seed=seed)  # fmt: skip
            model.fit(x, y, epochs=40, batch_size=64, verbose=0, callbacks=[C.WarmupCosine()])
            runs.append(model.evaluate(xt, yt, verbose=0)["accuracy"])
        accuracy[p] = sum(runs) / len(runs)
    assert abs(accuracy[precision] - accuracy["fp32"]) <= 0.003, accuracy


@gpu
def test_fp16_gradients_underflow_without_loss_scaling_and_survive_with_it():
    torch.manual_seed(0)
    layer = nn.Linear(64, 64).cuda()
    x = torch.randn(32, 64, device="cuda")

    def grad(scale):
        layer.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = layer(x).float().pow(2).mean() * 1e-6  # output grads ~1e-9: below fp16
        (loss * scale).backward()
        return layer.weight.grad.float() / scale

    reference = torch.autograd.grad(layer(x).pow(2).mean() * 1e-6, layer.weight)[0]
    unscaled, scaled = grad(1.0), grad(2.0**16)
    assert (unscaled == 0).float().mean() > 0.9  # fp16 flushed them to zero
    assert (scaled == 0).float().mean() < 0.01
    atol = 1e-2 * reference.abs().max().item()  # fp16 keeps ~3 digits of the largest
    torch.testing.assert_close(scaled, reference, rtol=0.05, atol=atol)
    # kiln's fp16 path scales the loss: a model trained on that tiny loss still moves
    model = kiln.Sequential([kiln.Input((64,)), L.Dense(64)])
    model.to("cuda")
    start = model[0].weight.detach().clone()

    def tiny(out, target):
        return (out - target).float().pow(2).mean() * 1e-6

    trainer = Trainer(model, "sgd", tiny, lr=1e6, device="cuda", precision="fp16")
    trainer.fit(x, torch.zeros(32, 64, device="cuda"), epochs=1, batch_size=32, verbose=0)
    assert trainer.scaler is not None
    assert (model[0].weight.detach() != start).float().mean() > 0.99


def test_only_full_batches_take_the_compiled_path(monkeypatch):
    """The partial last batch runs eagerly: no second compilation for its shape."""
    rows_seen = []

    def counting_compile(fn, **kwargs):
        def compiled(model, x, *args):
            rows_seen.append(x.shape[0])
            return fn(model, x, *args)

        return compiled

    results = []
    for compile_option in (False, True):
        with monkeypatch.context() as patch:
            patch.setattr(torch, "compile", counting_compile)
            model = _convnet()
            model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"],
                          device="cpu", compile=compile_option)  # fmt: skip
            g = torch.Generator().manual_seed(1)
            x = torch.randn(100, 1, 12, 12, generator=g)
            y = torch.randint(0, 5, (100,), generator=g)
            results.append(model.fit(x, y, batch_size=16, epochs=2, verbose=0, track=False))
    assert rows_seen == [16] * 12  # 2 epochs x 6 full batches; the 4-sample ones ran eagerly
    assert results[0].history == results[1].history


def test_auto_strategy_shards_a_model_whose_training_state_would_crowd_one_gpu():
    from kiln.train._fast_path import auto_strategy

    model = torch.nn.Linear(1000, 1000)  # 1,001,000 fp32 weights: 16.0 MB with grads and Adam
    state = 16 * 1_001_000
    assert auto_strategy(model, 2 * state)[0] == "ddp"  # exactly half of the GPU: still fits
    strategy, why = auto_strategy(model, 2 * state - 1)
    assert strategy == "fsdp" and 'strategy="ddp"' in why and "0.0 GB" in why
    assert auto_strategy(model.half(), 2 * state - 1)[0] == "ddp"  # half the bytes
    assert auto_strategy(model, None)[0] == "ddp"  # CPUs (gloo): no memory to crowd


def test_fsdp_keeps_gathered_weights_where_the_shards_and_gathered_copy_fit_half_a_gpu():
    from kiln.train._fast_path import keep_gathered

    model = torch.nn.Linear(1000, 1000)  # 1,001,000 fp32 weights
    state, gathered_bf16 = 16 * 1_001_000, 2 * 1_001_000
    held = state / 4 + gathered_bf16  # on 4 GPUs: a quarter of the state, the whole bf16 copy
    keep, why = keep_gathered(model, int(2 * held), 4, 2)
    assert keep and "reshard_after_forward=True" in why  # exactly half of the GPU: kept
    keep, why = keep_gathered(model, int(2 * held) - 1, 4, 2)
    assert not keep and "more than half" in why
    assert not keep_gathered(model, int(2 * held), 4, None)[0]  # fp32 gathered: twice the bytes
    assert keep_gathered(model, int(2 * held), 8, 2)[0]  # more GPUs: smaller shards
    assert not keep_gathered(model, None, 4, 2)[0]  # CPUs: full sharding
    with pytest.raises(ValueError, match="reshard_after_forward must be 'auto', True or False"):
        Trainer(model, loss="mse", device="cpu", reshard_after_forward="never")


def test_compile_takes_a_mode_and_refuses_modes_that_capture_graphs_of_their_own(monkeypatch):
    from kiln.train import _fast_path

    cpu = torch.device("cpu")
    assert _fast_path.compile_mode("max-autotune-no-cudagraphs") == "max-autotune-no-cudagraphs"
    assert _fast_path.compile_mode("default") is None
    assert _fast_path.compile_mode(True) is None and _fast_path.compile_mode("auto") is None
    assert _fast_path.use_compile("max-autotune-no-cudagraphs", cpu) is True
    assert _fast_path.use_compile("auto", cpu) is False
    with pytest.raises(ValueError, match="use 'max-autotune-no-cudagraphs'"):
        _fast_path.use_compile("max-autotune", cpu)
    # the mode reaches torch.compile
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None: seen.append(mode) or fn)
    model = kiln.Sequential([kiln.Input((4,)), L.Dense(2)])
    model.compile(loss="cross_entropy", device="cpu", compile="max-autotune-no-cudagraphs")
    model.fit(torch.randn(8, 4), torch.randint(0, 2, (8,)), batch_size=4, verbose=0)
    assert seen == ["max-autotune-no-cudagraphs"]


def test_scoped_settings_set_the_trainers_choice_and_put_the_process_setting_back():
    class Fake:
        device, cudnn_benchmark = torch.device("cuda"), True

        @scoped_settings
        def run(self, fail: bool = False) -> bool:
            if fail:
                raise RuntimeError("a failing fit")
            return torch.backends.cudnn.benchmark

    saved = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        assert Fake().run() is True and torch.backends.cudnn.benchmark is False
        with pytest.raises(RuntimeError, match="a failing fit"):
            Fake().run(fail=True)
        assert torch.backends.cudnn.benchmark is False
        cpu = Fake()
        cpu.device = torch.device("cpu")  # left alone off CUDA
        assert cpu.run() is False
    finally:
        torch.backends.cudnn.benchmark = saved


def test_fit_starts_inductors_compile_workers_early_only_for_a_cold_cache_and_a_compiled_step(
    monkeypatch, tmp_path
):
    """Started at fit()'s first call, before the step is built, when the compile cache holds no
    graph yet; not for eager fits, not again, not with a warm cache."""
    from torch._inductor import async_compile

    from kiln.train import _trainer

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    events = []
    monkeypatch.setattr(async_compile, "maybe_warm_pool", lambda: events.append("workers"))
    make_step = _trainer.Trainer._make_step
    monkeypatch.setattr(
        _trainer.Trainer, "_make_step", lambda self: events.append("step") or make_step(self)
    )
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None: fn)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))

    def fit_twice(compile_option):
        events.clear()
        model = kiln.Sequential([kiln.Input((4,)), L.Dense(2)])
        model.compile(loss="cross_entropy", device="cpu", compile=compile_option)
        model.fit(x, y, batch_size=4, verbose=0, track=False)
        model.fit(x, y, batch_size=4, verbose=0, track=False)  # the step exists: nothing starts
        return list(events)

    assert fit_twice(True) == ["workers", "step"]
    assert fit_twice(False) == ["step"]
    (tmp_path / "fxgraph").mkdir()  # a graph was compiled into this cache before
    assert fit_twice(True) == ["step"]


def test_a_mixed_precision_step_is_cached_by_aot_autograd_not_bypassed(tmp_path, monkeypatch):
    """The step's ``torch.autocast`` block would make AOTAutograd skip its cache (a warm start
    then traces the forward and backward again); kiln marks the block's calls cacheable, and a
    bf16 step's entry is not an fp16 step's."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
    outcomes = []
    for precision in ("bf16", "fp16", "bf16"):
        torch._dynamo.reset()  # a fresh process would trace again: look the step up again
        counters.clear()
        model = kiln.Sequential([kiln.Input((6,)), L.Dense(8, activation="relu"), L.Dense(3)])
        model.compile(optimizer="adam", loss="cross_entropy", device="cpu", compile=True,
                      precision=precision, background_compile=False)  # fmt: skip
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, track=False)
        outcomes.append({k: v for k, v in counters["aot_autograd"].items() if "cache" in k})
    assert outcomes[0] == {"autograd_cache_miss": 1, "autograd_cache_saved": 1}
    assert outcomes[1] == {"autograd_cache_miss": 1, "autograd_cache_saved": 1}  # fp16: its own
    assert outcomes[2] == {"autograd_cache_hit": 1}


def test_auto_tunes_kernels_only_for_long_uncaptured_fits_of_large_conv_nets_on_gpus():
    from kiln.train._fast_path import AUTOTUNE_MIN_CONV_WEIGHTS, TUNE_MIN_STEPS, tune_kernels

    cuda, cpu = torch.device("cuda"), torch.device("cpu")  # the rule touches no GPU
    assert AUTOTUNE_MIN_CONV_WEIGHTS == 1000 * 1000
    large = nn.Conv2d(1000, 1000, 1, bias=False)  # exactly the threshold's weights
    small = nn.Sequential(nn.Conv2d(999, 1000, 1, bias=False), nn.Linear(1000, 1000))
    plain = {"captures": False, "distributed": False}
    assert tune_kernels(large, cuda, TUNE_MIN_STEPS, **plain)
    assert not tune_kernels(large, cuda, TUNE_MIN_STEPS - 1, **plain)  # too short to repay it
    assert not tune_kernels(small, cuda, 10**6, **plain)  # 999,000 in convs, the rest not
    assert not tune_kernels(large, cpu, 10**6, **plain)
    assert not tune_kernels(large, cuda, 10**6, captures=True, distributed=False)  # unmeasured
    assert not tune_kernels(large, cuda, 10**6, captures=False, distributed=True)


def test_a_long_fit_compiles_with_coordinate_descent_tuning_and_says_so(monkeypatch, capsys):
    """The trainer asks the rule with the fit's planned steps; the mode reaches torch.compile as
    Inductor's option (there is no such torch mode); ``compile="coordinate-descent"`` asks."""
    from kiln.train import _trainer

    asked, compiled = [], []
    monkeypatch.setattr(_trainer, "use_compile", lambda option, device: True)  # as on a GPU

    def rule(model, device, steps, **kw):
        asked.append((steps, kw))
        return True

    monkeypatch.setattr(_trainer, "tune_kernels", rule)
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: compiled.append(kwargs) or fn)
    for option in ("auto", "coordinate-descent", True):
        model = kiln.Sequential([kiln.Input((4,)), L.Dense(2)])
        model.compile(optimizer="sgd", loss="cross_entropy", device="cpu", compile=option,
                      background_compile=False)  # fmt: skip
        x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
        model.evaluate(x, y, verbose=0)  # the step is made by fit, which knows its length
        model.fit(x, y, batch_size=8, epochs=3, verbose=1, track=False)
        expected = None if option is True else "coordinate-descent"
        assert model._trainer.compile_mode == expected, option
    assert asked == [(3 * 5, {"captures": False, "distributed": False})]  # "auto" only
    tuned = {"options": {"coordinate_descent_tuning": True}}
    assert compiled == [tuned, tuned, {"mode": None}]
    assert capsys.readouterr().err.count("coordinate-descent tuning") == 1  # "auto" says why


def test_a_longer_second_fit_is_tuned_when_the_first_was_too_short(monkeypatch):
    """The choice is each fit's: a 1-epoch try-out then a long fit on the same model tunes the
    long one (the step is made again), and a short fit after it keeps the tuned step."""
    from kiln.train import _trainer

    asked, compiled = [], []
    monkeypatch.setattr(_trainer, "use_compile", lambda option, device: True)  # as on a GPU

    def rule(model, device, steps, **kw):
        asked.append(steps)
        return steps >= 20

    monkeypatch.setattr(_trainer, "tune_kernels", rule)
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: compiled.append(kwargs) or fn)
    model = kiln.Sequential([kiln.Input((4,)), L.Dense(2)])
    model.compile(optimizer="sgd", loss="cross_entropy", device="cpu", background_compile=False)
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    modes = []
    for epochs in (1, 2, 4, 1):  # 5, 10, 20 and 5 steps
        model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, track=False)
        modes.append(model._trainer.compile_mode)
    assert modes == [None, None, "coordinate-descent", "coordinate-descent"]
    assert asked == [5, 10, 20, 20]  # the last fit is not asked: its step is already tuned
    assert compiled == [{"mode": None}, {"options": {"coordinate_descent_tuning": True}}]


@gpu
def test_auto_tunes_a_large_conv_nets_kernels_on_a_gpu_and_trains_as_untuned(monkeypatch):
    from kiln.train import _fast_path

    monkeypatch.setattr(_fast_path, "TUNE_MIN_STEPS", 1)  # any fit counts as long here
    losses = {}
    for option in ("auto", True):
        torch.manual_seed(0)
        model = kiln.Sequential([kiln.Input((256, 6, 6)), L.Conv2D(512, 3), L.Flatten(),
                                 L.Dense(3)])  # fmt: skip
        model.compile(optimizer="sgd", lr=0.01, loss="cross_entropy", device="cuda",
                      compile=option, precision="fp32")  # fmt: skip
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(32, 256, 6, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, track=False)
        losses[option] = history.history["loss"]
        assert model._trainer.compile_mode == ("coordinate-descent" if option == "auto" else None)
    torch.testing.assert_close(losses["auto"], losses[True], rtol=1e-3, atol=1e-4)
