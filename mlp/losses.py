"""The losses a model trains with: what its targets are, and what its outputs mean.

``cross_entropy`` takes integer class labels: over two or more outputs, the softmax of the
logits (multiclass); over one output, its sigmoid, the probability of class 1 (binary). One
output, not two, for two classes: half the weights of the last layer, and the same
probabilities as scikit-learn's ``MLPClassifier`` gives a binary problem.
``squared_error`` takes float targets, a column per output (regression, multi-output too),
and the outputs are the predictions as they are. Each loss is one fused backend op, its
value and gradient in one pass (``Backend.accumulate_loss``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backends import Backend

from . import checks


class Loss:
    """A loss as the model and the training loop use it."""

    #: the backend op that fuses its value and gradient (``backends.operands.LOSSES``)
    kernel = ""
    #: whether its outputs are classes (an accuracy is counted, ``predict_proba`` exists)
    classifies = True

    def __init__(self, outputs: int) -> None:
        self.outputs = outputs
        #: how many classes a classifier tells apart (0 for a regression)
        self.classes = max(outputs, 2) if self.classifies else 0

    def host_targets(self, y: np.ndarray, rows: int, dtype: np.dtype) -> np.ndarray:
        """``y`` checked and laid out as the device keeps it: an (n, width) column block."""
        raise NotImplementedError

    def target_column(self, batch: Any) -> Any:
        """What the backend op takes from a gathered batch of targets."""
        return batch[:, 0]

    def accumulate(
        self,
        backend: Backend,
        outputs: Any,
        targets: Any,
        totals: Any,
        weights: Any = None,
        weight_sum: Any = None,
    ) -> Any:
        """The fused op on a batch already on the device: its gradient over ``outputs``,
        its sums into ``totals``; ``targets`` and ``weights`` as the device keeps them
        (column blocks)."""
        column = None if weights is None else weights[:, 0]
        batch = self.target_column(targets)
        return backend.accumulate_loss(
            self.kernel, outputs, batch, outputs, totals, column, weight_sum
        )

    def probabilities(self, backend: Backend, outputs: Any) -> np.ndarray:
        """Each row's probability of each class (a classifier's ``predict_proba``), on the
        host; ``outputs`` may be overwritten. Only where ``classifies``."""
        raise NotImplementedError

    def predictions(self, backend: Backend, outputs: Any) -> np.ndarray:
        raise NotImplementedError

    def record(self, loss_sum: float, hits: float, weight: float) -> dict[str, float]:
        """An epoch's metrics from its totals, ``weight`` the rows (or their summed weights)."""
        metrics = {"loss": loss_sum / weight}
        if self.classifies:
            metrics["accuracy"] = hits / weight
        return metrics


class SoftmaxCrossEntropy(Loss):
    kernel = "softmax_cross_entropy"

    def host_targets(self, y: np.ndarray, rows: int, dtype: np.dtype) -> np.ndarray:
        return checks.class_labels(y, rows, self.outputs)

    def probabilities(self, backend: Backend, outputs: Any) -> np.ndarray:
        return backend.to_numpy(backend.softmax(outputs, out=outputs))

    def predictions(self, backend: Backend, outputs: Any) -> np.ndarray:
        return backend.to_numpy(backend.argmax(outputs))


class SigmoidCrossEntropy(Loss):
    kernel = "sigmoid_cross_entropy"

    def host_targets(self, y: np.ndarray, rows: int, dtype: np.dtype) -> np.ndarray:
        return checks.class_labels(y, rows, 2)

    def probabilities(self, backend: Backend, outputs: Any) -> np.ndarray:
        """Two columns, ``1 - p`` and ``p``, as for any other classifier."""
        p = backend.to_numpy(backend.activation("sigmoid", outputs, out=outputs))
        return np.concatenate([1 - p, p], axis=1)

    def predictions(self, backend: Backend, outputs: Any) -> np.ndarray:
        """Class 1 where ``probabilities`` gives it more than one half, so that ``predict``
        is the argmax of ``predict_proba`` (a logit too small to move the dtype's sigmoid
        off 0.5, below about 6e-8 in float32, is class 0 there)."""
        return (self.probabilities(backend, outputs)[:, 1] > 0.5).astype(np.int64)


class SquaredError(Loss):
    kernel = "squared_error"
    classifies = False

    def host_targets(self, y: np.ndarray, rows: int, dtype: np.dtype) -> np.ndarray:
        return checks.regression_targets(y, rows, self.outputs, dtype)

    def target_column(self, batch: Any) -> Any:
        return batch

    def predictions(self, backend: Backend, outputs: Any) -> np.ndarray:
        return backend.to_numpy(outputs)


def loss_for(name: str, outputs: int) -> Loss:
    """The loss called ``name`` (one of ``checks.LOSSES``) for a model of ``outputs`` outputs."""
    if checks.loss(name) == "squared_error":
        return SquaredError(outputs)
    return SigmoidCrossEntropy(outputs) if outputs == 1 else SoftmaxCrossEntropy(outputs)
