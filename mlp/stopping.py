"""Early stopping: end ``fit`` when a metric has stopped improving, the best weights kept."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from . import checks

if TYPE_CHECKING:
    from .model import MLP


def watched(monitor: str | None, record: dict[str, Any]) -> str:
    """The record's key a rule watches: ``monitor``, else ``val_loss`` where there is
    validation data, else ``loss``."""
    return monitor or ("val_loss" if "val_loss" in record else "loss")


#: What ends the names of the records watched to rise (a loss is watched to fall).
HIGHER_IS_BETTER = ("accuracy", "r2")


def lower_is_better(record: dict[str, Any], key: str) -> float:
    """``record[key]`` signed so that smaller is better: an accuracy (or an R², as a
    ``callback`` may add) is watched to rise, a loss to fall."""
    if key not in record:
        raise unrecorded(key, record)
    return -record[key] if key.endswith(HIGHER_IS_BETTER) else record[key]


def unrecorded(key: str, recorded: Any) -> checks.InvalidArgument:
    """The error for a ``monitor`` that none of fit's records holds."""
    return checks.InvalidArgument(
        f"{key!r} is watched, but fit records only {', '.join(sorted(recorded))}"
    )


class Patience:
    """What a rule counts of the value it watches (smaller is better): the best so far, and
    the epochs ``waited`` since it last improved by ``min_delta``, Keras' rule (the best
    moves only with such an improvement). ``mlp.sklearn`` counts as scikit-learn does."""

    best: float
    waited: int
    min_delta: float

    def count(self, value: float) -> bool:
        """Count an epoch's ``value``: whether it is the best so far."""
        if value < self.best - self.min_delta:
            self.best, self.waited = value, 0
            return True
        self.waited += 1
        return False


class EarlyStopping(Patience):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``monitor`` is ``val_loss`` where there is validation data, else ``loss`` (an
    ``accuracy`` is watched to rise, a loss to fall). With ``restore_best_weights`` the
    model ends ``fit`` (stopped or not) with the weights of its best epoch: a copy on the
    device, made only when an epoch improves, so no step waits for it.
    """

    def __init__(
        self,
        patience: int = 10,
        min_delta: float = 0.0,
        monitor: str | None = None,
        restore_best_weights: bool = True,
    ) -> None:
        self.patience = checks.positive_int("patience", patience)
        self.min_delta = checks.non_negative_number("min_delta", min_delta)
        self.monitor = checks.monitor(monitor)
        self.restore_best_weights = checks.boolean("restore_best_weights", restore_best_weights)
        self.best = math.inf
        self.best_epoch = 0
        self.waited = 0
        self.stopped_epoch = 0
        self._best_params: Any = None
        self._backend: Any = None  # the device the best weights are kept on
        self._resumed = False

    def __getstate__(self) -> dict[str, Any]:
        """The best weights as a host copy: a rule pickled beside a GPU model (an estimator's,
        say) unpickles on a machine without one, as the model does."""
        state = {**self.__dict__, "_backend": None}
        if self._best_params is not None and self._backend is not None:
            state["_best_params"] = self._backend.to_numpy(self._best_params)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"_backend": None, **state})  # absent from an older mlp's pickle

    def start(self) -> None:
        """A new ``fit``: nothing seen yet, unless ``resume`` has just said where it stands."""
        if self._resumed:
            self._resumed = False
            return
        self.best, self.best_epoch, self.waited, self._best_params = math.inf, 0, 0, None
        self.stopped_epoch = 0

    def go_on(self) -> None:
        """The next ``fit`` goes on counting from here, its best and their weights kept,
        where it would start afresh (scikit-learn's warm starts)."""
        self._resumed = True
        self.stopped_epoch = 0

    def watched(self, record: dict[str, Any]) -> str:
        return watched(self.monitor, record)

    def stop(self, record: dict[str, Any], model: MLP) -> bool:
        """After each epoch: whether to stop now (``stopped_epoch`` says when it did)."""
        if self._judge(record) and self.restore_best_weights:
            self._keep(model)
        if self.waited >= self.patience:
            self.stopped_epoch = record["epoch"]
        return self.stopped_epoch > 0

    def _judge(self, record: dict[str, Any]) -> bool:
        """Count the epoch: whether it is the best so far."""
        if self.count(lower_is_better(record, self.watched(record))):
            self.best_epoch = record["epoch"]
            return True
        return False

    def resume(
        self, history: list[dict[str, Any]], model: MLP, best: tuple[int, Any] | None = None
    ) -> bool:
        """Go on from an interrupted run, as if never interrupted: its ``history`` judged
        again (the best so far, the epochs waited), the best epoch's weights ``best`` (its
        epoch and flat parameters, as ``best_weights`` gave them), or the model's own where
        its last epoch is the best. The next ``fit`` goes on from here. Where the best
        weights are not given (a checkpoint from before they were kept), it starts afresh
        from here instead. Returns whether the run had already stopped."""
        self._resumed = False
        self.start()
        stopped = False
        for record in history:
            self._judge(record)
            stopped = self.waited >= self.patience
        if self.restore_best_weights and self.best_epoch:
            if self.best_epoch == history[-1]["epoch"]:
                self._keep(model)
            elif best is not None and best[0] == self.best_epoch:
                self._best_params = model.backend.asarray(best[1], dtype=model.dtype)
                self._backend = model.backend
            else:
                self.start()
                return False
        self.stopped_epoch = history[-1]["epoch"] if stopped else 0
        self._resumed = True
        return stopped

    def best_weights(self, model: MLP) -> tuple[int, Any] | None:
        """The best epoch and a host copy of its weights, where kept (for a checkpoint)."""
        if self._best_params is None:
            return None
        return self.best_epoch, model.backend.to_numpy(self._best_params).copy()

    def restore(self, model: MLP) -> None:
        """The best epoch's weights back into ``model`` (when kept)."""
        if self._best_params is not None:
            model.params[...] = model.backend.asarray(self._best_params, dtype=model.dtype)

    def _keep(self, model: MLP) -> None:
        be, best = model.backend, self._best_params
        if best is None or best.shape != model.params.shape or not be.is_array(best):
            self._best_params = be.empty(model.params.shape, model.dtype)
            self._backend = be
        self._best_params[...] = model.params
