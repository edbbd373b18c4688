"""Writes estimators-1407f02.pickle with mlp as of commit 1407f02 (before the stopping count
and ``t_`` were kept on the estimator): ``git worktree add /tmp/old 1407f02 &&
PYTHONPATH=/tmp/old python tests/mlp/pickles/estimators-1407f02.py``. The test that loads it is
tests/mlp/test_sklearn.py::test_an_older_mlps_pickles_load_and_go_on."""

import pickle
import warnings
from pathlib import Path

from sklearn.datasets import load_iris

from mlp import MLP
from mlp.sklearn import MLPClassifier, MLPRegressor
from mlp.stopping import EarlyStopping

warnings.simplefilter("ignore")
X, y = load_iris(return_X_y=True)
kept = {
    "adaptive": MLPClassifier((5,), solver="sgd", learning_rate="adaptive", max_iter=5,
                              random_state=0).fit(X, y),
    "early_stopping": MLPClassifier((5,), early_stopping=True, max_iter=5,
                                    random_state=0).fit(X, y),
    "regressor": MLPRegressor((5,), max_iter=5, random_state=0).fit(X, X[:, 0]),
}  # fmt: skip
rule = EarlyStopping(patience=2, restore_best_weights=True)
MLP([4, 5, 3], seed=0).fit(X, y, epochs=3, early_stopping=rule, validation_split=0.2)
predicted = {name: model.predict(X) for name, model in kept.items()}
with open(Path(__file__).with_suffix(".pickle"), "wb") as file:
    pickle.dump({"estimators": kept, "predicted": predicted, "rule": rule}, file)
