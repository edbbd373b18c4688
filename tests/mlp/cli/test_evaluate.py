"""``mlp-eval``: accuracy and the confusion matrix of a saved run, and its bad input as one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from mlp import MLP
from mlp.cli import evaluate, train
from mlp.data import CLASS_NAMES, SPLITS
from mlp.data.synthetic import write_dataset
from tests.helpers import ROOT, one_line, run

TRAIN_LABELS = SPLITS["train"][1]
TEST_IMAGES, TEST_LABELS = SPLITS["test"]


# ----------------------------------------------------------------------------- mlp-eval
def test_eval_prints_accuracy_and_confusion_matrix(tmp_path, base, dataset, capsys):
    saved = tmp_path / "run.npz"
    code, out, _ = run(train.main, [*base, "--epochs", "3", "--save", saved], capsys)
    trained_accuracy = out.splitlines()[-1]
    code, out, err = run(evaluate.main, ["--checkpoint", saved, "--data-dir", dataset], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert trained_accuracy in lines  # the same number mlp-train ended with
    assert "fashion-mnist test set" in out  # the dataset recorded in the checkpoint
    header = lines.index("confusion matrix (rows: true class, columns: predicted class):")
    table = lines[header + 2 : header + 12]
    assert [row[:13].rstrip() for row in table] == [  # labelled by the checkpoint's names
        f"{i} {name}" for i, name in enumerate(CLASS_NAMES["fashion-mnist"])
    ]
    matrix = np.array([[int(v) for v in row.split()[-10:]] for row in table])
    assert matrix.shape == (10, 10) and matrix.sum() == 200
    accuracy = float(trained_accuracy.split()[-1])
    assert abs(np.trace(matrix) / 200 - accuracy) < 1e-9

    scores = lines[lines.index("per class:") + 1 :]
    assert scores[0].split() == ["class", "precision", "recall", "f1", "support"]
    assert scores[1].startswith("0 T-shirt/top") and scores[-1].startswith("macro average")
    values = np.array([[float(v) for v in row.split()[-4:]] for row in scores[1:11]])
    expected = evaluate.class_scores(matrix)
    for column, key in enumerate(("precision", "recall", "f1", "support")):
        np.testing.assert_allclose(values[:, column], expected[key], atol=5e-5)
    assert values[:, 3].tolist() == matrix.sum(axis=1).tolist()


def test_eval_reads_the_folder_its_run_trained_on(tmp_path, base, dataset, capsys, monkeypatch):
    """Without --data-dir, the checkpoint's own folder, not the default search's."""
    saved = tmp_path / "run.npz"
    assert run(train.main, [*base, "--epochs", "1", "--save", saved], capsys)[0] == 0
    monkeypatch.setenv("MLP_DATA_DIR", str(write_dataset(tmp_path / "other", 50, 30)))
    code, out, _ = run(evaluate.main, ["--checkpoint", saved, "--no-download"], capsys)
    assert code == 0 and f"test set from {dataset.resolve()}: 200 images" in out
    code, out, _ = run(evaluate.main, ["--checkpoint", saved, "--dataset", "mnist"], capsys)
    assert code == 0 and f"test set from {tmp_path / 'other'}: 30 images" in out


def test_eval_says_where_its_data_is_not_the_runs(tmp_path, capsys, monkeypatch):
    """The run's folder moved: the default search's dataset was scored without a word."""
    mine = write_dataset(tmp_path / "mine", 300, 100)
    saved = tmp_path / "run.npz"
    argv = ["--data-dir", mine, "--hidden", "8", "--epochs", "1", "--save", saved]
    assert run(train.main, argv, capsys)[0] == 0
    monkeypatch.setenv("MLP_DATA_DIR", str(write_dataset(tmp_path / "other", 50, 30)))
    code, _, err = run(evaluate.main, ["--checkpoint", saved, "--no-download"], capsys)
    assert code == 0 and err == ""
    mine.rename(tmp_path / "moved")
    code, out, err = run(evaluate.main, ["--checkpoint", saved, "--no-download"], capsys)
    assert code == 0 and f"test set from {tmp_path / 'other'}: 30 images" in out
    assert err == (
        f"mlp-eval: note: {tmp_path / 'other'} holds other data than the checkpoint was "
        f"trained on (in {mine.resolve()}): give --data-dir to evaluate on that\n"
    )
    write_dataset(mine, 300, 100, seed=9)  # the run's folder again, with other images
    code, out, err = run(evaluate.main, ["--checkpoint", saved, "--no-download"], capsys)
    assert code == 0 and f"test set from {mine.resolve()}" in out
    note = f"{mine.resolve()} no longer holds the data the checkpoint was trained on"
    assert err == f"mlp-eval: note: {note}\n"


def test_class_scores_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    y_pred[y_pred == 3] = 2  # class 3 never predicted: its precision is 0, not NaN
    scores = evaluate.class_scores(evaluate.confusion_matrix(y_true, y_pred, 4))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=range(4), zero_division=0
    )
    np.testing.assert_allclose(scores["precision"], precision)
    np.testing.assert_allclose(scores["recall"], recall)
    np.testing.assert_allclose(scores["f1"], f1)
    assert scores["support"].tolist() == support.tolist()


def test_tables_without_names_number_the_classes():
    matrix = evaluate.confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), 2)
    assert [row.split()[0] for row in evaluate.format_confusion(matrix).splitlines()[1:]] == [
        "0",
        "1",
    ]
    named = evaluate.format_scores(evaluate.class_scores(matrix), ["cat", "dog"]).splitlines()
    assert [row.split()[:2] for row in named[1:3]] == [["0", "cat"], ["1", "dog"]]
    assert named[2].split()[2:] == ["1.0000", "0.5000", "0.6667", "2"]


def test_confusion_matrix_counts():
    m = evaluate.confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert evaluate.format_confusion(m).splitlines()[0].split() == ["true\\pred", "0", "1", "2"]


def test_eval_errors(data, checkpoint, tmp_path, capsys):
    code, _, err = run(evaluate.main, [], capsys)
    assert code == 2
    assert one_line(err, "mlp-eval").startswith(
        "the following arguments are required: --checkpoint"
    )
    code, _, err = run(evaluate.main, ["--checkpoint", tmp_path / "nope.npz"], capsys)
    assert code == 1
    assert one_line(err, "mlp-eval") == f"{tmp_path / 'nope.npz'}: no such checkpoint file"

    small = write_dataset(tmp_path / "small", n_train=50, n_test=20, side=10)
    code, _, err = run(evaluate.main, ["--checkpoint", checkpoint, "--data-dir", small], capsys)
    assert code == 1
    assert one_line(err, "mlp-eval") == (
        "expected inputs of shape (n, 784), got (20, 100): the model's first layer takes 784 "
        "features"
    )
    twelve = write_dataset(tmp_path / "twelve", n_train=50, n_test=60, classes=12)
    code, _, err = run(evaluate.main, ["--checkpoint", checkpoint, "--data-dir", twelve], capsys)
    assert code == 1
    assert one_line(err, "mlp-eval") == (
        f"{twelve / TRAIN_LABELS}.gz: labels go up to 11, but fashion-mnist has 10 classes "
        "(labels 0 to 9)"
    )
    five = MLP([784, 16, 5], seed=1).save(tmp_path / "five.npz")  # fewer outputs than classes
    code, _, err = run(evaluate.main, ["--checkpoint", five, "--data-dir", data], capsys)
    assert code == 1
    assert one_line(err, "mlp-eval") == (
        f"{data / TEST_LABELS}.gz: labels go up to 9, but the model has 5 outputs (labels 0 to 4)"
    )


@pytest.mark.parametrize("outputs", [1, 10])
def test_eval_of_a_regression_is_one_line_naming_what_measures_it(data, tmp_path, capsys, outputs):
    """A squared-error model's targets are not the test set's labels: it was a KeyError
    traceback, or a line blaming the labels or the targets' shape."""
    regression = MLP([784, 8, outputs], loss="squared_error", seed=1)
    saved = regression.save(tmp_path / "regression.npz")
    code, out, err = run(evaluate.main, ["--checkpoint", saved, "--data-dir", data], capsys)
    assert code == 2 and out == ""
    assert one_line(err, "mlp-eval") == (
        f"{saved}: a regression model (loss squared_error): mlp-eval scores classifiers on a "
        "dataset's labels; measure it on its own targets with the library's "
        "model.evaluate(X, y)"
    )


def test_eval_on_an_unusable_device(data, checkpoint, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    argv = ["--checkpoint", checkpoint, "--data-dir", data, "--device", "cuda"]
    code, out, err = run(evaluate.main, argv, capsys)
    assert code == 1 and out == ""
    assert "pip install 'mlp-backprop[cuda12]'" in one_line(err, "mlp-eval")


# ----------------------------------------------------------------------------- real processes
def test_eval_of_overflowing_weights_prints_no_numpy_warnings(data, checkpoint, tmp_path):
    """Finite but huge weights overflow: the loss says so (nan or inf), with no warnings."""
    model = MLP.load(checkpoint)
    model.load_state_dict({k: v * np.float32(1e30) for k, v in model.state_dict().items()})
    huge = model.save(tmp_path / "huge.npz")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlp.cli.evaluate",
            "--checkpoint",
            str(huge),
            "--data-dir",
            str(data),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0 and result.stderr == ""
    assert re.search(r"^test loss: (nan|inf)$", result.stdout, re.MULTILINE), result.stdout


def test_a_confusion_matrix_is_shown_only_where_it_is_readable(data, tmp_path, capsys):
    """20,000 outputs wrote a 2 GB matrix to stdout (and 65,536 ran out of memory)."""
    many = MLP([784, 8, evaluate.MAX_SHOWN_CLASSES + 1], seed=1).save(tmp_path / "many.npz")
    code, out, _ = run(evaluate.main, ["--checkpoint", many, "--data-dir", data], capsys)
    assert code == 0
    assert out.splitlines()[-1] == (
        f"confusion matrix: not shown for {evaluate.MAX_SHOWN_CLASSES + 1} outputs "
        f"(at most {evaluate.MAX_SHOWN_CLASSES})"
    )
    assert len(out.splitlines()) == 6
    shown = MLP([784, 8, evaluate.MAX_SHOWN_CLASSES], seed=1).save(tmp_path / "shown.npz")
    code, out, _ = run(evaluate.main, ["--checkpoint", shown, "--data-dir", data], capsys)
    assert code == 0 and "confusion matrix (rows: true class" in out
    # the matrix (a header and a row per class), then the per-class table (its title, a
    # header, a row per class and the macro average)
    assert len(out.splitlines()) == 7 + evaluate.MAX_SHOWN_CLASSES + 3 + evaluate.MAX_SHOWN_CLASSES


def test_eval_of_a_library_checkpoint_shows_the_epochs_fit_trained(data, tmp_path, capsys):
    """model.save after fit records its epochs (it said "(epoch 0)" after any training)."""
    from mlp.data import load_dataset

    train_set = load_dataset("fashion-mnist", data)
    model = MLP([784, 16, 10], seed=2)
    model.fit(train_set.X_train, train_set.y_train, epochs=2)
    saved = model.save(tmp_path / "lib.npz")
    code, out, _ = run(evaluate.main, ["--checkpoint", saved, "--data-dir", data], capsys)
    assert code == 0
    assert f"from {saved} (epoch 2)" in out.splitlines()[0]
    lines = out.splitlines()
    first = lines[lines.index("per class:") + 2].split()
    assert first[0] == "0" and float(first[1]) >= 0  # no names, no dataset: classes by number


def test_eval_on_another_dataset_names_its_classes(data, checkpoint, capsys):
    """A Fashion-MNIST checkpoint evaluated on MNIST: the rows are MNIST's digits."""
    argv = ["--checkpoint", checkpoint, "--data-dir", data, "--dataset", "mnist"]
    code, out, _ = run(evaluate.main, argv, capsys)
    assert code == 0
    lines = out.splitlines()
    first = lines[lines.index("per class:") + 1 :][1].split()
    assert first[:2] == ["0", "0"] and "T-shirt/top" not in out


def test_eval_of_a_binary_model(tmp_path, capsys):
    """One sigmoid output tells two classes apart: labels 0 and 1, a 2×2 matrix."""
    two = write_dataset(tmp_path / "two", n_train=50, n_test=40, classes=2)
    binary = MLP([784, 8, 1], seed=1).save(tmp_path / "binary.npz")
    code, out, err = run(evaluate.main, ["--checkpoint", binary, "--data-dir", two], capsys)
    assert code == 0, err
    lines = out.splitlines()
    header = lines.index("confusion matrix (rows: true class, columns: predicted class):")
    matrix = [[int(v) for v in row.split()[1:]] for row in lines[header + 2 : header + 4]]
    assert np.array(matrix).sum() == 40 and lines[header + 4] == "per class:"
