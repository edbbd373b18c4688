"""The library's own errors, each raised on purpose with a message that says what to do.

Every one derives from ``MLPError`` and from the built-in error a caller would catch
(``ValueError``, ``OSError``, …). The commands (``mlp/cli``) turn these, and only these,
into one line; anything else that escapes is a bug, and keeps its traceback.
"""

from __future__ import annotations

import os
from pathlib import Path


class MLPError(Exception):
    """An error this library raised on purpose: a mistake in what it was given, or something
    it needs and cannot have (a file, a dataset, a device's memory)."""


class InvalidArgument(MLPError, ValueError):
    """A value given to the library is out of its range or of the wrong form."""


class WrongType(InvalidArgument, TypeError):
    """A value of the wrong type (text or ``None`` where a number goes): an
    ``InvalidArgument``, and the ``TypeError`` Python itself would raise."""


class DataError(MLPError, ValueError):
    """A dataset file, or data handed to ``fit``, that cannot be used as it is."""


class DatasetNotFound(MLPError, FileNotFoundError):
    """No folder holds all four files of the dataset."""


class DownloadError(MLPError, RuntimeError):
    """No mirror delivered a file with the pinned digest (or downloading is impossible here)."""


class CheckpointError(MLPError, ValueError):
    """A checkpoint that cannot be used: unreadable, corrupt, of another format or model."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


class TrainingDiverged(MLPError, RuntimeError):
    """The training loss (or, after the epoch's last step, a weight) became NaN or infinite."""

    def __init__(self, epoch: int, loss: float, what: str = "the loss") -> None:
        shown = loss if what == "the loss" else "NaN or infinite"
        super().__init__(
            f"training diverged: {what} became {shown} in epoch {epoch}; "
            "lower the learning rate or check the inputs"
        )
        self.epoch = epoch
        self.loss = loss


class ModelBusy(MLPError, RuntimeError):
    """Another thread is changing the model (``fit``, ``to``, ``load_state_dict`` or
    ``loss_and_gradients``): two such calls at once would corrupt each other."""


class CannotWrite(MLPError, OSError):
    """A file could not be written (a full disk, a folder without permission); the message
    names the file meant, never a temporary one."""


class MissingExtra(MLPError, ImportError):
    """An optional dependency a call needs is not installed: the message names the extra
    that brings it (``mlp/extras.py``)."""
