"""Hand-written PyTorch training loops: what kiln's fit() is measured against.

LeNet-5 (Adam, lr 1e-3): the pytorch/examples loop over a DataLoader; data resident on the
device; and the whole step captured in one CUDA graph, with eager kernels or compiled bf16
ones (the hand-tuned floor). ResNet-50 (SGD, momentum 0.9, lr 0.1): eager TF32; eager bf16
with channels_last; torch.compile with bf16 and channels_last.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _speed.common import Clock, Config, Skip, lenet_arrays, torch_clock
from _speed.torch_resnet import resnet50

LossFn = Callable[[Tensor, Tensor], Tensor]


def torch_lenet() -> nn.Module:
    """kiln's zoo ``lenet5`` with ``augment=False``, in torch.nn."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


def _loss_fn(model: nn.Module, bf16: bool = False, compiled: bool = False) -> LossFn:
    """Forward and cross-entropy, optionally under bf16 autocast and torch.compile'd whole."""

    def fp32(x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(model(x), y)

    def mixed(x: Tensor, y: Tensor) -> Tensor:
        # No autocast weight cache: a CUDA graph must not capture casts cached outside it.
        with torch.autocast(x.device.type, torch.bfloat16, cache_enabled=False):
            return F.cross_entropy(model(x), y)

    loss_fn = mixed if bf16 else fp32
    return torch.compile(loss_fn) if compiled else loss_fn


def _train_resident(
    loss_fn: LossFn,
    opt: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    cfg: Config,
    clock: Clock,
    channels_last: bool = False,
) -> None:
    """Shuffle on the device each epoch, index each batch, step; no host sync but the clock's."""
    for _ in range(cfg.epochs):
        clock.epoch_begin()
        for idx in torch.randperm(len(x), device=x.device).split(cfg.batch_size):
            xb, yb = x[idx], y[idx]
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            loss_fn(xb, yb).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            clock.step_done()
        clock.epoch_end()


# ---- LeNet-5 ----------------------------------------------------------------------------------


def _lenet_setup(cfg: Config) -> tuple[torch.device, Tensor, Tensor, Clock]:
    x, y = lenet_arrays(cfg.samples)
    device = torch.device(cfg.device)
    return device, torch.from_numpy(x), torch.from_numpy(y), torch_clock(device)


def lenet_dataloader(cfg: Config) -> dict:
    """pytorch/examples' mnist loop: a DataLoader over CPU tensors, ``.to(device)`` per batch,
    one worker and pinned memory on CUDA, ``loss.item()`` every 10 batches (its log line)."""
    device, x, y, clock = _lenet_setup(cfg)
    cuda = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    dataset = torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(dataset, cfg.batch_size, shuffle=True, **cuda)
    model = torch_lenet().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(cfg.epochs):
        clock.epoch_begin()
        model.train()
        for batch_idx, (data, target) in enumerate(loader):
            data, target = data.to(device), target.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(data), target)
            loss.backward()
            opt.step()
            if batch_idx % 10 == 0:
                loss.item()
            clock.step_done()
        clock.epoch_end()
    return clock.result(cfg.steps_per_epoch, cfg.samples, "DataLoader, fp32")


def lenet_resident(cfg: Config) -> dict:
    device, x, y, clock = _lenet_setup(cfg)
    model = torch_lenet().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = x.to(device), y.to(device)
    _train_resident(_loss_fn(model), opt, x, y, cfg, clock)
    return clock.result(cfg.steps_per_epoch, cfg.samples, "fp32")


def lenet_cudagraph_eager(cfg: Config) -> dict:
    return _lenet_cudagraph(cfg, bf16=False, compiled=False)


def lenet_cudagraph_compile_bf16(cfg: Config) -> dict:
    return _lenet_cudagraph(cfg, bf16=True, compiled=True)


def _lenet_graph_setup(
    cfg: Config,
) -> tuple[torch.device, Tensor, Tensor, Clock, nn.Module, torch.optim.Optimizer]:
    """The data on the GPU, LeNet-5 and a capturable Adam: what every graph loop starts from."""
    device, x, y, clock = _lenet_setup(cfg)
    if device.type != "cuda":
        raise Skip("needs CUDA")
    model = torch_lenet().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
    return device, x.to(device), y.to(device), clock, model, opt


def _lenet_cudagraph(cfg: Config, bf16: bool, compiled: bool) -> dict:
    """Forward, backward and Adam captured as one CUDA graph; each step copies a batch into
    the graph's input buffers and replays it. Static shapes: the last partial batch is dropped."""
    device, x, y, clock, model, opt = _lenet_graph_setup(cfg)
    static_x, static_y = x[: cfg.batch_size].clone(), y[: cfg.batch_size].clone()
    replay = _capture_step(_loss_fn(model, bf16, compiled), opt, static_x, static_y)
    steps = len(x) // cfg.batch_size
    for _ in range(cfg.epochs):
        clock.epoch_begin()
        perm = torch.randperm(len(x), device=device)[: steps * cfg.batch_size]
        for idx in perm.split(cfg.batch_size):
            torch.index_select(x, 0, idx, out=static_x)
            torch.index_select(y, 0, idx, out=static_y)
            replay()
            clock.step_done()
        clock.epoch_end()
    precision = "bf16 autocast, torch.compile" if compiled else "fp32, eager kernels"
    note = f"{precision}; drops the partial batch ({steps} steps/epoch)"
    return clock.result(steps, steps * cfg.batch_size, note)


def lenet_cudagraph_compile_bf16_gather(cfg: Config) -> dict:
    """As ``torch-cudagraph-compile-bf16``, but the graph also picks its batch: it gathers the
    rows of step ``step_t`` of the epoch's permutation (both on the device) and counts
    ``step_t`` up itself, so a step is one replay and nothing else. How much of an epoch goes
    to the two gathers and two copies a step outside the graph?"""
    device, x, y, clock, model, opt = _lenet_graph_setup(cfg)
    steps, bs = len(x) // cfg.batch_size, cfg.batch_size
    perm = torch.randperm(len(x), device=device)[: steps * bs].view(steps, bs)
    step_t = torch.zeros(1, dtype=torch.long, device=device)
    loss_fn = _loss_fn(model, bf16=True, compiled=True)

    def step() -> None:
        idx = perm.index_select(0, step_t).view(-1)
        loss = loss_fn(x.index_select(0, idx), y.index_select(0, idx))
        loss.backward()
        opt.step()
        step_t.add_(1)

    replay = _capture(step, opt)
    for _ in range(cfg.epochs):
        clock.epoch_begin()
        perm.copy_(torch.randperm(len(x), device=device)[: steps * bs].view(steps, bs))
        step_t.zero_()
        for _ in range(steps):
            replay()
            clock.step_done()
        clock.epoch_end()
    note = f"bf16 autocast, torch.compile, batch gathered in the graph ({steps} steps/epoch)"
    return clock.result(steps, steps * bs, note)


def _capture_step(
    loss_fn: LossFn, opt: torch.optim.Optimizer, static_x: Tensor, static_y: Tensor
) -> Callable[[], None]:
    """Forward, backward and Adam on the graph's input buffers, and the loss summed on the
    device (what a real loop would log; read by nobody here)."""
    loss_sum = torch.zeros((), device=static_x.device)

    def step() -> None:
        loss = loss_fn(static_x, static_y)
        loss.backward()
        opt.step()
        loss_sum.add_(loss.detach())

    return _capture(step, opt)


def _capture(step: Callable[[], None], opt: torch.optim.Optimizer) -> Callable[[], None]:
    """The recipe of torch.cuda.graph's docs: warm up on a side stream (this is also where
    torch.compile compiles; these steps train as well), then capture with gradients set to
    None, so that backward allocates them from the graph's private pool and each replay
    overwrites them."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()
    return graph.replay


# ---- ResNet-50 --------------------------------------------------------------------------------


def resnet_eager_tf32(cfg: Config) -> dict:
    return _resnet(cfg, bf16=False, channels_last=False, compiled=False)


def resnet_eager_bf16_cl(cfg: Config) -> dict:
    return _resnet(cfg, bf16=True, channels_last=True, compiled=False)


def resnet_compile_bf16_cl(cfg: Config) -> dict:
    return _resnet(cfg, bf16=True, channels_last=True, compiled=True)


def resnet_data(cfg: Config) -> tuple[Tensor, Tensor]:
    """Random ImageNet-shaped batches, made on the device (too large to make on the host fast)."""
    device = torch.device(cfg.device)
    x = torch.rand(cfg.samples, 3, 224, 224, device=device)
    return x, torch.randint(0, 1000, (cfg.samples,), device=device)


def _resnet(cfg: Config, bf16: bool, channels_last: bool, compiled: bool) -> dict:
    torch.backends.cudnn.benchmark = True  # as pytorch/examples' imagenet does
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    x, y = resnet_data(cfg)
    device = x.device
    clock = torch_clock(device)
    model = resnet50().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = _loss_fn(model, bf16, compiled)
    _train_resident(loss_fn, opt, x, y, cfg, clock, channels_last)
    parts = ["bf16 autocast" if bf16 else "TF32", "channels_last" if channels_last else ""]
    parts.append("torch.compile" if compiled else "eager")
    return clock.result(cfg.steps_per_epoch, cfg.samples, ", ".join(p for p in parts if p))
