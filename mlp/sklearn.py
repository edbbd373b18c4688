"""scikit-learn estimators over ``MLP``: ``MLPClassifier`` and ``MLPRegressor``, named and
behaving as scikit-learn's own, on the CPU or, with ``device="cuda"``, on a GPU.

They take scikit-learn's parameters where they mean the same, plus ``device`` and ``dtype``,
and fit with this library's own backpropagation: ``solver="adam"`` or ``"sgd"`` (with
``momentum`` and ``nesterovs_momentum``), ``batch_size="auto"`` (``min(200, n)``), and the
same stopping rule, epoch for epoch: after more than ``n_iter_no_change`` epochs that did
not beat the best training loss by ``tol`` (with ``early_stopping``, the validation score,
the best weights kept); with
``learning_rate="adaptive"`` the rate falls by 5 there instead, and the fit ends where it
would fall from 1e-6. The count, the best and its weights go on from call to call, as
scikit-learn's. ``warm_start`` keeps the weights and starts the optimizer afresh,
``partial_fit`` goes on with it. ``alpha``, the L2 penalty, is applied as scikit-learn's
gradient applies it, ``alpha / batch_size`` of each parameter per step (on biases too), and
counted in the loss as scikit-learn's counts it (at the epoch's last weights).
``lbfgs`` is not offered: it is a full-batch method, and the point of this library is the
mini-batch step.

Needs scikit-learn (``pip install 'mlp-backprop[sklearn]'``); ``import mlp`` alone never imports it.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterable
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import checks
from .errors import InvalidArgument, TrainingDiverged
from .model import MLP
from .optim import SGD, Adam
from .schedules import ReduceOnPlateau, Schedule
from .stopping import EarlyStopping

#: scikit-learn's activation names, as this library calls them.
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
SOLVERS = ("adam", "sgd")
LEARNING_RATES = ("constant", "invscaling", "adaptive")


#: ``learning_rate="adaptive"``: where the rate would fall from this or lower, the fit ends.
LOWEST_ADAPTIVE_RATE = 1e-6


class _Count(EarlyStopping):
    """scikit-learn's stopping rule and what it keeps (``_no_improvement_count``, the best
    loss or validation score, with ``early_stopping`` the best weights), kept on the
    estimator from call to call: a warm ``fit`` and ``partial_fit`` go on counting where the
    last call left off, as scikit-learn's do. An epoch counts as one without improvement
    unless it beats the best by ``tol`` (``min_delta``), and the best follows every
    improvement, however small (so a value that creeps down by less than ``tol`` an epoch
    ends the fit; Keras' rule, whose best moves by ``tol`` only, would not). Once more than
    ``n_iter_no_change`` epochs have counted (``patience``, one more), the fit ends; with
    ``learning_rate="adaptive"`` the rate falls by 5 there instead and the count starts
    again, and the fit ends only where the rate is down to ``LOWEST_ADAPTIVE_RATE``."""

    def __init__(self, adaptive: bool, **settings: Any) -> None:
        super().__init__(**settings)
        self.adaptive = adaptive
        self.optimizer: Any = None  # the one whose rate an adaptive count lowers

    def settings(self) -> tuple:
        """What decides the count: a call with other settings starts a new one."""
        return (self.adaptive, self.patience, self.min_delta, self.monitor,
                self.restore_best_weights)  # fmt: skip

    def count(self, value: float) -> bool:
        self.waited = self.waited + 1 if value > self.best - self.min_delta else 0
        if value < self.best:
            self.best = value
            return True
        return False

    def stop(self, record: dict[str, Any], model: MLP) -> bool:
        spent = self.optimizer is None or self.optimizer.lr <= LOWEST_ADAPTIVE_RATE
        if super().stop(record, model) and self.adaptive and not spent:
            lowered = self.optimizer.lr / 5  # the next epoch's rate
            _rescale_velocity(self.optimizer, self.optimizer.lr, lowered)
            self.optimizer.lr = lowered
            self.waited, self.stopped_epoch = 0, 0
        return self.stopped_epoch > 0


def _rescale_velocity(optimizer: Any, old: float, new: float) -> None:
    """scikit-learn's momentum holds the rate (``velocity = momentum * velocity - lr *
    grad``), this library's SGD PyTorch's form (``velocity = momentum * velocity + grad``,
    times the rate at the step): the two agree while the rate holds, and where it changes
    from ``old`` to ``new`` the velocity scaled by ``old / new`` keeps scikit-learn's steps."""
    velocity = optimizer.state.get("velocity") if isinstance(optimizer, SGD) else None
    if velocity is not None and new != old:
        optimizer.backend.xp.multiply(velocity, old / new, out=velocity)


class _InverseScaling(Schedule):
    """``learning_rate="invscaling"``: ``learning_rate_init / (t + 1) ** power_t`` before
    each epoch, ``t`` the samples seen (``t_``), as scikit-learn sets it at each epoch's end;
    a fit's first epoch runs at ``learning_rate_init`` (scikit-learn's new optimizer). Its
    settings are plain numbers, so processes fitting together can check that they agree."""

    def __init__(self, optimizer: Any, init: float, power: float, seen: int, rows: int,
                 epoch: int, new: bool) -> None:  # fmt: skip
        super().__init__()
        self.optimizer, self.init, self.power = optimizer, init, power
        self.seen, self.rows = seen, rows  # the samples seen before this call, and in an epoch
        self.epoch, self.new = epoch, new  # the call's first epoch; whether its optimizer is

    def rate(self, epoch: int, lr: float, history: list[dict[str, Any]]) -> float:
        if self.new and epoch == self.epoch:
            rate = self.init
        else:
            rate = self.init / (self.seen + (epoch - self.epoch) * self.rows + 1) ** self.power
        _rescale_velocity(self.optimizer, lr, rate)
        return rate


#: The name of the adaptive rate's schedule in pickles of mlp 0.1.0 before the count lowered
#: the rate itself: such a pickle loads, and ``__setstate__`` drops what it held.
_Plateau = ReduceOnPlateau


class _MLPEstimator(BaseEstimator):
    """What the classifier and the regressor share: parameters, the model, the fit loop."""

    _loss = ""

    def __setstate__(self, state: dict[str, Any]) -> None:
        """An older mlp's pickle: its schedule dropped, and the samples counted from now
        (it kept no count of them, which only ``learning_rate="invscaling"`` reads)."""
        state = dict(state)
        state.pop("_schedule", None)
        if "model_" in state:
            state.setdefault("t_", 0)
        super().__setstate__(state)

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 1e-4,
        batch_size: Any = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 1e-3,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------------ what subclasses say
    def _encode(
        self, y: np.ndarray, first: bool, incremental: bool
    ) -> tuple[np.ndarray, int, dict[str, Any]]:
        """Targets as the model trains on them, its number of outputs, and the attributes
        learned from ``y``."""
        raise NotImplementedError

    def _monitor(self) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ fitting
    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, communicator: Any = None
    ) -> _MLPEstimator:
        """Train for up to ``max_iter`` epochs (from the weights it has, with ``warm_start``);
        with a ``communicator`` (``mlp.distributed``), on every process of its world at once
        (give each the same ``random_state``)."""
        return self._fit(X, y, sample_weight, incremental=False, communicator=communicator)

    def _fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any,
        incremental: bool,
        communicator: Any = None,
    ) -> _MLPEstimator:
        """A refused call (a ``ValueError`` or ``TypeError``, from here or the model's own
        checks) leaves every attribute as it was, ``n_features_in_`` and the model too.

        A fit that diverges is a ``ValueError``, as scikit-learn's is. A fresh fit trains a
        new model, so the last fit stays; a warm or partial one diverged in the fitted
        model itself, so nothing fitted is left (it would predict NaN)."""
        kept = dict(vars(self))
        try:
            return self._fit_checked(X, y, sample_weight, incremental, communicator)
        except (ValueError, TypeError, TrainingDiverged) as exc:
            spoilt = getattr(self, "model_", None) is kept.get("model_")
            vars(self).clear()
            vars(self).update(kept)
            if not isinstance(exc, TrainingDiverged):
                raise
            if spoilt:
                for name in [n for n in vars(self) if n.endswith("_") and n[0] != "_"]:
                    delattr(self, name)
            raise ValueError(f"{exc} (the solver produced non-finite weights)") from exc

    def _fit_checked(
        self, X: Any, y: Any, sample_weight: Any, incremental: bool, communicator: Any
    ) -> _MLPEstimator:
        self._check_parameters()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")  # as scikit-learn
        fitted = hasattr(self, "model_")
        first = not fitted or not (self.warm_start or incremental)
        X, y = validate_data(self, X, y, reset=first, **self._data_rules())
        targets, outputs, learned = self._encode(y, first, incremental)
        weights = self._weights(X, y, sample_weight, incremental)
        # a new model's seed, drawn from random_state (the hold-out's too)
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1)) if first else None
        validation = None
        if self.early_stopping:
            split = self._seed if seed is None else seed
            X, targets, weights, validation = self._hold_out(X, y, targets, weights, split)
        rows = X.shape[0]
        batch = min(200, rows) if self.batch_size == "auto" else min(self.batch_size, rows)
        # the penalty's weight in a batch: rows, or with sample weights their mean sum (as
        # the rows they stand for would have it)
        mean_weight = 1.0 if weights is None else float(np.mean(weights))
        decay = self.alpha / (batch * mean_weight)
        going_on = incremental and fitted and self.model_.optimizer is not None
        optimizer = self.model_.optimizer if going_on else self._optimizer(decay)
        if first:
            self._start(X.shape[1], outputs, seed)
            self.t_ = 0
        vars(self).update(learned)
        optimizer.weight_decay = decay  # partial_fit goes on with its moments, this batch's
        count = self._count(first)
        count.optimizer = optimizer
        batches = -(-rows // batch)
        # scikit-learn's loss holds the L2 penalty, 0.5 * alpha * |W|^2 per batch over the
        # rows (each batch's weights there, the epoch's last here); its validation score
        # is the estimator's own score, weighted as the rows are
        penalty = 0.5 * self.alpha * batches / (rows * mean_weight)
        history = self.model_.fit(
            X,
            targets,
            epochs=1 if incremental else self.max_iter,
            batch_size=batch,
            optimizer=optimizer,
            validation_data=validation,
            shuffle=bool(self.shuffle),
            sample_weight=weights,
            lr_schedule=self._learning_rate(optimizer, rows, new=not going_on),
            early_stopping=count,
            verbose=bool(self.verbose),
            callback=lambda record: self._judged(record, penalty, validation),
            communicator=communicator,
        )
        if first:
            self.loss_curve_ = []
        if first or self.validation_scores_ is None:
            self.validation_scores_ = [] if self.early_stopping else None
        self.loss_curve_ += [record["loss"] for record in history]
        self.loss_ = self.loss_curve_[-1]
        if self.early_stopping:
            self.validation_scores_ += [record[self._monitor()] for record in history]
        # the best the count has seen, over every call it has counted
        self.best_loss_ = None if self.early_stopping else count.best
        self.best_validation_score_ = -count.best if self.early_stopping else None
        self.n_iter_ = len(history)  # this call's epochs, as scikit-learn counts them
        self.t_ += rows * len(history)
        stopped = count.stopped_epoch > 0
        if not incremental and not stopped and len(history) == self.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                "the optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=4,
            )
        return self

    def _count(self, first: bool) -> _Count:
        """The stopping count: the last call's, going on, where this call is warm or
        incremental and counts alike; else a new one."""
        count = _Count(
            adaptive=self._adaptive(),
            patience=self._patience(),
            min_delta=self.tol,
            monitor=self._watched(),
            restore_best_weights=self.early_stopping,
        )
        last = getattr(self, "_last_count", None)
        if not first and last is not None and last.settings() == count.settings():
            count = last
            count.go_on()
        self._last_count = count
        return count

    def _judged(self, record: dict[str, Any], penalty: float, validation: Any) -> None:
        """An epoch's record as scikit-learn's rule sees it (``fit``'s ``callback``, before
        the count): the loss with its L2 penalty, and the validation score."""
        if penalty:
            record["loss"] += penalty * sum(
                float(w.reshape(-1) @ w.reshape(-1)) for w in (
                    layer.weight for layer in self.model_.linears)
            )  # fmt: skip
        if validation is not None:
            record.update(self._validation_score(validation))

    def _validation_score(self, validation: tuple) -> dict[str, float]:
        """What the count watches with ``early_stopping``, beside ``fit``'s own metrics."""
        return {}

    def _data_rules(self) -> dict[str, Any]:
        return {"dtype": (np.float64, np.float32), "multi_output": True, "y_numeric": False}

    def _weights(
        self, X: np.ndarray, y: np.ndarray, sample_weight: Any, incremental: bool
    ) -> np.ndarray | None:
        if sample_weight is None:
            return None
        weights = _check_sample_weight(sample_weight, X, dtype=np.float64)
        return checks.sample_weights(weights, X.shape[0], np.dtype(np.float64))

    def _start(self, features: int, outputs: int, seed: int) -> None:
        """A new model: its sizes and seed."""
        hidden = self._hidden()
        self._seed = seed
        self.model_ = MLP(
            [features, *hidden, outputs],
            activation=ACTIVATIONS[self.activation],
            device=self.device,
            dtype=self.dtype,
            seed=seed,
            loss=self._loss,
        )
        self.n_layers_ = len(hidden) + 2
        self.n_outputs_ = outputs
        self.out_activation_ = self._out_activation(outputs)

    def _optimizer(self, decay: float) -> Adam | SGD:
        """``decay``: scikit-learn's penalty gradient, ``alpha * W / batch size``."""
        if self.solver == "adam":
            return Adam(
                lr=self.learning_rate_init,
                betas=(self.beta_1, self.beta_2),
                eps=self.epsilon,
                weight_decay=decay,
            )
        return SGD(
            lr=self.learning_rate_init,
            momentum=self.momentum,
            nesterov=self.nesterovs_momentum and self.momentum > 0,
            weight_decay=decay,
        )

    def _adaptive(self) -> bool:
        return self.solver == "sgd" and self.learning_rate == "adaptive"

    def _watched(self) -> str:
        """What the stopping rule (and the adaptive rate) watch."""
        return self._monitor() if self.early_stopping else "loss"

    def _learning_rate(self, optimizer: Any, rows: int, new: bool) -> _InverseScaling | None:
        """``learning_rate="invscaling"`` (for ``sgd`` only, as there) as a schedule; an
        adaptive rate is the count's to lower (``_Count``), a constant one no schedule."""
        if self.solver != "sgd" or self.learning_rate != "invscaling":
            return None
        seen, epoch = self.t_, self.model_.epochs_trained
        return _InverseScaling(
            optimizer, self.learning_rate_init, self.power_t, seen, rows, epoch, new
        )

    def _patience(self) -> int:
        """scikit-learn stops (or lowers an adaptive rate) once *more than*
        ``n_iter_no_change`` epochs have gone without improvement."""
        return self.n_iter_no_change + 1

    def _hold_out(
        self, X: np.ndarray, y: np.ndarray, targets: Any, weights: Any, seed: int
    ) -> tuple:
        """``early_stopping``: ``validation_fraction`` of the rows, drawn with
        ``random_state`` (stratified for a classifier), watched instead of the loss."""
        stratify = y if isinstance(self, ClassifierMixin) else None
        parts = [X, targets] + ([] if weights is None else [weights])
        split = train_test_split(
            *parts,
            test_size=self.validation_fraction,
            random_state=seed,
            stratify=stratify,
        )
        train, held = split[0::2], split[1::2]
        if len(held[0]) < 2:  # a score of one row is NaN, and NaN never stops a fit
            raise ValueError(  # scikit-learn's words
                "The validation set is too small. Increase 'validation_fraction' or the size "
                "of your dataset."
            )
        weights_train = None if weights is None else train[2]
        validation = (held[0], held[1]) + (() if weights is None else (held[2],))
        return train[0], train[1], weights_train, validation

    def _check_parameters(self) -> None:
        """scikit-learn checks parameters at fit, not at construction (``clone`` relies on
        it); each by the library's own check (the optimizer checks its own settings)."""
        for name, allowed in (
            ("activation", tuple(ACTIVATIONS)),
            ("solver", SOLVERS),
            ("learning_rate", LEARNING_RATES),
        ):
            if getattr(self, name) not in allowed:
                offered = " (lbfgs is not offered)" if name == "solver" else ""
                raise InvalidArgument(
                    f"{name} must be one of {allowed}{offered}, got {getattr(self, name)!r}"
                )
        checks.positive_int("max_iter", self.max_iter)
        checks.positive_int("n_iter_no_change", self.n_iter_no_change)
        if self.batch_size != "auto":
            checks.positive_int("batch_size", self.batch_size)
        checks.non_negative_number("alpha", self.alpha)
        checks.non_negative_number("tol", self.tol)
        checks.positive_number("learning_rate_init", self.learning_rate_init)
        checks.non_negative_number("power_t", self.power_t)
        for flag in ("shuffle", "nesterovs_momentum", "early_stopping", "warm_start"):
            checks.boolean(flag, getattr(self, flag))  # "false" would be true
        if not checks.fraction("validation_fraction", self.validation_fraction) > 0:
            raise InvalidArgument("validation_fraction must be in (0, 1), got 0")
        for size in self._hidden():
            checks.positive_int("hidden_layer_sizes", size)

    def _hidden(self) -> list:
        """``hidden_layer_sizes`` as a list (scikit-learn takes one int for one layer)."""
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, Integral):
            return [hidden]
        if isinstance(hidden, Iterable) and not isinstance(hidden, str):
            return list(hidden)
        raise InvalidArgument(f"hidden_layer_sizes must be whole numbers, got {hidden!r}")

    def _out_activation(self, outputs: int) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ what was learned
    @property
    def coefs_(self) -> list[np.ndarray]:
        """Each layer's weights, (inputs, outputs) as scikit-learn lays them out: host
        copies, in the model's dtype, read-only (a write would change nothing the model
        computes; ``model_.load_state_dict`` does)."""
        return self._parameters("weight")

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Each layer's biases: host copies, in the model's dtype, read-only."""
        return self._parameters("bias")

    def _parameters(self, kind: str) -> list[np.ndarray]:
        check_is_fitted(self, "model_")
        state = self.model_.state_dict()
        for value in state.values():
            value.setflags(write=False)
        return [state[f"{i}.{kind}"] for i in range(len(self.model_.linears))]

    # ------------------------------------------------------------------ exporting
    def to_onnx(self, path: Any) -> Any:
        """Write the fitted model as an ONNX graph (``mlp.export``): its output is what
        ``predict_proba`` (a regressor: ``predict``, as a column per target) returns, a
        classifier's ``classes_`` kept as its class names. It takes ``dtype`` inputs
        (float32 by default), where scikit-learn's methods take float64 too."""
        check_is_fitted(self, "model_")
        classes = getattr(self, "classes_", None)
        names = None if classes is None else [str(label) for label in classes]
        return self.model_.to_onnx(path, classes=names)

    # ------------------------------------------------------------------ predicting
    def _outputs(self, X: Any) -> Any:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return X


class MLPClassifier(ClassifierMixin, _MLPEstimator):
    """A multilayer perceptron classifier, as ``sklearn.neural_network.MLPClassifier``.

    Any labels (strings too) become ``classes_``; two classes train one sigmoid output,
    more a softmax. ``class_weight`` (``"balanced"`` or ``{label: weight}``) multiplies
    ``sample_weight``. ``device="cuda"`` trains and predicts on a GPU. With
    ``early_stopping``, ``validation_scores_`` are the held-out accuracies, weighted as the
    rows are (scikit-learn's ``score`` with their weights).
    """

    _loss = "cross_entropy"

    def __init__(self, *args: Any, class_weight: Any = None, **parameters: Any) -> None:
        super().__init__(*args, **parameters)
        self.class_weight = class_weight

    # scikit-learn reads an estimator's parameters from its __init__'s signature: the
    # shared ones, and class_weight
    __init__.__signature__ = inspect.signature(_MLPEstimator.__init__).replace(
        parameters=[
            *inspect.signature(_MLPEstimator.__init__).parameters.values(),
            inspect.Parameter("class_weight", inspect.Parameter.KEYWORD_ONLY, default=None),
        ]
    )

    def _data_rules(self) -> dict[str, Any]:
        return {**super()._data_rules(), "multi_output": False}  # one label per row

    def _encode(
        self, y: np.ndarray, first: bool, incremental: bool
    ) -> tuple[np.ndarray, int, dict[str, Any]]:
        check_classification_targets(y)
        if not first:
            classes = self.classes_
        elif self._classes is not None:  # partial_fit's first call names them
            classes = self._classes
        else:  # learned from y: one row cannot show two classes
            if y.shape[0] < 2:
                raise ValueError(
                    f"MLPClassifier needs 2 samples or more, got n_samples = {y.shape[0]}"
                )
            classes = LabelEncoder().fit(y).classes_
        if not first and not incremental and not np.array_equal(np.unique(y), classes):
            raise ValueError(  # as scikit-learn: a warm fit trains on every class it has
                "warm_start can only be used where y has the same classes as in the "
                f"previous call to fit: previously {classes!r}, y has {np.unique(y)!r}"
            )
        unknown = np.setdiff1d(y, classes)
        if unknown.size:
            raise ValueError(f"y holds labels not in classes_ {classes!r}: {unknown[:5]!r}")
        if len(classes) < 2:
            raise ValueError(
                f"MLPClassifier needs samples of at least 2 classes, got only class {classes[0]!r}"
            )
        outputs = 1 if len(classes) == 2 else len(classes)
        return np.searchsorted(classes, y).astype(np.int32), outputs, {"classes_": classes}

    def _weights(
        self, X: np.ndarray, y: np.ndarray, sample_weight: Any, incremental: bool
    ) -> np.ndarray | None:
        weights = super()._weights(X, y, sample_weight, incremental)
        if self.class_weight is None:
            return weights
        if incremental and isinstance(self.class_weight, str):
            raise ValueError(  # as SGDClassifier: a batch's make-up is not the data's
                f"class_weight={self.class_weight!r} is not supported for partial_fit: pass "
                "{label: weight} (sklearn.utils.class_weight.compute_class_weight over all "
                "the labels gives the balanced ones)"
            )
        y = y[:, 0] if y.ndim == 2 else y
        by_class = compute_sample_weight(self.class_weight, y)
        return by_class if weights is None else by_class * weights

    def _monitor(self) -> str:
        return "val_accuracy"

    def _out_activation(self, outputs: int) -> str:
        return "logistic" if outputs == 1 else "softmax"

    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None
    ) -> MLPClassifier:
        """One epoch over ``(X, y)``; the first call needs ``classes``, every label there is,
        and a later one that names them names the same (scikit-learn's order and rule)."""
        named = None if classes is None else LabelEncoder().fit(np.asarray(classes)).classes_
        if not hasattr(self, "model_"):
            if named is None:
                raise ValueError("the first call to partial_fit needs classes=[every label]")
            self._classes = named
        elif named is not None and not np.array_equal(named, self.classes_):
            raise ValueError(
                f"classes={named!r} is not the same as on the first call to partial_fit, "
                f"{self.classes_!r}"
            )
        return self._fit(X, y, sample_weight, incremental=True)

    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, communicator: Any = None
    ) -> MLPClassifier:
        """Train for up to ``max_iter`` epochs; ``classes_`` are the labels of ``y``; with a
        ``communicator``, on every process of its world at once."""
        self._classes = None  # y's labels (or, warm, those the model has)
        return self._fit(X, y, sample_weight, incremental=False, communicator=communicator)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Each class's probability, a column per entry of ``classes_``."""
        X = self._outputs(X)
        return self.model_.predict_proba(X).astype(np.float64)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Each class's log-probability, worked out from the logits (a log-sigmoid or a
        log-softmax, in float64): a probability that rounds to 0 has a log, not -inf."""
        X = self._outputs(X)
        z = self.model_.backend.to_numpy(self.model_.forward(X)).astype(np.float64)
        if z.shape[1] == 1:  # log(1 - p) = -softplus(z), log p = -softplus(-z)
            return -np.logaddexp(0.0, np.hstack([z, -z]))
        shifted = z - z.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def predict(self, X: Any) -> np.ndarray:
        X = self._outputs(X)
        return self.classes_[self.model_.predict(X)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


class MLPRegressor(RegressorMixin, _MLPEstimator):
    """A multilayer perceptron regressor, as ``sklearn.neural_network.MLPRegressor``: the
    squared error with an identity output, one target or many. ``loss_curve_`` holds half
    the squared error summed over a row's targets (scikit-learn's averages them); with
    ``early_stopping``, ``validation_scores_`` are the held-out R² (``score``), weighted as
    the rows are, as scikit-learn's."""

    _loss = "squared_error"

    def _encode(
        self, y: np.ndarray, first: bool, incremental: bool
    ) -> tuple[np.ndarray, int, dict[str, Any]]:
        y = np.asarray(y, dtype=np.float64)
        outputs = 1 if y.ndim == 1 else y.shape[1]
        if not first and outputs != self.n_outputs_:
            raise ValueError(f"y has {outputs} targets per row, the model {self.n_outputs_}")
        return y.reshape(-1, outputs), outputs, {}

    def _data_rules(self) -> dict[str, Any]:
        return {**super()._data_rules(), "y_numeric": True}

    def _monitor(self) -> str:
        return "val_r2"

    def _validation_score(self, validation: tuple) -> dict[str, float]:
        X, y, *weights = validation
        predicted = self.model_.predict(X)
        if not np.all(np.isfinite(predicted)):
            return {"val_r2": float("nan")}  # as scikit-learn scores such predictions
        return {
            "val_r2": float(r2_score(y, predicted, sample_weight=weights[0] if weights else None))
        }

    def _out_activation(self, outputs: int) -> str:
        return "identity"

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over ``(X, y)``, from the weights so far."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        X = self._outputs(X)
        predicted = self.model_.predict(X).astype(np.float64)
        return predicted[:, 0] if self.n_outputs_ == 1 else predicted  # as scikit-learn's

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
