"""``mlp-train``: train an MLP on an MNIST-family dataset from the command line.

Usage errors exit with status 2 and runtime failures with status 1, each with one line on
stderr that says what to do; a traceback is only for bugs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from backends import PRECISIONS, BackendUnavailable, get_backend, parse_device

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data import DATASETS, SPLITS, SYSTEM_DIRS, Dataset, DatasetNotFound, load_dataset
from .download import DownloadError, ensure_dataset
from .model import MLP, TrainingDiverged
from .optim import OPTIMIZERS, make_optimizer
from .reporting import (
    EpochProgress,
    MetricsLog,
    PlotUnavailable,
    check_plot_available,
    plot_history,
)

PROG = "mlp-train"
#: The search order of ``mlp.data.candidate_dirs``, its system folders taken from the source.
DATA_DIR_HELP = (
    "folder with the IDX files, or its DATASET subfolder: the only place looked when given "
    "(default: the first of $MLP_DATA_DIR, ~/.cache/mlp/DATASET, "
    + ", ".join(f"{folder}/DATASET" for folder in SYSTEM_DIRS)
    + " that has them; else a download)"
)


class UsageError(ValueError):
    """A bad command-line value (exit status 2)."""


class RunStopped(RuntimeError):
    """Training stopped early (diverged); the message says what was kept."""


#: Runtime failures: one line on stderr and exit status 1 (a traceback is only for bugs).
RUNTIME_ERRORS = (
    DatasetNotFound,
    DownloadError,
    BackendUnavailable,
    TrainingDiverged,
    CheckpointError,
    PlotUnavailable,
    RunStopped,
    ValueError,
    OSError,
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each default as it would be typed (``512,256``), and none where
    there is nothing to show (``None``, a flag's ``False``) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == {}
            or "default" in text
        ):
            return text
        if isinstance(default, list | tuple):
            default = ",".join(map(str, default))
        return f"{text} (default: {str(default).replace('%', '%%')})".lstrip()


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``prog: error: …``), not usage + error,
    and ``--help`` lists the defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: Any) -> str:
    return " ".join(str(message).split())


def bounded(
    convert: Callable[[str], Any], accepts: Callable[[Any], bool], expected: str
) -> Callable[[str], Any]:
    """An argparse type: ``convert`` the text, then require ``accepts(value)``.

    Whatever fails (a non-number, NaN, out of range) gets the same one-line message.
    """

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_INF = float("inf")
positive_int = bounded(int, lambda v: v > 0, "a positive integer")
non_negative_int = bounded(int, lambda v: v >= 0, "an integer >= 0")
positive_float = bounded(float, lambda v: 0.0 < v < _INF, "a positive number")
non_negative_float = bounded(float, lambda v: 0.0 <= v < _INF, "a number >= 0")
dropout_rate = bounded(float, lambda v: 0.0 <= v < 1.0, "a probability in [0, 1)")


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


def output_file(text: str) -> Path:
    """A file to write: its folder must exist (checked now, not after hours of training)."""
    path = Path(text)
    folder = path.parent
    try:
        if not text or path.is_dir():
            raise argparse.ArgumentTypeError(f"expected a file name, got {text!r}")
        if path.exists() and not path.is_file():  # a device, a pipe: never renamed over
            raise argparse.ArgumentTypeError(f"{text!r} is not a regular file")
        if not folder.is_dir():
            raise argparse.ArgumentTypeError(f"folder {str(folder)!r} does not exist")
    except OSError as exc:  # a folder we may not look into, a name too long, …
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"folder {str(folder)!r} is not writable")
    return path


def named_path(text: str) -> Path:
    """A file or folder to read: at least a name (whether it is there is the reader's
    one-line error); an empty one would quietly mean the current folder or nothing."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
    return Path(text)


def check_distinct_outputs(args: argparse.Namespace) -> None:
    """Each file the run writes is its own: a plot over the checkpoint, or a log that the
    next atomic checkpoint save replaces, would lose one of them without a word."""
    named = [
        (option, path)
        for option, path in (
            ("--save", args.save),
            ("--resume", args.resume),
            ("--log", args.log),
            ("--plot", args.plot),
        )
        if path is not None
    ]
    seen: dict[str, str] = {}
    for option, path in named:
        key = os.path.realpath(path)
        other = seen.setdefault(key, option)
        if other != option and {other, option} != {"--save", "--resume"}:
            raise UsageError(f"{other} and {option} name the same file ({path}): give each its own")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=PROG,
        description="Train a multilayer perceptron on MNIST, Fashion-MNIST or KMNIST.",
    )
    p.add_argument("--device", type=device_spec, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dataset", choices=DATASETS, default="fashion-mnist", help="what to learn")
    p.add_argument("--data-dir", type=named_path, default=None, help=DATA_DIR_HELP)
    p.add_argument(
        "--hidden",
        type=hidden_sizes,
        default="512,256",
        help="hidden layer widths, comma-separated",
    )
    p.add_argument(
        "--activation", choices=("relu", "sigmoid", "tanh"), default="relu", help="of hidden layers"
    )
    p.add_argument("--dropout", type=dropout_rate, default=0.0, help="dropout after hidden layers")
    p.add_argument(
        "--epochs", type=positive_int, default=10, help="passes over the training set, in all"
    )
    p.add_argument("--batch-size", type=positive_int, default=128, help="samples per step")
    p.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="learning rate (default: 1e-3 for adam/adamw, 0.05 for sgd/momentum)",
    )
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="adam", help="update rule")
    p.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=None,
        help="L2 (sgd, adam) or decoupled (adamw) weight decay (default: 0; 0.01 for adamw)",
    )
    p.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="initial weights, shuffling and dropout: the same seed repeats a run",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="of weights and activations (float64: for gradient checks, slower)",
    )
    p.add_argument(
        "--precision",
        choices=tuple(PRECISIONS),
        default="float32",
        help="float32 matmuls: exact, on TF32 tensor cores (~1e-3 relative error), or with "
        "bfloat16 operands and float32 accumulation (~1e-2); weights, gradients and optimizer "
        "state stay float32. CUDA runs them on tensor cores; the CPU emulates the rounding",
    )
    p.add_argument(
        "--tf32",
        dest="precision",
        action="store_const",
        const="tf32",
        help="the same as --precision tf32",
    )
    g = p.add_argument_group("checkpoints, logs and downloads")
    g.add_argument(
        "--save",
        type=output_file,
        default=None,
        metavar="RUN.npz",
        help="write a checkpoint after every epoch (atomically) and at the end",
    )
    g.add_argument(
        "--resume",
        type=named_path,
        default=None,
        metavar="RUN.npz",
        help="continue a run from its checkpoint; --epochs stays the total "
        "(checkpoints go back into this file unless --save says otherwise)",
    )
    g.add_argument(
        "--no-download",
        action="store_true",
        help="never download a missing dataset (fail with what to do instead)",
    )
    g.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar and no per-epoch lines; just the final accuracy",
    )
    g.add_argument(
        "--log",
        type=output_file,
        default=None,
        metavar="METRICS.jsonl",
        help="one JSON line of metrics per epoch (a fresh run replaces the file, a resumed run "
        "appends)",
    )
    g.add_argument(
        "--plot",
        type=output_file,
        default=None,
        metavar="CURVES.png",
        help="draw loss and accuracy curves at the end (needs the 'plot' extra)",
    )
    return p


def default_lr(optimizer: str) -> float:
    return 1e-3 if optimizer in ("adam", "adamw") else 0.05


def run(args: argparse.Namespace, out: Any = None, err: Any = None) -> dict[str, float]:
    """Train as the arguments say, printing per-epoch metrics; returns the final test metrics.

    Cheap checks come first (plotting available, device usable, checkpoint readable), so
    a mistake is reported in a second, not after the dataset loads or the first epoch.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if args.precision != "float32" and args.dtype != "float32":
        raise UsageError(
            f"--precision {args.precision} reduces float32 matmuls only: "
            f"drop it, or use --dtype float32"
        )
    check_distinct_outputs(args)
    if args.plot is not None:
        try:
            check_plot_available(args.plot)
        except ValueError as exc:
            raise UsageError(f"--plot {exc}") from None
    backend = get_backend(args.device, precision=args.precision)
    checkpoint = load_checkpoint(args.resume) if args.resume is not None else None
    if checkpoint is not None and checkpoint.epoch > args.epochs:
        raise UsageError(
            f"{args.resume} already holds {checkpoint.epoch} epochs, more than "
            f"--epochs {args.epochs} (--epochs is the total, as when it started)"
        )
    save_path = args.save if args.save is not None else args.resume
    show_bar = not args.quiet

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=out, flush=True)

    folder = ensure_dataset(
        args.dataset,
        args.data_dir,
        download=not args.no_download,
        progress=show_bar and _isatty(err),
        announce=None if args.quiet else lambda line: print(line, file=err, flush=True),
    )
    data = load_dataset(args.dataset, folder)
    check_finite(data)
    check_labels(data)
    classes = int(data.y_train.max()) + 1
    check_labels(data, classes)
    sizes = [data.X_train.shape[1], *args.hidden, classes]
    model = MLP(
        sizes,
        activation=args.activation,
        device=backend,
        dtype=args.dtype,
        seed=args.seed,
        dropout=args.dropout,
    )
    extra = {} if args.weight_decay is None else {"weight_decay": args.weight_decay}
    optimizer = make_optimizer(args.optimizer, lr=args.lr or default_lr(args.optimizer), **extra)
    run_info = {
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "optimizer": args.optimizer,
    }
    history: list[dict[str, Any]] = []
    initial_epoch = 0
    if checkpoint is not None:
        check_resumable(checkpoint, args)
        checkpoint.restore(model, optimizer)
        initial_epoch, history = checkpoint.epoch, checkpoint.history

    say(
        f"{args.dataset} from {data.source}: {len(data.X_train)} train / "
        f"{len(data.X_test)} test images"
    )
    say(f"{model} · {optimizer} · batch {args.batch_size}")
    say(f"device: {backend.describe()}")
    if checkpoint is not None:
        say(f"resuming {args.resume} after epoch {initial_epoch} of {args.epochs}")

    progress = EpochProgress(len(data.X_train), args.batch_size, args.epochs, err, enabled=show_bar)
    log = MetricsLog(args.log, model.device, append=checkpoint is not None) if args.log else None

    def on_epoch(record: dict[str, Any]) -> None:
        progress.end(record)
        history.append(record)
        if save_path is not None:  # only finite epochs get here: a NaN never overwrites
            save_checkpoint(
                save_path,
                model,
                optimizer,
                epoch=record["epoch"],
                seed=args.seed,
                history=history,
                run=run_info,
            )
        say(
            f"epoch {record['epoch']:>3}/{args.epochs}  train loss {record['loss']:.4f}  "
            f"test loss {record['val_loss']:.4f}  test accuracy {record['val_accuracy']:.4f}  "
            f"{record['seconds']:.2f} s"
        )
        if log is not None:
            log.write(record)

    try:
        model.fit(
            data.X_train,
            data.y_train,
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=optimizer,
            validation_data=(data.X_test, data.y_test),
            seed=args.seed,
            initial_epoch=initial_epoch,
            callback=on_epoch,
            on_batch=progress.batch,
        )
    except TrainingDiverged as exc:
        kept = _kept(save_path, history)
        raise RunStopped(f"{exc}; {kept}") from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_kept(save_path, history)) from None
    except MemoryError as exc:  # memory gone mid-run (another process took the GPU's, say)
        # a plain MemoryError: NumPy's and CuPy's subclasses take other arguments than a text
        raise MemoryError(f"{one_line(exc)}; {_kept(save_path, history)}") from None
    finally:
        progress.close()
        if log is not None:
            log.close()
    finished_before = args.resume is not None and initial_epoch == args.epochs
    if save_path is not None and finished_before and save_path != Path(args.resume):
        # nothing trained, but --save names another file: copy the run there
        save_checkpoint(
            save_path,
            model,
            optimizer,
            epoch=args.epochs,
            seed=args.seed,
            history=history,
            run=run_info,
        )
    final = model.evaluate(data.X_test, data.y_test)
    if args.plot is not None:
        widths = "-".join(str(w) for w in model.sizes)
        plot_history(history, args.plot, title=f"{args.dataset} · MLP {widths} · {args.optimizer}")
        say(f"curves: {args.plot}")
    print(f"test accuracy: {final['accuracy']:.4f}", file=out, flush=True)
    return final


def check_finite(data: Dataset) -> None:
    """Float IDX files can hold NaN or infinity: say which split, before training on it."""
    for split, X in (("train", data.X_train), ("test", data.X_test)):
        if X.dtype.kind == "f" and not np.all(np.isfinite(X)):
            raise ValueError(f"{data.source}: the {split} images contain NaN or infinity")


#: The most classes the output layer is sized for: a label beyond it is a mistake (an ID,
#: a measurement), which would otherwise surface as running out of memory.
MAX_CLASSES = 65536


def check_labels(data: Dataset, classes: int | None = None) -> None:
    """Labels are whole numbers from 0 (and below ``classes``): else name the labels file."""
    for split, y in (("train", data.y_train), ("test", data.y_test)):
        if classes is not None and split == "train":
            continue  # the output layer was sized from the training labels
        where = _label_file(data, split)
        if y.size == 0:
            continue
        if y.dtype.kind == "f" and not (np.all(np.isfinite(y)) and np.all(y == np.round(y))):
            raise ValueError(f"{where}: labels must be whole numbers, got {y.dtype} values")
        low, high = y.min(), y.max()
        if low < 0:
            raise ValueError(f"{where}: labels must be 0 or more, got {low:g}")
        if classes is None and high >= MAX_CLASSES:
            raise ValueError(
                f"{where}: labels go up to {high:g}, but they are class indices 0 to K-1, "
                f"one output unit each, with K at most {MAX_CLASSES}"
            )
        if classes is not None and high >= classes:
            raise ValueError(
                f"{where}: labels go up to {high:g}, but the model has {classes} outputs "
                f"(labels 0 to {classes - 1})"
            )


def _label_file(data: Dataset, split: str) -> Path:
    stem = SPLITS[split][1]
    for name in (stem, stem + ".gz"):
        if (data.source / name).is_file():
            return data.source / name
    return data.source / stem


def check_resumable(checkpoint: Any, args: argparse.Namespace) -> None:
    """The same run, or say what differs (weights and optimizer are checked by ``restore``)."""
    differences = []
    if checkpoint.seed != args.seed:
        differences.append(f"--seed {checkpoint.seed} in the file but {args.seed} here")
    dataset = checkpoint.run.get("dataset")
    if dataset is not None and dataset != args.dataset:
        differences.append(f"--dataset {dataset} in the file but {args.dataset} here")
    if differences:
        raise CheckpointError(checkpoint.path, "is another run: " + "; ".join(differences))


def _kept(save_path: Path | None, history: list[dict[str, Any]]) -> str:
    if save_path is None:
        return "no checkpoint was written (use --save to keep one)"
    if not history:
        return f"no epoch finished, so nothing was saved to {save_path}"
    epoch = history[-1]["epoch"]
    return f"{save_path} holds epoch {epoch}: continue with --resume {save_path}"


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def run_reporting_errors(
    prog: str, action: Callable[[], Any], interrupted: str = "", out_of_memory: str = ""
) -> int:
    """Run a command's work; turn a user's mistake or a runtime failure into one line.

    Returns the exit status: the action's own when it returns an int, else 0; 2 for usage
    errors, 1 for runtime failures (running out of host or GPU memory among them, with the
    ``out_of_memory`` hint), 130 for Ctrl-C (whose message, if any, says what was saved; else
    ``interrupted``). NumPy's floating-point warnings are off: a diverging run overflows
    before its loss turns NaN, and that is reported as one line (a NaN test loss shows in the
    output), so they would only add noise.
    """
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = action()
    except KeyboardInterrupt as exc:
        detail = one_line(exc) or interrupted
        print(f"{prog}: interrupted{'; ' + detail if detail else ''}", file=sys.stderr)
        return 130
    except UsageError as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except RUNTIME_ERRORS as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except MemoryError as exc:  # NumPy's and CuPy's (OutOfMemoryError) alike
        detail = one_line(exc) or "an allocation failed"
        hint = f"; {out_of_memory}" if out_of_memory else ""
        print(f"{prog}: error: out of memory: {detail}{hint}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # bad values: one line on stderr, exit status 2
    return run_reporting_errors(
        PROG,
        lambda: run(args),
        interrupted="nothing saved",
        out_of_memory="a smaller --hidden or --batch-size needs less",
    )


if __name__ == "__main__":
    sys.exit(main())
