"""Learning-rate schedules: the rate of each epoch, set on the optimizer before it starts.

The rate changes once per epoch, on the host; a step recorded as a CUDA graph holds its
optimizer's settings, so ``fit`` records it again when they change (once an epoch, never
a sync per step). A schedule remembers the rate it started from: the same object passed to
``fit`` again goes on from where it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from . import checks
from .errors import InvalidArgument
from .stopping import Patience, lower_is_better, watched


class Schedule:
    """The rate of epoch ``epoch`` (0-based, counted over every ``fit``) from the rate the
    optimizer had when the schedule first ran, and the records so far."""

    #: the epoch a curve counts from (``fit`` sets it as the schedule first runs: that
    #: fit's first epoch, or 0 for a resume at ``initial_epoch``); 0 in an older pickle
    origin: int = 0

    def __init__(self) -> None:
        self.base: float | None = None
        self.origin: int | None = None  # type: ignore[assignment]

    def start(self, lr: float, epochs: int) -> None:
        """``fit`` is about to train up to epoch ``epochs`` with rate ``lr``."""
        if self.base is None:
            self.base = lr
        if self.origin is None:
            self.origin = 0

    def rate(self, epoch: int, lr: float, history: list[dict[str, Any]]) -> float:
        raise NotImplementedError

    def observe(self, record: dict[str, Any]) -> None:
        """After each epoch, its record (``fit``'s last epoch's too, for the next ``fit``)."""

    def resume(
        self, history: list[dict[str, Any]], rate: bool = True, last: float | None = None
    ) -> None:
        """Go on from an interrupted run whose records are ``history``, as if unbroken (a
        rate worked out from the epoch alone needs nothing); ``rate=False`` where the run
        goes on at a rate given anew, not the one its last epoch ran at; ``last``, that
        rate where the last record has none (its epoch ran without a schedule)."""


class StepDecay(Schedule):
    """The rate times ``factor`` every ``step`` epochs, counted from the first epoch of the
    first ``fit`` it runs in (a resumed run's: its first, 0), as ``CosineDecay`` counts."""

    def __init__(self, step: int = 10, factor: float = 0.1) -> None:
        super().__init__()
        self.step = checks.positive_int("step", step)
        self.factor = checks.fraction("factor", factor)

    def rate(self, epoch: int, lr: float, history: list[dict[str, Any]]) -> float:
        return self.base * self.factor ** ((epoch - self.origin) // self.step)


class CosineDecay(Schedule):
    """From the rate down to ``minimum`` along half a cosine over ``epochs`` epochs (by
    default the length of the first ``fit`` it runs in), from that fit's first epoch (a
    resumed run's: its first, 0), then ``minimum``."""

    def __init__(self, epochs: int | None = None, minimum: float = 0.0) -> None:
        super().__init__()
        self.epochs = None if epochs is None else checks.positive_int("epochs", epochs)
        self.minimum = checks.non_negative_number("minimum", minimum)

    def start(self, lr: float, epochs: int) -> None:
        super().start(lr, epochs)
        if self.epochs is None:
            self.epochs = max(1, epochs - self.origin)

    def rate(self, epoch: int, lr: float, history: list[dict[str, Any]]) -> float:
        done = min((epoch - self.origin) / self.epochs, 1.0)
        return self.minimum + (self.base - self.minimum) * 0.5 * (1 + math.cos(math.pi * done))


class ReduceOnPlateau(Schedule, Patience):
    """The rate times ``factor`` when ``monitor`` (``val_loss`` where there is validation
    data, else ``loss``; an accuracy watched to rise) has not improved by ``min_delta`` for
    ``patience`` epochs. It counts epochs across ``fit`` calls: one-epoch fits (scikit-learn's
    ``partial_fit``) lower the rate too."""

    def __init__(
        self,
        factor: float = 0.1,
        patience: int = 5,
        min_delta: float = 1e-4,
        minimum: float = 0.0,
        monitor: str | None = None,
    ) -> None:
        super().__init__()
        self.factor = checks.fraction("factor", factor)
        self.patience = checks.positive_int("patience", patience)
        self.min_delta = checks.non_negative_number("min_delta", min_delta)
        self.minimum = checks.non_negative_number("minimum", minimum)
        self.monitor = checks.monitor(monitor)
        self.best = math.inf
        self.waited = 0
        self.lower = False  # the next epoch's rate is lowered
        self._resumed_at: float | None = None  # the rate a resumed run had last

    def observe(self, record: dict[str, Any]) -> None:
        self.count(lower_is_better(record, watched(self.monitor, record)))
        if self.waited >= self.patience:
            self.waited, self.lower = 0, True

    def resume(
        self, history: list[dict[str, Any]], rate: bool = True, last: float | None = None
    ) -> None:
        """The records judged again, and the rate the last of them ran at taken up (a
        resumed optimizer starts from the run's first rate), unless ``rate`` is False."""
        for record in history:
            self.lower = False  # a fall the previous record asked for: its epoch ran at it
            self.observe(record)
        if rate and history:
            self._resumed_at = history[-1].get("lr", last)

    def rate(self, epoch: int, lr: float, history: list[dict[str, Any]]) -> float:
        if self._resumed_at is not None:
            lr, self._resumed_at = self._resumed_at, None
        if not self.lower:
            return lr
        self.lower = False
        return max(lr * self.factor, self.minimum)


class _Function(Schedule):
    """A function ``(epoch, lr) -> lr``, as Keras' ``LearningRateScheduler`` takes."""

    def __init__(self, function: Callable[[int, float], float]) -> None:
        super().__init__()
        self.function = function

    def rate(self, epoch: int, lr: float, history: list[dict[str, Any]]) -> float:
        return checks.positive_number("the schedule's learning rate", self.function(epoch, lr))


#: Schedules by name, with their defaults.
SCHEDULES = {"step": StepDecay, "cosine": CosineDecay, "plateau": ReduceOnPlateau}


def make_schedule(spec: Any) -> Schedule | None:
    """``None``, a name in ``SCHEDULES``, a ``Schedule`` or a function ``(epoch, lr) -> lr``."""
    if spec is None or isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        if spec not in SCHEDULES:
            raise InvalidArgument(
                f"unknown learning-rate schedule {spec!r}: choose one of {', '.join(SCHEDULES)}"
            )
        return SCHEDULES[spec]()
    if callable(spec):
        return _Function(spec)
    raise TypeError(f"lr_schedule must be a name, a Schedule or a function, got {spec!r}")
