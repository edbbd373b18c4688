"""``mlp-train``: train an MLP on an MNIST-family dataset from the command line.

Usage errors exit with status 2 and runtime failures with status 1, each with one line on
stderr that says what to do; a traceback is only for bugs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from backends import PRECISIONS, get_backend, threads

from .. import checks, distributed
from ..checkpoint import Checkpoint, save_checkpoint
from ..checkpoint_reader import stored_epoch
from ..data import CLASS_NAMES, CLASSES, DATASETS, SPLITS, Dataset
from ..distributed import Communicator
from ..errors import CannotWrite, CheckpointError, InvalidArgument, MLPError, TrainingDiverged
from ..model import MLP
from ..optim import OPTIMIZERS, Optimizer
from ..progress import EpochProgress
from ..schedules import SCHEDULES, Schedule, make_schedule
from ..stopping import EarlyStopping
from ..training import held_out
from .common import (
    DATA_DIR_HELP,
    OneLineParser,
    UsageError,
    checked,
    device_spec,
    hidden_sizes,
    named_path,
    one_line,
    output_file,
    read_dataset,
    report_errors,
    same_file,
    writable_file_problem,
)
from .locks import holding
from .reporting import MetricsLog, check_plot_available, plot_history
from .settings import build_optimizer, resumed, resumed_checkpoint

PROG = "mlp-train"


class RunStopped(MLPError, RuntimeError):
    """Training stopped early (diverged); the message says what was kept."""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=PROG,
        description="Train a multilayer perceptron on MNIST, Fashion-MNIST or KMNIST.",
    )
    p.add_argument("--device", type=device_spec, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dataset", choices=DATASETS, help=f"what to learn {resumed('dataset')}")
    p.add_argument("--data-dir", type=named_path, default=None, help=DATA_DIR_HELP)
    p.add_argument(
        "--hidden",
        type=hidden_sizes,
        help=f"hidden layer widths, comma-separated {resumed('hidden')}",
    )
    p.add_argument(
        "--activation",
        choices=("relu", "sigmoid", "tanh"),
        help=f"of hidden layers {resumed('activation')}",
    )
    p.add_argument(
        "--dropout",
        type=checked(checks.fraction, "dropout probability", float),
        help=f"dropout after hidden layers {resumed('dropout')}",
    )
    p.add_argument(
        "--epochs",
        type=checked(checks.positive_int, "epochs"),
        help=f"passes over the training set, in all {resumed('epochs')}",
    )
    p.add_argument(
        "--batch-size",
        type=checked(checks.positive_int, "batch size"),
        help=f"samples per step {resumed('batch_size')}",
    )
    p.add_argument(
        "--lr",
        type=checked(checks.positive_number, "learning rate", float),
        default=None,
        help="learning rate (default: 1e-3 for adam/adamw, 0.05 for sgd/momentum; when "
        "resuming, the checkpoint's)",
    )
    p.add_argument(
        "--optimizer", choices=tuple(OPTIMIZERS), help=f"update rule {resumed('optimizer')}"
    )
    p.add_argument(
        "--weight-decay",
        type=checked(checks.non_negative_number, "weight decay", float),
        default=None,
        help="L2 (sgd, adam) or decoupled (adamw) weight decay (default: 0; 0.01 for adamw; "
        "when resuming, the checkpoint's)",
    )
    p.add_argument(
        "--lr-schedule",
        choices=(*SCHEDULES, "none"),
        default=None,
        help="the learning rate per epoch: step (x0.1 every 10), cosine (to 0 at --epochs), "
        "plateau (x0.1 after 5 epochs without a lower validation loss), none (the default; "
        "when resuming, the checkpoint's)",
    )
    p.add_argument(
        "--validation-split",
        type=checked(checks.fraction, "validation split", float),
        help="hold out this fraction of the training images (the last ones) and watch them, "
        "not the test set, each epoch (default: watch the test set; when resuming, the "
        "checkpoint's)",
    )
    p.add_argument(
        "--early-stopping",
        type=checked(checks.positive_int, "early stopping patience"),
        default=None,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a lower validation loss, the best "
        "epoch's weights kept (when resuming, the checkpoint's)",
    )
    p.add_argument(
        "--seed",
        type=checked(checks.seed, "seed"),
        help=f"initial weights, shuffling and dropout: the same seed repeats a run "
        f"{resumed('seed')}",
    )
    p.add_argument(
        "--dtype",
        choices=checks.DTYPES,
        help=f"of weights and activations (float64: for gradient checks, slower) "
        f"{resumed('dtype')}",
    )
    p.add_argument(
        "--precision",
        choices=tuple(PRECISIONS),
        help="float32 matmuls: exact, on TF32 tensor cores (~1e-3 relative error), or with "
        "bfloat16 operands and float32 accumulation (~1e-2); weights, gradients and optimizer "
        f"state stay float32. CUDA runs them on tensor cores; the CPU emulates the rounding "
        f"{resumed('precision')}",
    )
    p.add_argument(
        "--tf32",
        dest="precision",
        action="store_const",
        const="tf32",
        help="the same as --precision tf32",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="insist on training data-parallel under an MPI launcher (mpiexec -n N "
        "mlp-train ..., or srun), even with one process; a launcher's world of two or more "
        "is used without it (needs the 'dist' extra)",
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
        help="continue a run from its checkpoint, its model, optimizer, seed and dataset with "
        "it; --epochs stays the total (checkpoints go back into this file unless --save says "
        "otherwise)",
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


# ---------------------------------------------------------------------------------- before
def check_options(args: argparse.Namespace) -> None:
    """Options that do not go together, or that cannot work here: refused in a second, not
    after the dataset loads or the first epoch."""
    if args.precision != "float32" and args.dtype != "float32":
        raise UsageError(
            f"--precision {args.precision} reduces float32 matmuls only: drop it"
            + (
                f" ({args.resume} holds a {args.dtype} model)"
                if args.resume is not None
                else ", or use --dtype float32"
            )
        )
    check_distinct_outputs(args)
    if args.resume is not None and args.save is None:  # checkpoints go back into it
        problem = writable_file_problem(args.resume)
        if problem:
            raise UsageError(f"--resume {args.resume}: {problem} (or give --save another file)")
    if args.plot is not None:
        try:
            check_plot_available(args.plot)
        except InvalidArgument as exc:
            raise UsageError(f"--plot {exc}") from None


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


def outputs_of(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The files the run writes, each with the option that names it."""
    save = ("--save", args.save) if args.save is not None else ("--resume", args.resume)
    named = [save, ("--log", args.log), ("--plot", args.plot)]
    return [(option, path) for option, path in named if path is not None]


def check_outputs_spare_the_data(args: argparse.Namespace, data: Dataset) -> None:
    """No output may replace one of the dataset's own files (an IDX file, overwritten)."""
    inputs = {
        os.path.realpath(data.source / f"{stem}{suffix}")
        for files in SPLITS.values()
        for stem in files
        for suffix in ("", ".gz")
    }
    for option, path in outputs_of(args):
        if os.path.realpath(path) in inputs:
            raise UsageError(
                f"{option} {path} is one of the dataset's own files: write the run's files "
                "elsewhere"
            )


# ---------------------------------------------------------------------------------- the run
def run(
    args: argparse.Namespace, out: Any = None, err: Any = None, world: Communicator | None = None
) -> dict[str, float]:
    """Train as the arguments say, printing per-epoch metrics; returns the final test metrics.

    With ``world`` (a data-parallel run), every process trains and rank 0 alone prints,
    holds and writes the run's files."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    checkpoint = resumed_checkpoint(args)  # first: it fills the settings the options omit
    check_options(args)
    backend = get_backend(device_of(args.device, world), precision=args.precision)
    if world is not None and backend.device == "cpu":
        world.share_cores()
    root = world is None or world.is_root
    with (
        holding(path for _, path in outputs_of(args) if root),  # one run per file
        threads.pinned(*kept_threads(checkpoint, args, backend, world)),
        saying_kept(lambda: before_training(args)),
    ):
        return train_and_report(args, checkpoint, backend, out, err, world)


@contextlib.contextmanager
def saying_kept(kept: Callable[[], str]) -> Iterator[None]:
    """A stop (Ctrl-C, SIGTERM) in the block ends with ``kept()``'s line, what is on disk,
    unless a stop inside it has said so already."""
    try:
        yield
    except KeyboardInterrupt as exc:
        if not exc.args:
            exc.args = (kept(),)
        raise


def before_training(args: argparse.Namespace) -> str:
    """What a run stopped before its epochs (reading the data) leaves: a resumed file as it
    was, else nothing."""
    return still_held(args.resume) or "nothing saved"


def still_held(resumed: Path | None) -> str | None:
    """That a resumed file holds the run as it was, where it does."""
    epoch = None if resumed is None else stored_epoch(resumed)
    if epoch is None:
        return None
    return f"{resumed} still holds epoch {epoch}: run the same command again"


def kept_threads(
    checkpoint: Checkpoint | None, args: argparse.Namespace, backend: Any, world: Any
) -> tuple[int | None, tuple[int, int, int]]:
    """A resumed run on the CPU, alone, trains on the BLAS threads its epochs ran on, not
    on a choice timed afresh (``threads.pinned``): the same last digits as the unbroken run.
    The count (``None``: none kept), and the largest product its fit would be timed on."""
    product = (0, 0, 0)
    if checkpoint is None or world is not None or backend.device != "cpu":
        return None, product
    alone = all(record.get("world_size", 1) == 1 for record in checkpoint.history[-1:])
    product = threads.largest_product(args.batch_size, checkpoint.config["sizes"])
    return (checkpoint.run.get("blas_threads") if alone else None), product


def device_of(spec: str, world: Communicator | None) -> str:
    """The device a process trains on: with several processes on a machine, ``cuda`` is
    the GPU of the process's place there (``cuda:<local rank>``)."""
    return f"cuda:{world.local_rank}" if world is not None and spec == "cuda" else spec


def train_and_report(
    args: argparse.Namespace,
    checkpoint: Checkpoint | None,
    backend: Any,
    out: Any,
    err: Any,
    world: Communicator | None = None,
) -> dict[str, float]:
    """The run itself, holding its files: resume, read the data, train, evaluate, plot."""
    root = world is None or world.is_root
    if not root:
        args.quiet = True  # rank 0 alone prints, shows progress and writes files

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=out, flush=True)

    with distributed.root_first(world):  # a dataset is downloaded once, by rank 0
        data = read_dataset(args.dataset, args, err, quiet=args.quiet, dtype=args.dtype)
    check_outputs_spare_the_data(args, data)
    digest = data.digest()
    if checkpoint is not None and checkpoint.run.get("data_digest", digest) != digest:
        raise CheckpointError(
            checkpoint.path,
            f"began on other data than {data.source} holds (on "
            f"{checkpoint.run.get('data_dir', 'another folder')}): give --data-dir the "
            "folder of the data it began on",
        )
    try:
        held = held_out(len(data.X_train), args.validation_split)
    except InvalidArgument:  # the library's words name its argument, not the option
        raise UsageError(
            f"--validation-split {args.validation_split} of the {len(data.X_train)} training "
            "images leaves none to train on or none to validate on"
        ) from None
    trained_on = len(data.X_train) - held
    if checkpoint is None:
        sizes = [data.X_train.shape[1], *args.hidden, CLASSES[args.dataset]]
        model = MLP(
            sizes,
            activation=args.activation,
            device=backend,
            dtype=args.dtype,
            seed=args.seed,
            dropout=args.dropout,
        )
    else:  # every setting the model was built with (its init too), the options' agreeing
        model = MLP(**checkpoint.model_settings, device=backend)
    optimizer = build_optimizer(args, checkpoint)
    history: list[dict[str, Any]] = []
    initial_epoch = 0
    if checkpoint is not None:
        checkpoint.restore(model, optimizer)
        initial_epoch, history = checkpoint.epoch, checkpoint.history

    validating = f" + {held} held out to validate" if held else ""
    say(
        f"{args.dataset} from {data.source}: {trained_on} train{validating} / "
        f"{len(data.X_test)} test images"
    )
    say(f"{model} · {optimizer} · batch {args.batch_size}")
    say(f"device: {backend.describe()}")
    if world is not None:
        say(f"data-parallel: {world.describe(backend)}")
    if checkpoint is not None:
        say(f"resuming {args.resume} after epoch {initial_epoch} of {args.epochs}")

    watching = [
        name
        for name, used in (
            ("--early-stopping", args.early_stopping is not None),
            ("--lr-schedule plateau", args.lr_schedule == "plateau"),
        )
        if used
    ]
    if watching and not args.validation_split:
        say(
            f"note: {' and '.join(watching)} {'watch' if len(watching) > 1 else 'watches'} "
            "the test loss without --validation-split: "
            "the test accuracy at the end is then chosen on the test set, not measured apart"
        )
    schedule = make_schedule(args.lr_schedule)
    stopping = None if args.early_stopping is None else EarlyStopping(args.early_stopping)
    stopped = False  # a resumed run that early stopping had ended
    stored = None if checkpoint is None else checkpoint.build_optimizer()
    ran_at = None if stored is None else stored.lr  # the rate the run's last epoch ran at
    if checkpoint is not None and history:  # where the run stood, judged from its records
        if schedule is not None:  # ran_at for records without a rate; a new --lr wins
            schedule.resume(history, rate="lr" not in args.changed, last=ran_at)
        if stopping is not None:  # its best epoch, those weights, the epochs waited
            stopped = stopping.resume(history, model, checkpoint.best)
    data_info = {"data_dir": str(data.source.resolve()), "data_digest": digest}
    outputs = Outputs(
        args, model, optimizer, history, trained_on, data_info, out, err, world, stopping,
        blas_threads=None if checkpoint is None else checkpoint.run.get("blas_threads"),
    )  # fmt: skip
    with saying_kept(outputs.kept):  # a stop after the epochs too: what the file holds
        # a file that ended on early stopping's best weights keeps the last epoch's own beside
        # them; one without holds them as its weights
        beside = None if checkpoint is None else checkpoint.last
        if checkpoint is not None and stopping is not None:
            outputs.last = backend.to_numpy(model.params).copy() if beside is None else beside
        unscheduled = schedule is None or stopped or initial_epoch >= args.epochs
        if unscheduled and checkpoint is not None and "lr" not in args.changed:
            # no schedule sets the rate (turned off, or nothing left to train): the optimizer
            # keeps the one its last epoch ran at, as PyTorch's and Keras' do
            optimizer.lr = optimizer.lr if ran_at is None else ran_at
        if stopped:  # it had stopped there: it ends as the unbroken run did, on its best weights
            stopping.restore(model)
            if outputs.save_path is not None:
                outputs.save(initial_epoch, ended_on_best=True)
            outputs.finish()
            outputs.close()
        else:
            if beside is not None and initial_epoch < args.epochs:  # on, as if unbroken
                model.params[...] = backend.asarray(beside, dtype=model.dtype)
            train(args, model, optimizer, data, initial_epoch, outputs, world, schedule, stopping)
        finished_before = args.resume is not None and initial_epoch == args.epochs and not stopped
        if (
            outputs.save_path is not None
            and finished_before
            and not same_file(outputs.save_path, args.resume)
        ):
            # nothing trained, but --save names another file: copy there
            outputs.save(args.epochs, ended_on_best=outputs.last is not None)
        final = model.evaluate(data.X_test, data.y_test, communicator=world)
        if not root:
            return final
        if stopping is not None and stopping.stopped_epoch:
            say(
                f"early stopping ended the run after epoch {stopping.stopped_epoch}, "
                f"{args.early_stopping} epochs without a lower {outputs.watched} loss: the weights "
                f"are epoch {stopping.best_epoch}'s"
            )
        if args.plot is not None:
            widths = "-".join(str(w) for w in model.sizes)
            title = f"{args.dataset} · MLP {widths} · {args.optimizer}"
            plot_history(history, args.plot, title, watched=outputs.watched)
            say(f"curves: {args.plot}")
        print(f"test accuracy: {final['accuracy']:.4f}", file=out, flush=True)
        return final


def train(
    args: argparse.Namespace,
    model: MLP,
    optimizer: Optimizer,
    data: Dataset,
    initial_epoch: int,
    outputs: Outputs,
    world: Communicator | None = None,
    schedule: Schedule | None = None,
    stopping: EarlyStopping | None = None,
) -> None:
    """``fit`` as the options say; a run that stops says which checkpoint it left."""
    try:
        model.fit(
            data.X_train,
            data.y_train,
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=optimizer,
            validation_data=None if args.validation_split else (data.X_test, data.y_test),
            validation_split=args.validation_split,
            seed=args.seed,
            initial_epoch=initial_epoch,
            lr_schedule=schedule,
            early_stopping=stopping,
            callback=outputs.end_epoch,
            on_batch=outputs.progress.batch,
            communicator=world,
        )
        if stopping is not None and outputs.save_path is not None:
            # fit ended on the best epoch's weights: keep them, the last epoch's beside them
            outputs.save(model.epochs_trained, ended_on_best=True)
        outputs.finish()
    except TrainingDiverged as exc:
        raise RunStopped(f"{exc}; {outputs.kept()}") from None
    except CannotWrite as exc:  # a full disk under the checkpoint or the log
        raise CannotWrite(f"{exc}; {outputs.kept()}") from None
    except MemoryError as exc:  # memory gone mid-run (another process took the GPU's, say)
        # a plain MemoryError: NumPy's and CuPy's subclasses take other arguments than a text
        raise MemoryError(f"{one_line(exc)}; {outputs.kept()}") from None
    finally:
        outputs.close()


class Outputs:
    """What a run leaves as each epoch ends: the history, a checkpoint, a log line, the
    progress bar and the epoch's line; and, should it stop, the line saying what was kept."""

    def __init__(
        self,
        args: argparse.Namespace,
        model: MLP,
        optimizer: Optimizer,
        history: list[dict[str, Any]],
        samples: int,
        data_info: dict[str, str],
        out: Any,
        err: Any,
        world: Communicator | None = None,
        stopping: EarlyStopping | None = None,
        blas_threads: int | None = None,
    ) -> None:
        """``blas_threads``: those a resumed checkpoint's epochs ran on, kept till one trains."""
        self.args, self.model, self.optimizer, self.history = args, model, optimizer, history
        self.stopping = stopping  # its best weights go into each checkpoint
        self.last: np.ndarray | None = None  # the last epoch's weights, once fit restores
        self.out = out
        self.watched = "val" if args.validation_split else "test"  # what val_* were measured on
        root = world is None or world.is_root
        self.writes = root  # the other processes write nothing, but know what rank 0 keeps
        self.save_path: Path | None = args.save if args.save is not None else args.resume
        # whether the file at save_path is this run's: it resumed from it, or saved into it
        self.ours = args.resume is not None and (
            args.save is None or same_file(args.save, args.resume)
        )
        self.progress = EpochProgress(
            samples,
            args.batch_size,
            args.epochs,
            err,
            enabled=not args.quiet,
            first=model.epochs_trained + 1,  # a resumed run's next
        )
        size = 1 if world is None else world.size
        #: what trains this run's epochs: each record keeps it
        self.trainer = {"device": model.device, "precision": args.precision, "world_size": size}
        self.log = (
            MetricsLog(
                args.log,
                self.trainer,
                append=args.resume is not None,
                watched=self.watched,
                history=list(history),
            )
            if args.log and root
            else None
        )
        self.run_info = {
            "dataset": args.dataset,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "optimizer": args.optimizer,
            "lr": optimizer.lr,  # where the run starts, before a schedule lowers it
            "lr_schedule": args.lr_schedule,
            "validation_split": args.validation_split,
            "early_stopping": args.early_stopping,
            "precision": args.precision,
            "blas_threads": blas_threads,  # the CPU's, as its epochs train
            **data_info,  # where the data came from, and its digest: a resume checks it
        }

    def end_epoch(self, record: dict[str, Any]) -> None:
        self.progress.end(record)
        record.update(self.trainer)  # in the history too: a resumed log's lines say it
        self.history.append(record)
        if self.model.device == "cpu":
            self.run_info["blas_threads"] = threads.in_use()
        if self.save_path is not None:  # only finite epochs get here: a NaN never overwrites
            self.save(record["epoch"])
            if self.stopping is not None:  # what fit's end replaces with the best epoch's
                self.last = self.model.backend.to_numpy(self.model.params).copy()
        if not self.args.quiet:
            print(
                f"epoch {record['epoch']:>3}/{self.args.epochs}  "
                f"train loss {record['loss']:.4f}  {self.watched} loss {record['val_loss']:.4f}  "
                f"{self.watched} accuracy {record['val_accuracy']:.4f}  {record['seconds']:.2f} s",
                file=self.out,
                flush=True,
            )
        if self.log is not None:
            self.log.write(record)

    def save(self, epoch: int, ended_on_best: bool = False) -> None:
        """The checkpoint of ``epoch``; ``ended_on_best``: the model holds early stopping's
        best epoch's weights, and the last epoch's own (``last``) go beside them."""
        self.ours = True
        if not self.writes:
            return
        best = None if self.stopping is None else self.stopping.best_weights(self.model)
        beside = ended_on_best and best is not None and best[0] != epoch
        save_checkpoint(
            self.save_path,
            self.model,
            self.optimizer,
            epoch=epoch,
            seed=self.args.seed,
            history=self.history,
            run=self.run_info,
            classes=CLASS_NAMES[self.args.dataset],
            best=best,
            last=self.last if beside else None,
        )

    def finish(self) -> None:
        """Every epoch is in: a resumed log that none was written to still catches up."""
        if self.log is not None:
            self.log.catch_up()

    def close(self) -> None:
        self.progress.close()
        if self.log is not None:
            self.log.close()

    def kept(self) -> str:
        """What the checkpoint on disk holds, for the line a stopped run ends with: read
        back from the file, since a stop may land in the middle of a save."""
        if self.save_path is None:
            return "no checkpoint was written (use --save to keep one)"
        epoch = stored_epoch(self.save_path) if self.ours else None
        if epoch is not None:
            return f"{self.save_path} holds epoch {epoch}: continue with --resume {self.save_path}"
        nothing = f"no epoch finished, so nothing was saved to {self.save_path}"
        held = still_held(self.args.resume)
        return nothing if held is None else f"{nothing}; {held}"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)  # bad values: one line on stderr, exit status 2
    except SystemExit as exc:
        distributed.end_launched(exc.code)
        raise
    world: Communicator | None = None

    def join() -> None:
        nonlocal world
        try:
            world = distributed.from_environment(insist=args.distributed)
        except distributed.NotLaunched as exc:  # how the command was run: a usage mistake
            raise UsageError(str(exc)) from None

    status = report_errors(PROG, join)
    if status:
        return status
    prog = PROG if world is None or world.is_root else f"{PROG} (rank {world.rank})"
    if world is not None and not world.is_root:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches all: rank 0 answers it
    with distributed.ending_all_on_failure(world) as ending:
        status = report_errors(
            prog,
            lambda: run(args, world=world),
            interrupted="nothing saved",
            out_of_memory="a smaller --hidden or --batch-size needs less",
        )
        ending.status = status
    return status


if __name__ == "__main__":
    sys.exit(main())
