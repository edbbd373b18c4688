"""``mlp-train``: train an MLP on an MNIST-family dataset from the command line.

Usage errors exit with status 2 and runtime failures with status 1, each with one line on
stderr that says what to do; a traceback is only for bugs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from backends import BackendUnavailable, parse_device

from .data import DATASETS, DatasetNotFound, load_dataset
from .model import MLP, TrainingDiverged
from .optim import OPTIMIZERS, make_optimizer

PROG = "mlp-train"


class UsageError(ValueError):
    """A bad command-line value (exit status 2)."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def hidden_sizes(text: str) -> list[int]:
    """``"512,256"`` → ``[512, 256]``; ``""`` or ``"none"`` → no hidden layer."""
    if text.strip().lower() in ("", "none"):
        return []
    parts = text.split(",")
    if not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 512,256, got {text!r}"
        )
    return [int(p) for p in parts]


def device_spec(text: str) -> str:
    try:
        kind, index = parse_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return "cpu" if kind == "cpu" else f"cuda:{index}"


def dropout_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train a multilayer perceptron on MNIST, Fashion-MNIST or KMNIST.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--device", type=device_spec, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    p.add_argument("--data-dir", default=None, help="folder with the IDX files")
    p.add_argument("--hidden", type=hidden_sizes, default=[512, 256],
                   help="hidden layer widths, comma-separated")
    p.add_argument("--activation", choices=("relu", "sigmoid", "tanh"), default="relu")
    p.add_argument("--dropout", type=dropout_rate, default=0.0, help="dropout after hidden layers")
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate (default: 1e-3 for adam/adamw, 0.05 for sgd/momentum)")
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="adam")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="L2 (sgd, adam) or decoupled (adamw) weight decay")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    return p


def default_lr(optimizer: str) -> float:
    return 1e-3 if optimizer in ("adam", "adamw") else 0.05


def run(args: argparse.Namespace, out: Any = sys.stdout) -> dict[str, float]:
    """Train as the arguments say, printing per-epoch metrics; returns the final test metrics."""
    data = load_dataset(args.dataset, args.data_dir)
    classes = int(data.y_train.max()) + 1
    sizes = [data.X_train.shape[1], *args.hidden, classes]
    model = MLP(sizes, activation=args.activation, device=args.device, dtype=args.dtype,
                seed=args.seed, dropout=args.dropout)
    extra = {} if args.weight_decay is None else {"weight_decay": args.weight_decay}
    optimizer = make_optimizer(args.optimizer, lr=args.lr or default_lr(args.optimizer), **extra)
    print(f"{args.dataset} from {data.source}: {len(data.X_train)} train / "
          f"{len(data.X_test)} test images", file=out)
    print(f"{model} · {optimizer} · batch {args.batch_size}", file=out, flush=True)

    def report(record: dict[str, Any]) -> None:
        print(f"epoch {record['epoch']:>3}/{args.epochs}  train loss {record['loss']:.4f}  "
              f"test loss {record['val_loss']:.4f}  test accuracy {record['val_accuracy']:.4f}  "
              f"{record['seconds']:.2f} s", file=out, flush=True)

    model.fit(data.X_train, data.y_train, epochs=args.epochs, batch_size=args.batch_size,
              optimizer=optimizer, validation_data=(data.X_test, data.y_test),
              seed=args.seed, callback=report)
    final = model.evaluate(data.X_test, data.y_test)
    print(f"test accuracy: {final['accuracy']:.4f}", file=out, flush=True)
    return final


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # bad values: argparse prints one line and exits 2
    try:
        run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (DatasetNotFound, BackendUnavailable, TrainingDiverged, ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
