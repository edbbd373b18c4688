"""What every command shares: its parser, its argument types, and one-line error reporting.

A command's options are parsed by the library's own checks (``mlp/checks.py``), so a rule
and its message are written once. At run time the library's errors (``mlp.errors``) and
the backends' ``BackendUnavailable`` become one line on stderr; anything else is a bug and
keeps its traceback. Exit status: 2 for a usage error, 1 for a runtime failure, 130 for
Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from backends import BackendUnavailable, parse_device
from backends.errors import DISTRIBUTION

from ..data import SYSTEM_DIRS, Dataset, ensure_dataset, load_dataset
from ..errors import CannotWrite, InvalidArgument, MLPError
from ..progress import is_terminal
from ..version import VERSION

#: The search order of ``mlp.data.candidate_dirs``, its system folders taken from the source.
DATA_DIR_HELP = (
    "folder with the IDX files, or its DATASET subfolder: the only place looked when given "
    "(default: the folder a resumed or evaluated checkpoint was trained on, where it still "
    "is; else the first of "
    "$MLP_DATA_DIR, ~/.cache/mlp/DATASET, "
    + ", ".join(f"{folder}/DATASET" for folder in SYSTEM_DIRS)
    + " that has them; else a download)"
)


class UsageError(MLPError, ValueError):
    """A bad command-line value, or options that do not go together (exit status 2)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised wherever the command is, so that it stops as it stops on
    Ctrl-C: temporary files removed, one line saying what was kept."""

    def __init__(self, signum: int, *args: object) -> None:
        super().__init__(*args)
        self.signum = signum


#: The signals that end a command as Ctrl-C does (``SIGHUP``: a terminal closed).
TERMINATING = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextlib.contextmanager
def terminating_as_interrupts() -> Iterator[None]:
    """Within: SIGTERM and SIGHUP raise ``Terminated`` (only the main thread can catch a
    signal; elsewhere, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated(signum)

    before = {signum: signal.signal(signum, terminate) for signum in TERMINATING}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


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
    ``--help`` lists the defaults, and every command answers ``--version``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        if kwargs.get("description"):  # a module docstring as the description: plain text
            kwargs["description"] = kwargs["description"].replace("``", "")
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--version", action="version", version=f"%(prog)s {VERSION} ({DISTRIBUTION})"
        )

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: Any) -> str:
    return " ".join(str(message).split())


# ---------------------------------------------------------------------------------- arguments
def checked(
    check: Callable[[str, Any], Any], name: str, convert: Callable[[str], Any] = int
) -> Callable[[str], Any]:
    """An argparse type: ``convert`` the text, then apply the library's ``check(name, value)``.

    Text that does not convert goes to the check as it is, which refuses it with its own
    message (``epochs must be a positive integer, got 'x'``), so each rule reads the same
    on the command line as from Python.
    """

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = text
        try:
            return check(name, value)
        except InvalidArgument as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def same_file(a: Path, b: Path) -> bool:
    """Whether two names are one file (links followed, hard ones too; a missing one is no
    file yet, so nothing it could replace)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint RUN.npz``, the saved model that mlp-eval, -export and -predict read."""
    parser.add_argument(
        "--checkpoint",
        type=named_path,
        required=True,
        metavar="RUN.npz",
        help="a checkpoint written by mlp-train --save or model.save",
    )


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
    problem = writable_file_problem(Path(text)) if text else f"expected a file name, got {text!r}"
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return Path(text)


def writable_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be written (``None``: it can), as a user reads it: the folder
    that counts is the one its file goes into, a link's target's (``atomic_write``)."""
    folder = Path(os.path.realpath(path)).parent
    try:
        if path.is_dir():
            return f"expected a file name, got {str(path)!r}"
        if path.exists() and not path.is_file():  # a device, a pipe: never renamed over
            return f"{str(path)!r} is not a regular file"
        if not folder.is_dir():
            return f"folder {str(folder)!r} does not exist"
    except OSError as exc:  # a folder we may not look into, a name too long, …
        return f"cannot write {str(path)!r}: {exc.strerror}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"folder {str(folder)!r} is not writable"
    return None


def named_path(text: str) -> Path:
    """A file or folder to read: at least a name (whether it is there is the reader's
    one-line error); an empty one would quietly mean the current folder or nothing."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
    return Path(text)


def read_dataset(
    dataset: str,
    args: argparse.Namespace,
    err: Any,
    quiet: bool = False,
    classes: int | None = None,
    dtype: Any = None,
) -> Dataset:
    """``dataset`` as ``--data-dir`` and ``--no-download`` say: found, else downloaded (a
    line says so first, and a bar shows on a terminal unless ``quiet``); checked as
    ``load_dataset`` checks it, for a model of ``classes`` outputs and ``dtype``."""
    folder = ensure_dataset(
        dataset,
        args.data_dir,
        download=not args.no_download,
        progress=not quiet and is_terminal(err),
        announce=None if quiet else lambda line: print(line, file=err, flush=True),
    )
    return load_dataset(dataset, folder, classes=classes, dtype=dtype)


def stored_data_dir(checkpoint: Any) -> Path | None:
    """The folder a checkpoint's run read its data from, where it still is: what
    ``--resume`` and ``mlp-eval`` read without ``--data-dir``."""
    folder = checkpoint.run.get("data_dir")
    return Path(folder) if folder and os.path.isdir(folder) else None


# ---------------------------------------------------------------------------------- running
def report_errors(
    prog: str, action: Callable[[], Any], interrupted: str = "", out_of_memory: str = ""
) -> int:
    """Run a command's work; turn a user's mistake or a runtime failure into one line.

    Returns the exit status: the action's own when it returns an int, else 0; 2 for usage
    errors, 1 for the library's errors and for running out of host or GPU memory (with the
    ``out_of_memory`` hint), 128 + the signal for Ctrl-C (130), SIGTERM (143) and SIGHUP
    (129), whose message, if any, says what was saved (else ``interrupted``). NumPy's
    floating-point warnings are off: a diverging run overflows before its loss turns NaN,
    and that is reported as one line (a NaN test loss shows in the output), so they would
    only add noise.
    """
    try:
        with (
            terminating_as_interrupts(),
            np.errstate(over="ignore", invalid="ignore", divide="ignore"),
            contextlib.redirect_stdout(_Output(sys.stdout)),
        ):
            result = action()
            sys.stdout.flush()  # a full disk shows here, not at the interpreter's exit
    except _ReaderGone:  # `| head`: end quietly, as a command killed by SIGPIPE would
        return 1
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        stopped = "interrupted" if signum == signal.SIGINT else f"stopped by {_name(signum)}"
        detail = one_line(exc) or interrupted
        print(f"{prog}: {stopped}{'; ' + detail if detail else ''}", file=sys.stderr)
        return 128 + signum
    except UsageError as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except (MLPError, BackendUnavailable) as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except MemoryError as exc:  # NumPy's and CuPy's (OutOfMemoryError) alike
        detail = one_line(exc) or "an allocation failed"
        hint = f"; {out_of_memory}" if out_of_memory else ""
        print(f"{prog}: error: out of memory: {detail}{hint}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


class _ReaderGone(Exception):
    """The standard output's reader closed it (a pipe into ``head``)."""


class _Output:
    """A command's standard output: a write that fails is one line (``CannotWrite``: a full
    disk) or a quiet end (``_ReaderGone``: a closed pipe), not a traceback from a print."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._guarded(self._stream.write, text)

    def flush(self) -> None:
        self._guarded(self._stream.flush)

    def _guarded(self, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except OSError as exc:
            self._to_nowhere()  # what is still buffered goes nowhere at exit, without a word
            if isinstance(exc, BrokenPipeError):
                raise _ReaderGone() from None
            raise CannotWrite(f"cannot write the standard output: {exc.strerror or exc}") from None

    def _to_nowhere(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):  # no descriptor: a test's
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding: the stream's own
        return getattr(self._stream, name)


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
