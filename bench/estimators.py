"""``python -m bench.estimators``: scikit-learn's ``MLPClassifier`` and ``MLPRegressor``
against ours, side by side on the same data, machine, hidden sizes, solver and epochs.

Classification on real Fashion-MNIST (scaled to [0, 1]); regression on Friedman #1
(``sklearn.datasets.make_friedman1``: ten informative features of twenty, noise 1.0), its
targets standardised. Both run a fixed number of epochs (``tol=0``, ``n_iter_no_change`` =
``max_iter``: neither stops early), each fit timed once after a warm-up fit on a slice.
Prints a Markdown table and writes it and the JSON into ``--out``, else into a new folder
``estimators-<date>-<devices>`` of the results folder outside the source tree (``$MLP_BENCH_DIR``,
else ``~/.cache/mlp/bench``), as ``python -m bench`` does.
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import numpy as np

from mlp.cli.common import OneLineParser, named_path
from mlp.errors import CannotWrite

from . import report
from .extras import installed, missing_reason
from .machine import machine_info


def _estimators(kind: str, devices: list[str], **parameters: Any) -> dict[str, Any]:
    from sklearn import neural_network

    from mlp import sklearn as ours

    name = "MLPClassifier" if kind == "classification" else "MLPRegressor"
    made = {"scikit-learn": getattr(neural_network, name)(**parameters)}
    for device in devices:
        made[f"mlp ({device})"] = getattr(ours, name)(**parameters, device=device)
    return made


def _data(kind: str, rows: int | None) -> tuple:
    if kind == "classification":
        from mlp.data import load_dataset

        data = load_dataset("fashion-mnist")
        X, y = data.X_train.reshape(len(data.X_train), -1) / 255.0, data.y_train
        X_test, y_test = data.X_test.reshape(len(data.X_test), -1) / 255.0, data.y_test
        if rows is not None:
            X, y = X[:rows], y[:rows]
        return X.astype(np.float32), y, X_test.astype(np.float32), y_test
    from sklearn.datasets import make_friedman1

    n = rows or 60_000
    X, y = make_friedman1(n_samples=n + n // 6, n_features=20, noise=1.0, random_state=0)
    y = (y - y.mean()) / y.std()
    return X[:n].astype(np.float32), y[:n], X[n:].astype(np.float32), y[n:]


def compare(kind: str, epochs: int, hidden: tuple, devices: list[str], rows: int | None) -> list:
    X, y, X_test, y_test = _data(kind, rows)
    parameters = dict(hidden_layer_sizes=hidden, solver="adam", max_iter=epochs, tol=0.0,
                      n_iter_no_change=epochs, batch_size=200, random_state=0)  # fmt: skip
    rows_out = []
    for name, estimator in _estimators(kind, devices, **parameters).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the ConvergenceWarning of a fixed epoch count
            estimator.set_params(max_iter=1).fit(X[:2000], y[:2000])  # warm-up: JIT, BLAS
            estimator.set_params(max_iter=epochs)
            start = time.perf_counter()
            estimator.fit(X, y)
            seconds = time.perf_counter() - start
        rows_out.append({
            "estimator": name, "task": kind, "epochs": estimator.n_iter_,
            "fit_seconds": seconds, "score": float(estimator.score(X_test, y_test)),
            "metric": "accuracy" if kind == "classification" else "R²",
        })  # fmt: skip
    return rows_out


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| task | estimator | epochs | fit (s) | s/epoch | test score |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['estimator']} | {r['epochs']} | {r['fit_seconds']:.2f} | "
            f"{r['fit_seconds'] / r['epochs']:.3f} | {r['metric']} {r['score']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; a missing scikit-learn or an unusable results folder is one line,
    before any fit."""
    p = OneLineParser(prog="python -m bench.estimators", description=__doc__)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--hidden", default="256", help="hidden sizes, e.g. 256 or 512,256")
    p.add_argument("--devices", default="cpu", help="ours on these devices, e.g. cpu,cuda")
    p.add_argument("--rows", type=int, default=None, help="training rows (default: all)")
    p.add_argument("--tasks", default="classification,regression")
    p.add_argument(
        "--out",
        type=named_path,
        default=None,
        help="folder for estimators.{md,json} (default: a new one in the results folder)",
    )
    args = p.parse_args(argv)
    if not installed("sklearn"):
        p.error(missing_reason("sklearn"))
    try:
        parent = report.default_results_dir() if args.out is None else args.out
    except CannotWrite as exc:
        p.error(str(exc))
    why = report.out_folder_problem(parent)
    if why:
        p.error(f"{'results folder' if args.out is None else '--out'} {str(parent)!r}: {why}")
    hidden = tuple(int(w) for w in args.hidden.split(","))
    devices = args.devices.split(",")
    rows = []
    for kind in args.tasks.split(","):
        rows += compare(kind, args.epochs, hidden, devices, args.rows)
    text = table(rows)
    print(text)
    machine = machine_info()
    folder = args.out
    if folder is None:
        name = "-".join(["estimators", machine["date"][:10], *devices]).replace(":", "")
        folder = report.claim_folder(parent, name)
    report.write_text(text + "\n", folder / "estimators.md")
    results = {"machine": machine, "hidden": hidden, "rows": rows}
    report.write_text(json.dumps(results, indent=1, default=str) + "\n", folder / "estimators.json")
    print(f"\nresults: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
