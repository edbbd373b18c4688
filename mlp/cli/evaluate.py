"""``mlp-eval``: test accuracy, the confusion matrix and each class's precision, recall and
F1 of a saved model, on any device; classes by name where the checkpoint knows them.

    mlp-eval --checkpoint run.npz [--dataset fashion-mnist] [--data-dir PATH] [--device cpu]

The dataset defaults to the one the checkpoint was trained on; a regression checkpoint is
refused (its targets are not a dataset's labels). Exit status and error lines follow
``mlp-train``: 2 for a bad command line, 1 for a runtime failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import load_checkpoint
from ..checkpoint_reader import class_count
from ..data import CLASS_NAMES, DATASETS
from ..model import MLP
from .common import (
    DATA_DIR_HELP,
    OneLineParser,
    UsageError,
    add_checkpoint_argument,
    device_spec,
    named_path,
    read_dataset,
    report_errors,
    stored_data_dir,
)

PROG = "mlp-eval"
#: The most classes whose confusion matrix is shown: beyond, no terminal line holds a row.
MAX_SHOWN_CLASSES = 30


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=PROG,
        description="Evaluate a saved MLP on a test set.",
    )
    add_checkpoint_argument(p)
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default=None,
        help="default: the dataset the checkpoint was trained on",
    )
    p.add_argument("--data-dir", type=named_path, default=None, help=DATA_DIR_HELP)
    p.add_argument("--device", type=device_spec, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--no-download", action="store_true", help="never download a missing dataset")
    return p


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """``m[i, j]`` = how many samples of class ``i`` were predicted as ``j``."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return matrix


def labels(classes: int, names: Sequence[str] | None) -> list[str]:
    """Each class as a row is labelled: its number, and its name where known."""
    return [str(i) if names is None else f"{i} {names[i]}" for i in range(classes)]


def format_confusion(matrix: np.ndarray, names: Sequence[str] | None = None) -> str:
    """A plain-text table: rows are true classes (by number and name), columns predicted
    ones (by number)."""
    rows = labels(len(matrix), names)
    first = max(9, *map(len, rows))
    width = max(5, len(str(matrix.max())) + 1)
    head = "true\\pred".ljust(first) + "".join(str(j).rjust(width) for j in range(len(matrix)))
    lines = [
        label.ljust(first) + "".join(str(v).rjust(width) for v in row)
        for label, row in zip(rows, matrix, strict=True)
    ]
    return "\n".join([head, *lines])


def class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Each class's precision, recall and F1 from a confusion matrix (0 where undefined: no
    prediction of the class, or no sample of it), and its support."""
    hits = np.diag(matrix).astype(np.float64)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        recall = np.where(support > 0, hits / support, 0.0)
        both = precision + recall
        f1 = np.where(both > 0, 2 * precision * recall / both, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def format_scores(scores: dict[str, np.ndarray], names: Sequence[str] | None = None) -> str:
    """Per-class precision, recall and F1 with their support, then the macro average."""
    rows = labels(len(scores["support"]), names)
    first = max(13, *map(len, rows))
    head = "class".ljust(first) + "".join(
        title.rjust(11) for title in ("precision", "recall", "f1", "support")
    )

    def line(label: str, values: Sequence[float], support: int) -> str:
        return label.ljust(first) + "".join(f"{v:11.4f}" for v in values) + f"{support:11d}"

    keys = ("precision", "recall", "f1")
    lines = [
        line(label, [scores[k][i] for k in keys], int(scores["support"][i]))
        for i, label in enumerate(rows)
    ]
    macro = [float(np.mean(scores[k])) for k in keys]
    lines.append(line("macro average", macro, int(scores["support"].sum())))
    return "\n".join([head, *lines])


def run(args: argparse.Namespace, out: Any = None, err: Any = None) -> dict[str, Any]:
    """Load the checkpoint on the device, evaluate it, print accuracy and confusion matrix."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    checkpoint = load_checkpoint(args.checkpoint)
    settings = checkpoint.model_settings
    if settings["output_activation"] is not None:
        raise UsageError(
            f"{args.checkpoint}: an inference-only model (output activation "
            f"{settings['output_activation']}) has no loss to evaluate"
        )
    # the test sets' labels are classes, and the report a classifier's: a regression's
    # targets are its own data, which only the library takes
    if not class_count(checkpoint.meta):
        raise UsageError(
            f"{args.checkpoint}: a regression model (loss {settings['loss']}): mlp-eval "
            "scores classifiers on a dataset's labels; measure it on its own targets with "
            "the library's model.evaluate(X, y)"
        )
    model = MLP.from_checkpoint(checkpoint, args.device)
    dataset = args.dataset or checkpoint.run.get("dataset") or "fashion-mnist"
    own = args.dataset in (None, checkpoint.run.get("dataset")) and args.data_dir is None
    if own:
        args.data_dir = stored_data_dir(checkpoint)
    classes = model.loss_function.classes  # one sigmoid output: 2 classes
    # the test labels must fit the model, and the images its dtype
    data = read_dataset(dataset, args, err, classes=classes, dtype=model.dtype)
    trained_on = checkpoint.run.get("data_digest")
    if own and trained_on is not None and data.digest() != trained_on:
        where = checkpoint.run.get("data_dir")
        differs = (
            f"{data.source} no longer holds the data the checkpoint was trained on"
            if where is not None and Path(where) == data.source.resolve()
            else f"{data.source} holds other data than the checkpoint was trained on (in "
            f"{where}): give --data-dir to evaluate on that"
        )
        print(f"{PROG}: note: {differs}", file=err, flush=True)
    metrics = model.evaluate(data.X_test, data.y_test)  # checks the feature count
    weights = f"epoch {checkpoint.epoch}"
    if checkpoint.meta.get("ended_on_best"):  # the weights evaluated are the best epoch's
        weights += f", early stopping's best: epoch {checkpoint.best[0]}"
    print(f"{model} from {args.checkpoint} ({weights})", file=out)
    print(f"device: {model.backend.describe()}", file=out)
    print(f"{dataset} test set from {data.source}: {len(data.y_test)} images", file=out)
    print(f"test loss: {metrics['loss']:.4f}", file=out)
    print(f"test accuracy: {metrics['accuracy']:.4f}", file=out, flush=True)
    if classes > MAX_SHOWN_CLASSES:  # a matrix no screen shows (and, at 65,536, 32 GiB)
        print(
            f"confusion matrix: not shown for {classes} outputs (at most {MAX_SHOWN_CLASSES})",
            file=out,
            flush=True,
        )
        return {**metrics, "confusion": None}
    matrix = confusion_matrix(data.y_test, model.predict(data.X_test), classes)
    names = checkpoint.class_names  # another dataset than the checkpoint's: its own names
    if args.dataset is not None and args.dataset != checkpoint.run.get("dataset"):
        names = CLASS_NAMES[dataset] if len(CLASS_NAMES[dataset]) == classes else None
    print("confusion matrix (rows: true class, columns: predicted class):", file=out)
    print(format_confusion(matrix, names), file=out)
    scores = class_scores(matrix)
    print("per class:", file=out)
    print(format_scores(scores, names), file=out, flush=True)
    return {**metrics, "confusion": matrix, **scores}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return report_errors(PROG, lambda: run(args), out_of_memory="try another --device")


if __name__ == "__main__":
    sys.exit(main())
