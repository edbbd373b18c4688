"""The scikit-learn estimators: scikit-learn's own estimator checks, and the tools people
use them in (Pipeline, GridSearchCV, cross_val_score, clone, pickle)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_diabetes, load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from mlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from tests.helpers import backend_or_skip  # noqa: E402

#: float32 sums in another order (another batch, another shape for BLAS) differ past 1e-7,
#: the tolerance these checks ask for; the float64 instances below pass them.
FLOAT32_EXPECTED = {
    "check_sample_weight_equivalence_on_dense_data": (
        "float32: weights and repeated rows agree to about 1e-6, the check asks 1e-7"
    ),
    "check_methods_subset_invariance": (
        "float32: a row predicted in a smaller batch differs by about 1e-7 relative (BLAS "
        "sums in another order), the check asks 1e-7"
    ),
}


def expected_failures(estimator):
    return FLOAT32_EXPECTED if estimator.dtype == "float32" else {}


@parametrize_with_checks(
    [
        MLPClassifier(max_iter=100),
        MLPRegressor(max_iter=100),
        MLPClassifier(max_iter=100, dtype="float64", random_state=0),
        MLPRegressor(max_iter=100, dtype="float64", solver="sgd", tol=1e-2, random_state=42),
    ],
    expected_failed_checks=expected_failures,
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def iris():
    data = load_iris()
    return data.data, data.target_names[data.target]  # string class names


def test_pipeline_grid_search_and_string_labels(iris):
    X, y = iris
    pipeline = make_pipeline(StandardScaler(), MLPClassifier(max_iter=300, random_state=0))
    search = GridSearchCV(pipeline, {"mlpclassifier__hidden_layer_sizes": [(8,), (32,)]}, cv=3)
    search.fit(X, y)
    assert search.best_score_ > 0.9
    assert set(search.predict(X)) <= set(y) and search.score(X, y) > 0.9
    model = search.best_estimator_[-1]
    assert list(model.classes_) == ["setosa", "versicolor", "virginica"]
    assert model.predict_proba(X[:4]).shape == (4, 3) and model.n_features_in_ == 4
    assert len(model.loss_curve_) == model.n_iter_ and model.loss_curve_[-1] < model.loss_curve_[0]


def test_cross_val_score_of_a_regressor_matches_scikit_learns():
    """Same data, sizes, solver and iterations: R² within 0.05 of scikit-learn's own."""
    from sklearn.neural_network import MLPRegressor as Theirs

    X, y = load_diabetes(return_X_y=True)
    y = (y - y.mean()) / y.std()
    scores = {}
    for estimator in (MLPRegressor, Theirs):
        pipeline = make_pipeline(
            StandardScaler(), estimator(hidden_layer_sizes=(32,), max_iter=300, random_state=0)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores[estimator] = cross_val_score(pipeline, X, y, cv=3).mean()
    assert scores[MLPRegressor] > 0.3 and scores[MLPRegressor] > scores[Theirs] - 0.05


def test_clone_and_pickle_keep_what_was_fitted(iris):
    X, y = iris
    model = MLPClassifier((16,), max_iter=50, random_state=1).fit(X, y)
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.predict_proba(X), model.predict_proba(X))
    fresh = clone(model)
    assert fresh.get_params() == model.get_params() and not hasattr(fresh, "model_")


def test_binary_labels_train_one_sigmoid_output(iris):
    X, y = iris
    keep = y != "virginica"
    X = StandardScaler().fit_transform(X)
    model = MLPClassifier((8,), max_iter=100, random_state=0).fit(X[keep], y[keep])
    assert model.model_.sizes[-1] == 1 and model.out_activation_ == "logistic"
    proba = model.predict_proba(X[keep])
    assert proba.shape == (keep.sum(), 2) and model.score(X[keep], y[keep]) > 0.95
    np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], model.predict(X[keep]))


def test_class_weight_moves_the_boundary(iris):
    X, y = iris
    heavy = {"setosa": 1.0, "versicolor": 1.0, "virginica": 50.0}
    plain = MLPClassifier((8,), max_iter=30, random_state=0).fit(X, y)
    weighted = MLPClassifier((8,), max_iter=30, random_state=0, class_weight=heavy).fit(X, y)
    assert (weighted.predict(X) == "virginica").sum() > (plain.predict(X) == "virginica").sum()


def test_partial_fit_and_warm_start_go_on(iris):
    X, y = iris
    model = MLPClassifier((8,), random_state=0)
    with pytest.raises(ValueError, match="needs classes"):
        model.partial_fit(X, y)
    for _ in range(3):
        model.partial_fit(X, y, classes=np.unique(y))
    # as scikit-learn counts: n_iter_ the call's epochs, t_ the samples seen in all
    assert model.n_iter_ == 1 and model.t_ == 450 and model.model_.epochs_trained == 3
    warm = MLPClassifier((8,), max_iter=5, random_state=0, warm_start=True)
    quiet_fit(warm, X, y)
    first = warm.model_
    quiet_fit(warm, X, y)
    assert warm.model_ is first and warm.n_iter_ == 5 and first.epochs_trained == 10
    assert warm.t_ == 1500 and len(warm.loss_curve_) == 10


def test_early_stopping_keeps_the_best_validation_score(iris):
    X, y = iris
    model = MLPClassifier((8,), max_iter=500, early_stopping=True, n_iter_no_change=5,
                          random_state=0, learning_rate_init=0.01).fit(X, y)  # fmt: skip
    assert model.n_iter_ < 500
    assert model.best_validation_score_ == max(model.validation_scores_)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"solver": "lbfgs"}, "solver must be one of"),
        ({"activation": "softplus"}, "activation must be one of"),
        ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes"),
        ({"batch_size": 0}, "batch_size"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"power_t": -1.0}, "power_t"),
        ({"epsilon": 0.0}, "eps must be"),
        ({"shuffle": "no"}, "shuffle must be True or False"),
        # the words a flag is not: "false" trained with Nesterov momentum, or early stopping
        ({"solver": "sgd", "nesterovs_momentum": "false"}, "nesterovs_momentum must be True"),
        ({"early_stopping": "false"}, "early_stopping must be True or False"),
        ({"warm_start": "no"}, "warm_start must be True or False"),
        ({"hidden_layer_sizes": "ab"}, "hidden_layer_sizes must be whole numbers, got 'ab'"),
    ],
)
def test_bad_parameters_are_refused_at_fit(iris, parameters, message):
    X, y = iris
    model = MLPClassifier(**parameters)  # as scikit-learn: nothing is checked before fit
    with pytest.raises((ValueError, TypeError), match=message):
        model.fit(X, y)


@pytest.mark.cuda
@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_the_estimators_on_a_gpu(iris, estimator):
    """device="cuda": the same fit as on the CPU (to float32 rounding), predictions on the
    host, and a pickle that loads back with its weights."""
    backend_or_skip("cuda")
    X, y = iris
    X = StandardScaler().fit_transform(X)
    if estimator is MLPRegressor:
        y = X[:, 0] * 2 - X[:, 1]
    made = {
        d: estimator((16,), max_iter=30, random_state=0, device=d).fit(X, y)
        for d in ("cpu", "cuda")
    }
    on_gpu = made["cuda"]
    assert on_gpu.model_.device.startswith("cuda")
    method = "predict_proba" if estimator is MLPClassifier else "predict"
    want, got = getattr(made["cpu"], method)(X), getattr(on_gpu, method)(X)
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    back = pickle.loads(pickle.dumps(on_gpu))
    np.testing.assert_array_equal(getattr(back, method)(X), got)


def test_sgd_learning_rate_schedules(iris):
    """invscaling: init / (samples seen + 1) ** power_t, set before each epoch; adaptive: the
    rate falls by 5 after n_iter_no_change epochs without gain."""
    X, y = iris
    X = StandardScaler().fit_transform(X)
    model = MLPClassifier((8,), solver="sgd", learning_rate="invscaling", max_iter=3,
                          learning_rate_init=0.1, random_state=0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert model.model_.optimizer.lr == pytest.approx(0.1 / (2 * 150 + 1) ** 0.5)
    adaptive = MLPClassifier((8,), solver="sgd", learning_rate="adaptive", max_iter=60,
                             learning_rate_init=5.0, momentum=0.0, random_state=0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        adaptive.fit(X, y)
    assert adaptive.model_.optimizer.lr < 5.0  # a rate that high stalls: it was cut


def quiet_fit(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(*args, **kwargs)


def scikit_learns_rule(curve, tol, n, adaptive=False, lr=1.0):
    """scikit-learn's ``_update_no_improvement_count`` and the loop around it, written
    out: the epochs (1-based) at which an adaptive rate (from ``lr``) falls, and where the
    fit stops."""
    best, count, falls = np.inf, 0, []
    for epoch, loss in enumerate(curve, 1):
        count = count + 1 if loss > best - tol else 0
        best = min(best, loss)
        if count > n:
            if not adaptive or lr <= 1e-6:
                return falls, epoch
            lr /= 5
            falls.append(epoch)
            count = 0
    return falls, None


def creeping_curves():
    """Losses that fall by less than tol an epoch (Keras' rule, whose best moves by tol
    only, never stops on them), by more, and noisy, plateaus and rises among them."""
    rng = np.random.default_rng(8)
    for _ in range(40):
        steps = rng.choice(
            [0.3e-2, 0.6e-2, 2e-2, 0.0, -0.5e-2], size=80, p=[0.3, 0.3, 0.2, 0.1, 0.1]
        )
        yield 2.0 - np.cumsum(steps) + rng.normal(0, 1e-3, size=80) * rng.integers(0, 2)


@pytest.mark.parametrize("n", [1, 3, 10])
def test_the_stopping_rule_and_adaptive_rate_are_scikit_learns_epoch_for_epoch(n):
    """On the same loss curves, the fit stops (and an adaptive rate falls) at the epoch
    scikit-learn's would: after more than n_iter_no_change epochs that did not beat the
    best by tol, the best following every improvement."""
    tol = 1e-2
    for curve in creeping_curves():
        records = [{"epoch": e, "loss": float(v)} for e, v in enumerate(curve, 1)]
        for rate in ("constant", "adaptive"):
            estimator = MLPClassifier(solver="sgd", learning_rate=rate, tol=tol, n_iter_no_change=n)
            count = estimator._count(first=True)
            count.optimizer = SimpleNamespace(lr=1e3)
            count.start()
            falls, stopped = [], None
            for record in records:  # as fit runs it: the count after each epoch
                lr = count.optimizer.lr
                if count.stop(record, None):
                    stopped = record["epoch"]
                    break
                if count.optimizer.lr < lr:
                    assert count.optimizer.lr == lr / 5
                    falls.append(record["epoch"])  # the next epoch runs at it
            assert (falls, stopped) == scikit_learns_rule(curve, tol, n, rate == "adaptive", 1e3)


def test_adaptive_rate_falls_across_partial_fits_and_ends_a_fit_at_1e_6(iris):
    """As scikit-learn's: partial_fit's epochs count towards each fall, and fit ends once
    the rate would fall from 1e-6 or below, not at max_iter."""
    X, y = np.random.default_rng(0).standard_normal((150, 4)), iris[1]  # labels as noise
    settings = {"solver": "sgd", "learning_rate": "adaptive", "learning_rate_init": 0.5,
                "tol": 0.01, "n_iter_no_change": 2, "random_state": 0}  # fmt: skip
    model = MLPClassifier((8,), **settings)
    for _ in range(30):
        model.partial_fit(X, y, classes=np.unique(y))
    assert model.model_.optimizer.lr < 0.5 / 5**3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fitted = MLPClassifier((8,), max_iter=500, **settings).fit(X, y)
    assert fitted.n_iter_ < 500 and fitted.model_.optimizer.lr <= 1e-6


def test_warm_start_takes_new_optimizer_settings_and_early_stopping(iris):
    X, y = iris
    model = quiet_fit(MLPClassifier((8,), max_iter=3, random_state=0, warm_start=True), X, y)
    model.set_params(solver="sgd", learning_rate_init=0.5, early_stopping=True)
    quiet_fit(model, X, y)
    optimizer = model.model_.optimizer
    assert type(optimizer).__name__ == "SGD" and optimizer.lr == 0.5
    assert model.n_iter_ == 3 and model.model_.epochs_trained == 6
    assert len(model.validation_scores_) == 3


def test_a_refused_refit_leaves_classes_and_model_together(iris):
    X, y = iris
    model = quiet_fit(MLPClassifier((8,), max_iter=3, random_state=0), X, y)
    other = np.where(y == "setosa", "a", "b")
    with pytest.raises(ValueError):
        model.fit(X, other, sample_weight=np.ones(3))  # the wrong number of weights
    assert list(model.classes_) == ["setosa", "versicolor", "virginica"]
    assert set(model.predict(X)) <= set(y) and model.predict_proba(X[:1]).shape == (1, 3)


def test_the_penalty_follows_each_batch_as_trained(iris):
    """alpha / batch size: the batch of the rows trained on (the hold-out taken out first),
    and for partial_fit, each call's own."""
    X, y = iris
    held = quiet_fit(MLPClassifier((8,), alpha=0.9, max_iter=2, early_stopping=True,
                                   validation_fraction=0.4, random_state=0), X, y)  # fmt: skip
    assert held.model_.optimizer.weight_decay == pytest.approx(0.9 / 90)
    model = MLPClassifier((8,), alpha=0.5, random_state=0)
    model.partial_fit(X[::15], y[::15], classes=np.unique(y))
    assert model.model_.optimizer.weight_decay == pytest.approx(0.5 / 10)
    model.partial_fit(X, y)
    assert model.model_.optimizer.weight_decay == pytest.approx(0.5 / 150)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=np.unique(y))


def held_out_part(model, X, y):
    """The rows ``early_stopping`` held out: the split its fit drew, drawn again."""
    from sklearn.model_selection import train_test_split

    stratify = y if isinstance(model, MLPClassifier) else None
    parts = train_test_split(X, y, test_size=model.validation_fraction,
                             random_state=model._seed, stratify=stratify)  # fmt: skip
    return parts[1], parts[3]


def test_warm_fits_keep_the_best_weights_and_the_count_across_fits():
    """As scikit-learn's: a warm fit goes on with the count, the best score and its weights,
    so the model it ends with is the one ``best_validation_score_`` describes, and a fit that
    has already stopped stops after one more epoch unless that one beats the best."""
    rng = np.random.RandomState(0)
    X = rng.randn(400, 5)
    y = ((X[:, 0] * X[:, 1] + 0.5 * rng.randn(400)) > 0).astype(int)
    model = MLPClassifier((50,), max_iter=200, random_state=0, early_stopping=True,
                          warm_start=True, learning_rate_init=0.01)  # fmt: skip
    X_held, y_held = held_out_part(model.fit(X, y), X, y)
    first = model.best_validation_score_
    assert model.score(X_held, y_held) == pytest.approx(first)
    model.fit(X, y)
    assert model.best_validation_score_ >= first
    assert model.score(X_held, y_held) == pytest.approx(model.best_validation_score_)
    if model.best_validation_score_ < first + model.tol:
        assert model.n_iter_ == 1


def test_the_regressors_validation_score_is_r2_as_scikit_learns():
    """validation_scores_ are held-out R² (scale-free, as tol is), and the restored model
    scores best_validation_score_ on the rows held out."""
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model = MLPRegressor((16,), max_iter=300, random_state=0, early_stopping=True,
                         learning_rate_init=0.01).fit(X, y)  # fmt: skip
    X_held, y_held = held_out_part(model, X, y)
    assert model.best_validation_score_ == max(model.validation_scores_)
    assert 0 < model.best_validation_score_ < 1
    assert model.score(X_held, y_held) == pytest.approx(model.best_validation_score_, abs=1e-5)


def test_the_loss_curve_holds_the_l2_penalty(iris):
    """scikit-learn's loss adds 0.5 * alpha * |W|^2 (weights, not biases) per batch over the
    rows. With a rate too small to move the weights, the curves with and without alpha
    differ by that alone."""
    X, y = iris
    settings = {"learning_rate_init": 1e-9, "max_iter": 1, "batch_size": 50, "random_state": 0}
    fits = [quiet_fit(MLPClassifier((8,), alpha=alpha, **settings), X, y) for alpha in (0.0, 5.0)]
    squares = sum(float(np.sum(w.astype(np.float64) ** 2)) for w in fits[1].coefs_)
    penalty = 0.5 * 5.0 * 3 * squares / 150  # 3 batches of 50 rows
    assert fits[1].loss_curve_[0] - fits[0].loss_curve_[0] == pytest.approx(penalty, rel=1e-4)
    assert fits[1].best_loss_ == fits[1].loss_curve_[0] and fits[1].best_validation_score_ is None


def test_a_fitted_invscaling_estimator_pickles(iris):
    X, y = iris
    model = quiet_fit(MLPClassifier((5,), solver="sgd", learning_rate="invscaling",
                                    max_iter=5, random_state=0), X, y)  # fmt: skip
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    back.partial_fit(X[:3], y[:3])  # and goes on, at the rate of the samples seen
    assert back.model_.optimizer.lr == pytest.approx(0.001 / (5 * 150 + 1) ** 0.5)


def test_partial_fit_takes_scikit_learns_order_and_one_row(iris):
    """partial_fit(X, y, sample_weight, classes), as scikit-learn 1.9: weights by position
    are weights (they were taken for classes, and dropped); one row trains once the
    classes are known; other classes later are refused."""
    X, y = iris
    classes = np.unique(y)
    weighted, plain = MLPClassifier((8,), random_state=0), MLPClassifier((8,), random_state=0)
    weights = np.where(y == "setosa", 0.0, 1.0)
    for _ in range(5):
        weighted.partial_fit(X, y, weights, classes)
        plain.partial_fit(X, y, None, classes)
    assert not np.allclose(weighted.predict_proba(X), plain.predict_proba(X))
    plain.partial_fit(X[:1], y[:1])
    assert plain.n_iter_ == 1 and plain.t_ == 5 * 150 + 1
    with pytest.raises(ValueError, match="not the same as on the first call"):
        plain.partial_fit(X, y, classes=classes[:2])
    with pytest.raises(ValueError, match="not supported for partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=classes)


def test_a_refused_fit_changes_no_attribute(iris):
    """n_features_in_ (set by validate_data) included: the fitted model still predicts."""
    X, y = iris
    model = quiet_fit(MLPClassifier((8,), max_iter=3, random_state=0), X, y)
    before = {key: value for key, value in vars(model).items() if key.endswith("_")}
    with pytest.raises(ValueError, match="at least 2 classes"):
        model.fit(np.ones((20, 7)), np.zeros(20))
    with pytest.raises(ValueError, match="none negative"):
        model.fit(np.ones((150, 7)), y, sample_weight=-np.ones(150))
    assert {key: value for key, value in vars(model).items() if key.endswith("_")} == before
    assert model.n_features_in_ == 4 and model.predict(X[:2]).shape == (2,)
    warm = quiet_fit(MLPClassifier((8,), max_iter=3, random_state=0, warm_start=True), X, y)
    with pytest.raises(ValueError, match="warm_start can only be used"):
        warm.fit(X[y != "setosa"], y[y != "setosa"])


def test_a_fit_that_diverges_is_scikit_learns_value_error():
    """As scikit-learn's, a ValueError. A fresh fit leaves the last one whole (the model
    it replaced was half swapped in: new NaN weights under the old curve); a warm one,
    whose model diverged itself, leaves the estimator unfitted, not predicting NaN."""
    from sklearn.datasets import make_regression
    from sklearn.exceptions import NotFittedError

    X, y = make_regression(200, 5, random_state=0)
    model = quiet_fit(MLPRegressor((8,), solver="sgd", max_iter=5, random_state=0), X, y)
    before = {key: value for key, value in vars(model).items() if key.endswith("_")}
    predicted = model.predict(X[:3])
    with pytest.raises(ValueError, match="training diverged"), np.errstate(all="ignore"):
        model.set_params(learning_rate_init=1.0).fit(X, y * 1e3)
    assert {key: value for key, value in vars(model).items() if key.endswith("_")} == before
    np.testing.assert_array_equal(model.predict(X[:3]), predicted)
    with pytest.raises(ValueError, match="training diverged"), np.errstate(all="ignore"):
        model.set_params(warm_start=True).fit(X, y * 1e3)
    with pytest.raises(NotFittedError):
        model.predict(X[:3])
    assert quiet_fit(model.set_params(learning_rate_init=1e-3), X, y).n_iter_ == 5  # afresh


@pytest.mark.parametrize("classes", [2, 3])
def test_log_probabilities_of_sure_answers_are_finite(classes):
    """From the logits: a probability that rounds to 0 in float32 (a logit of -20 or less)
    has its log, where the log of the probability was -inf; elsewhere it is that log."""
    X, y = load_iris(return_X_y=True)
    X, y = X * 30, y % classes  # far apart: logits of hundreds
    model = quiet_fit(MLPClassifier((8,), max_iter=50, random_state=0), X, y)
    logs, probabilities = model.predict_log_proba(X), model.predict_proba(X)
    assert np.isfinite(logs).all() and (probabilities == 0).any()
    np.testing.assert_allclose(np.exp(logs), probabilities, rtol=1e-5, atol=1e-7)


def test_early_stopping_refuses_a_validation_set_of_one_row():
    """Its score would be NaN, which never stops the fit (it ran every epoch, scoring NaN)."""
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="The validation set is too small"):
        MLPRegressor((4,), early_stopping=True, random_state=0).fit(X, X.sum(axis=1))


def test_scikit_learns_other_attributes(iris):
    X, y = iris
    model = quiet_fit(MLPClassifier((8, 6), max_iter=4, random_state=0), X, y)
    assert [w.shape for w in model.coefs_] == [(4, 8), (8, 6), (6, 3)]
    assert [b.shape for b in model.intercepts_] == [(8,), (6,), (3,)]
    state = model.model_.state_dict()
    np.testing.assert_array_equal(model.coefs_[1], state["1.weight"])
    with pytest.raises(ValueError, match="read-only"):  # a copy: a write would change nothing
        model.coefs_[0][0, 0] = 1.0
    assert model.t_ == 4 * 150 and model.best_validation_score_ is None
    stopped = quiet_fit(MLPClassifier((8,), max_iter=4, random_state=0, early_stopping=True), X, y)
    assert stopped.best_loss_ is None and stopped.best_validation_score_ is not None
    assert not hasattr(MLPClassifier(), "coefs_")


def from_one_start(epochs, **settings):
    """Our estimator and scikit-learn's, float64, from the same weights (scikit-learn's
    overwritten with ours, its counts reset), trained alike: their weights and curves."""
    from sklearn.neural_network import MLPClassifier as Theirs
    from sklearn.utils import check_random_state

    from mlp import MLP

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 4)), rng.integers(0, 3, size=40)
    settings = {"hidden_layer_sizes": (6,), "shuffle": False, "random_state": 0, "batch_size": 8,
                "alpha": 0.0, "tol": 0.0, "n_iter_no_change": 10**6, **settings}  # fmt: skip
    ours = quiet_fit(MLPClassifier(max_iter=epochs, dtype="float64", **settings), X, y)
    seed = int(check_random_state(0).randint(0, 2**31 - 1))  # as ours draws its model's
    start = MLP([4, 6, 3], dtype="float64", seed=seed).state_dict()
    theirs = quiet_fit(Theirs(max_iter=1, **settings), X, y)
    theirs.coefs_ = [start["0.weight"].copy(), start["1.weight"].copy()]
    theirs.intercepts_ = [start["0.bias"].copy(), start["1.bias"].copy()]
    theirs.t_, theirs.loss_curve_, theirs.best_loss_, theirs._no_improvement_count = (
        0,
        [],
        np.inf,
        0,
    )
    quiet_fit(theirs.set_params(warm_start=True, max_iter=epochs), X, y)
    flat = [np.concatenate([w.ravel() for w in m.coefs_ + m.intercepts_]) for m in (ours, theirs)]
    return ours, flat, (ours.loss_curve_, theirs.loss_curve_)


@pytest.mark.parametrize(
    "settings",
    [
        {"solver": "sgd", "learning_rate_init": 0.5},
        {"solver": "sgd", "learning_rate_init": 0.5, "learning_rate": "invscaling"},
        {"solver": "sgd", "learning_rate_init": 0.5, "learning_rate": "invscaling",
         "nesterovs_momentum": False, "momentum": 0.5},
        {"solver": "sgd", "learning_rate_init": 0.5, "learning_rate": "adaptive", "tol": 0.1,
         "n_iter_no_change": 1},
    ],
)  # fmt: skip
def test_sgd_trains_as_scikit_learns_from_the_same_start(settings):
    """Weights to rounding, momentum under a changing rate too (scikit-learn's velocity
    holds the rate; ours is rescaled where it changes), and the loss curve alike."""
    estimator, (ours, theirs), curves = from_one_start(8, **settings)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(*curves, rtol=1e-10)
    if settings.get("learning_rate") == "adaptive":
        assert estimator.model_.optimizer.lr < 0.5 / 5**2  # it fell, more than once


def test_adam_differs_from_scikit_learns_by_where_epsilon_goes():
    """Ours adds epsilon to the bias-corrected root (PyTorch's form), scikit-learn's to the
    raw one: the steps differ by epsilon's share, about 1e-6 at its default (docs/library.md)."""
    _, (ours, theirs), _ = from_one_start(4, solver="adam", learning_rate_init=0.01)
    assert 1e-9 < np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-5


def test_an_older_mlps_pickles_load_and_go_on():
    """Estimators and a stopping rule pickled by mlp before the count and ``t_`` were kept
    (tests/mlp/pickles, and the script that wrote them): they predict as they did, fit on
    warm, go on with partial_fit and pickle again."""
    X, y = load_iris(return_X_y=True)
    with open(Path(__file__).parent / "pickles" / "estimators-1407f02.pickle", "rb") as file:
        kept = pickle.load(file)
    for name, model in kept["estimators"].items():
        if name == "regressor":  # values: the last bit is the CPU's BLAS kernel's
            np.testing.assert_allclose(model.predict(X), kept["predicted"][name], rtol=1e-6)
        else:
            np.testing.assert_array_equal(model.predict(X), kept["predicted"][name])
        target = X[:, 0] if name == "regressor" else y
        before = model.model_.epochs_trained
        quiet_fit(model.set_params(warm_start=True, max_iter=2), X, target)
        if not model.early_stopping:
            model.partial_fit(X, target)
        assert model.model_.epochs_trained > before and model.t_ > 0
        pickle.loads(pickle.dumps(model)).predict(X)
    rule = pickle.loads(pickle.dumps(kept["rule"]))
    assert rule.best_epoch > 0 and rule._best_params is not None


def test_verbose_prints_the_loss_the_curve_keeps(iris, capsys):
    """verbose's line per epoch shows the loss with its L2 penalty, as ``loss_curve_``
    holds it (it showed the loss before the penalty was added)."""
    X, y = iris
    model = quiet_fit(MLPClassifier((8,), alpha=1.0, max_iter=3, random_state=0, verbose=True),
                      X, y)  # fmt: skip
    shown = [float(line.split("loss ")[1].split()[0]) for line in
             capsys.readouterr().out.splitlines() if line.startswith("epoch")]  # fmt: skip
    assert shown == pytest.approx(model.loss_curve_, abs=5e-5)
