"""The strongest PyTorch a speed-minded user would run, beside the eager loop of ``peers``.

Same model, Adam (same hyperparameters), batch and float32 as the eager row; each variant is
one row (``--peers``): ``torch-fused`` (eager, ``Adam(fused=True)``), ``torch-compile``
(``torch.compile(mode="max-autotune")``), ``torch-compile-ro`` (``mode="reduce-overhead"``,
which records CUDA graphs on a GPU) and ``torch-graph`` (the whole step captured with
``torch.cuda.graph``, PyTorch's documented recipe; CUDA only). Compilation happens before
the first epoch and is timed on its own (``compile_seconds``): it is a one-off cost, not
part of an epoch. TF32 is off unless asked for (``tf32``; the rows of ``--precisions tf32``),
as it is for our rows, so that both sides multiply in full float32.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .peers import (
    set_precision,
    tf32_for,
    torch_device,
    torch_epoch,
    torch_memory,
    torch_model,
    torch_optimizer,
    torch_synchronizer,
)
from .timing import Schedule, run_epochs
from .workloads import Workload

#: The ``torch.compile`` mode of each compiled row.
COMPILE_MODES = {"torch-compile": "max-autotune", "torch-compile-ro": "reduce-overhead"}
#: Every variant this module trains, in the order their rows run.
VARIANTS = ("torch-fused", *COMPILE_MODES, "torch-graph")
#: Calls of each batch shape before the clock starts: compilation, autotuning, and (in
#: reduce-overhead) the CUDA graph trees' warm-up and recording runs.
COMPILE_CALLS = 3


def fused_problem(workload: Workload, dev: Any) -> str | None:
    """Why fused Adam cannot run on ``dev`` (``None``: it can): a row skipped, not a crash."""
    import torch

    probe = torch.nn.Linear(2, 2).to(dev)
    try:
        opt = torch_optimizer(workload, probe.parameters(), fused=True)
        probe(torch.ones(1, 2, device=dev)).sum().backward()
        opt.step()
    except (RuntimeError, TypeError, ValueError) as exc:
        return f"fused {workload.optimizer} is not supported on {dev.type}: {exc}"
    return None


def variant_problem(impl: str, workload: Workload, dev: Any) -> str | None:
    """Why ``dev`` cannot run the variant (``None``: it can): a skipped row, not a crash."""
    if impl == "torch-graph" and dev.type != "cuda":
        return "needs CUDA (torch.cuda.graph)"
    if impl == "torch-fused":
        return fused_problem(workload, dev)
    return None


def _tail(n: int, batch: int) -> list[int]:
    """The batch shapes of an epoch: full batches, and a smaller last one if any."""
    return [batch] + ([n % batch] if n % batch and n > batch else [])


class Trainer:
    """One variant's step, ``step(xb, yb) -> loss``, with its model and optimizer
    (``impl="torch"``: the eager loop of ``peers``, default Adam, nothing compiled)."""

    def __init__(self, impl: str, workload: Workload, dev: Any) -> None:
        import torch

        torch.manual_seed(0)
        self.model = torch_model(workload).to(dev)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        options = {"fused": True} if impl == "torch-fused" else {}
        self.optimizer = torch_optimizer(workload, self.model.parameters(), **options)
        self.forward: Callable[[Any, Any], Any] = lambda xb, yb: self.loss_fn(self.model(xb), yb)
        if impl in COMPILE_MODES:
            # The forward and loss through Inductor (backward with it, by AOTAutograd), and
            # the optimizer step as PyTorch's "compiling the optimizer" recipe does it.
            # Static shapes: the last, smaller batch gets its own specialised kernels.
            self.forward = torch.compile(self.forward, mode=COMPILE_MODES[impl], dynamic=False)
            self.opt_step = torch.compile(self.optimizer.step, mode=COMPILE_MODES[impl])
        else:
            self.opt_step = self.optimizer.step

    def step(self, xb: Any, yb: Any) -> Any:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.forward(xb, yb)
        loss.backward()
        self.opt_step()
        return loss.detach()


class GraphTrainer:
    """The whole training step captured once with ``torch.cuda.graph`` and replayed: static
    input and target tensors, warm-up on a side stream, ``Adam(capturable=True)``, as
    PyTorch's CUDA Graphs notes capture a whole network. The epoch's last, smaller batch
    runs eagerly on the same tensors (one step of hundreds)."""

    def __init__(self, workload: Workload, dev: Any, X: Any, y: Any) -> None:
        import torch

        with torch.cuda.device(dev):  # capture on this GPU, not the current one
            self._capture(workload, dev, X, y)

    def _capture(self, workload: Workload, dev: Any, X: Any, y: Any) -> None:
        import torch

        torch.manual_seed(0)
        self.model = torch_model(workload).to(dev)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        capturable = {"capturable": True} if workload.optimizer == "adam" else {}
        self.optimizer = torch_optimizer(workload, self.model.parameters(), **capturable)
        batch = workload.batch_size
        self.static_x = X[:batch].clone()
        self.static_y = y[:batch].clone()
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            for _ in range(COMPILE_CALLS):
                self._eager(self.static_x, self.static_y)
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.static_loss = self.loss_fn(self.model(self.static_x), self.static_y)
            self.static_loss.backward()
            self.optimizer.step()

    def _eager(self, xb: Any, yb: Any) -> Any:
        self.optimizer.zero_grad(set_to_none=False)  # keep the captured .grad tensors
        loss = self.loss_fn(self.model(xb), yb)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def step(self, xb: Any, yb: Any) -> Any:
        if xb.shape[0] != self.static_x.shape[0]:
            return self._eager(xb, yb)
        self.static_x.copy_(xb)
        self.static_y.copy_(yb)
        self.graph.replay()
        return self.static_loss.detach().clone()


def ready_trainer(
    impl: str, workload: Workload, dev: Any, X: Any, y: Any
) -> tuple[Trainer | GraphTrainer, float]:
    """``impl``'s trainer on ``dev`` with its compilation or capture done, and the seconds
    that took: a one-off cost, kept out of every epoch. The warm-up calls train too (3 per
    batch shape compiled, 3 before a capture: a handful of steps on the first rows)."""
    synchronize = torch_synchronizer(dev)
    synchronize()
    start = time.perf_counter()
    if impl == "torch-graph":
        trainer: Trainer | GraphTrainer = GraphTrainer(workload, dev, X, y)
    else:
        trainer = Trainer(impl, workload, dev)
        if impl in COMPILE_MODES:
            for rows in _tail(X.shape[0], workload.batch_size):
                for _ in range(COMPILE_CALLS):
                    trainer.step(X[:rows], y[:rows])
    synchronize()
    return trainer, time.perf_counter() - start


def train_variant(
    impl: str,
    workload: Workload,
    device: str,
    X: np.ndarray,
    y: np.ndarray,
    schedule: Schedule,
    tf32: bool = False,
) -> dict[str, Any]:
    """Time one variant's epochs; a variant this device cannot run is a skipped row."""
    import torch

    if impl not in VARIANTS:
        raise ValueError(f"unknown PyTorch variant {impl!r}: choose from {', '.join(VARIANTS)}")
    dev = torch_device(device)
    settings = set_precision(tf32)
    if why := variant_problem(impl, workload, dev):
        return {"status": "skipped", "reason": why}
    Xt, yt = torch.from_numpy(X).to(dev), torch.from_numpy(y).to(dev)
    trainer, compile_seconds = ready_trainer(impl, workload, dev, Xt, yt)
    synchronize = torch_synchronizer(dev)
    losses: list[float] = []

    def run_epoch(_: int) -> float:
        synchronize()
        began = time.perf_counter()
        losses.append(torch_epoch(trainer.step, Xt, yt, workload.batch_size))
        synchronize()
        return time.perf_counter() - began

    out = run_epochs(run_epoch, schedule)
    out.update(final_loss=losses[-1], losses=losses, threads=torch.get_num_threads(), **settings)
    out.update(compile_record(impl, compile_seconds))
    out.update(torch_memory(dev))
    return out


def compile_record(impl: str, seconds: float) -> dict[str, Any]:
    """A compiled or captured row's one-off seconds and how (nothing for an eager one)."""
    if impl not in COMPILE_MODES and impl != "torch-graph":
        return {}
    return {"compile_seconds": seconds, "compile_mode": COMPILE_MODES.get(impl, "graph")}


def train_row(
    impl: str,
    workload: Workload,
    device: str,
    X: Any,
    y: Any,
    schedule: Schedule,
    precision: str = "float32",
) -> Any:
    """A variant's row at ``precision`` (TF32 on for ``tf32``): ``train_variant`` as the
    worker calls it."""
    return train_variant(impl, workload, device, X, y, schedule, tf32_for(precision))


train_fused = functools.partial(train_row, "torch-fused")
train_compile = functools.partial(train_row, "torch-compile")
train_compile_ro = functools.partial(train_row, "torch-compile-ro")
train_graph = functools.partial(train_row, "torch-graph")


#: The worker's entry for each row: ``(workload, device, X, y, schedule[, precision]) -> result``.
TRAINERS = {
    "torch-fused": "train_fused",
    "torch-compile": "train_compile",
    "torch-compile-ro": "train_compile_ro",
    "torch-graph": "train_graph",
}
