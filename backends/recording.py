"""Recording a training step on the CPU: its Python and checks run once, replays call the bodies.

Why: a small model's step is a dozen ops on small arrays, and each public op checks its
operands before its body computes, while the layers, the model and the step add Python of
their own: about a fifth of a tiny step (64 × 784 × 128) on a 2-core EPYC. As a CUDA graph
replays a step's kernels (``backends/cuda/graphs.py``), a recording here replays the bodies
that did the work (``_matmul``, ``_bias_activation``, ``_adam_update``, ...), in order, on
the same arrays, with the arguments they were given.

Recording runs nothing: each body the public ops call is logged instead of run, and returns
the array it would have written. What a replay could not repeat refuses the recording (the
step then runs op by op, as before): a body that would allocate its result, one whose answer
goes to the host (``argmax``, ``all_finite``), random numbers (``dropout_mask``), a host copy
(``to_numpy``) or a new array through the backend (``empty``, ``zeros``, ``asarray``), as
the CUDA recording refuses allocation. Only the recording thread's calls are logged; another
thread's run. A step must do all its array work through backend ops (the library's layers,
losses and optimizers do): work beside them would run once, at the recording, and never in
a replay.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable
from typing import Any

#: The bodies the public ops of ``backends.base.Backend`` end in, logged while recording;
#: each returns its ``out`` argument, but for these (the name of what they return).
RECORDED = (
    "_product", "_matmul", "_matmul_reduced", "_linear", "_round_mantissa", "_bias_add",
    "_add", "_multiply", "_sum_rows", "_activation", "_backprop_activation", "_bias_activation",
    "_backprop_bias_activation", "_backprop_linear", "_softmax", "_gather_rows", "_loss",
    "_gather_batch", "_sgd_update", "_adam_update",
)  # fmt: skip
RETURNS = {"_loss": "grad", "_gather_batch": None, "_sgd_update": None, "_adam_update": None}
#: What a replay could not repeat: see the module's docstring.
REFUSED = ("_argmax", "_all_finite", "_dropout_mask", "to_numpy", "empty", "zeros", "asarray")

_one_at_a_time = threading.RLock()  # a recording inside a recorded step is refused, not a deadlock


class Refused(Exception):
    """A step did what a recording cannot replay."""


def record(backend: Any, step: Callable[[], Any]) -> tuple[list | None, str | None]:
    """``step``'s body calls on ``backend``: ``(calls, None)``, or ``(None, why)`` where the
    step did something a replay could not repeat (or failed)."""
    if disabled():
        return None, "MLP_NO_CPU_RECORDING is set"
    calls: list[tuple[Callable, tuple, dict]] = []
    thread = threading.get_ident()
    installed = []
    with _one_at_a_time:
        try:
            for name in RECORDED + REFUSED:
                if name in vars(backend):  # an instance's own attribute: not a class's body
                    raise Refused(f"{name} is set on this backend instance")
                setattr(backend, name, _stand_in(name, getattr(backend, name), calls, thread))
                installed.append(name)
            step()
        except Exception as exc:  # a refusal, or anything else: the caller runs op by op
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            for name in installed:
                delattr(backend, name)
    return calls, None


def disabled() -> bool:
    """``MLP_NO_CPU_RECORDING=1`` runs every CPU step op by op (to compare)."""
    return os.environ.get("MLP_NO_CPU_RECORDING", "") not in ("", "0")


def _stand_in(name: str, body: Callable, calls: list, thread: int) -> Callable:
    """``body`` as the recording thread sees it: logged (or refused), not run."""
    returns = RETURNS.get(name, "out")
    signature = inspect.signature(body)

    def stand_in(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != thread:
            return body(*args, **kwargs)
        if name in REFUSED:
            raise Refused(f"{name.lstrip('_')} cannot be replayed from a recorded step")
        result = None if returns is None else signature.bind(*args, **kwargs).arguments[returns]
        if returns is not None and result is None:
            raise Refused(f"{name.lstrip('_')} would allocate its result in a recorded step")
        calls.append((body, args, kwargs))
        return result

    return stand_in


class Recording:
    """A recorded step: each call makes the recorded body calls again, in order. It holds
    the arrays the step uses (``keep``), as the CUDA recording does."""

    def __init__(self, calls: list[tuple[Callable, tuple, dict]], keep: Any) -> None:
        self._calls = tuple(calls)
        self._held = keep

    def __call__(self) -> None:
        for body, args, kwargs in self._calls:
            body(*args, **kwargs)

    def __len__(self) -> int:
        return len(self._calls)
