"""Recording a training step as a CUDA graph, so that it replays with one launch.

A small MLP's step is bound by the host: some twenty launches at 5-20 µs of Python and
driver work each, for a few µs of GPU arithmetic. Recorded once, the step replays its whole
device work from one launch. Recording runs nothing: the step is captured on a stream of its
own, with an allocator that refuses (memory taken during the recording would go back to the
pool when the step ends, and be reused while the replays still write to it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def disabled() -> bool:
    """``MLP_NO_CUDA_GRAPH=1`` turns recording off (every step then runs op by op)."""
    return os.environ.get("MLP_NO_CUDA_GRAPH", "") not in ("", "0")


def _refuse_allocation(size: int) -> Any:
    """The allocator while a step is recorded: see the module's docstring."""
    raise MemoryError(f"an op allocated {size} bytes while a training step was recorded")


def record(cupy: Any, stream: Any, step: Callable[[], Any]) -> tuple[Any, str | None]:
    """``step``'s device work captured on ``stream``: ``(graph, None)``, or ``(None, why)``
    where anything in it refuses to be recorded (call with the stream's device current)."""
    failure: BaseException | None = None
    graph = None
    with stream:
        stream.begin_capture()
        try:
            with cupy.cuda.using_allocator(_refuse_allocation):
                step()
        except Exception as exc:  # anything that cannot be recorded: the caller runs eagerly
            failure = exc
        try:
            graph = stream.end_capture()
        except Exception as exc:  # the capture was invalidated
            failure = failure or exc
    if failure is not None or graph is None:
        return None, f"{type(failure).__name__}: {failure}"
    return graph, None


class Recording:
    """A captured training step: each call replays it on the current stream. It holds the
    arrays the step uses, so that none is freed (and reused) while the graph can run."""

    def __init__(self, graph: Any, held: tuple) -> None:
        self._graph = graph
        self._held = held

    def __call__(self) -> None:
        self._graph.launch()
