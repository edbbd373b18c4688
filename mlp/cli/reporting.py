"""What a training run leaves behind: a JSON-lines log and a plot (its progress bar is the
library's, ``mlp/progress.py``). matplotlib is imported only when used."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from backends.errors import install_hint

from ..errors import InvalidArgument, MLPError
from ..files import atomic_write, cannot_write

PLOT_EXTRA = f"{install_hint('plot')} (or pip install matplotlib)"


def _whole_lines(path: Path) -> bytes:
    """A log's text up to its last whole line, any line after it (left half-written by a
    full disk or a kill mid-write) cut off the file, so that what is appended starts a line
    of its own; empty where there is no log to read."""
    try:
        text = path.read_bytes()
    except OSError:
        return b""
    whole = text[: text.rfind(b"\n") + 1]
    if whole != text:
        try:
            os.truncate(path, len(whole))
        except OSError as exc:
            raise cannot_write(path, exc) from None
    return whole


def _last_epoch(text: bytes) -> int | None:
    """The epoch of a log's last record: 0 where the log is empty, None where its last line
    is no record of ours (another file: nothing is caught up into it)."""
    lines = [line for line in text.split(b"\n") if line.strip()]
    if not lines:
        return 0
    try:
        return int(json.loads(lines[-1])["epoch"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, OverflowError):
        return None


class PlotUnavailable(MLPError, RuntimeError):
    """``--plot`` was asked for but matplotlib is not installed."""


class MetricsLog:
    """``--log metrics.jsonl``: one JSON object per epoch, flushed as it is written.

    A fresh run replaces the file, a resumed run appends, so the log covers the whole run:
    first (``catch_up``) the records of ``history`` (the checkpoint's) past the log's last
    whole line, which a stop between a checkpoint and its line left out (all of them where
    there is no log yet), each with the ``trainer`` fields (``device``, ``precision``,
    ``world_size``) it holds (a record without them, this run's). A fresh run's file is
    opened at the first epoch's record, so a run that fails before it (a mistake, a diverged
    first epoch) leaves an earlier log as it was.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        trainer: dict[str, Any],
        append: bool = False,
        watched: str = "test",
        history: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.watched = watched  # what the val_* metrics were measured on: test or val
        self.path = Path(path)
        # this run's (``device``, ``precision``, ``world_size``): a record without them gets these
        self.trainer = trainer
        self._mode = "a" if append else "w"
        self._owed: list[dict[str, Any]] | None = list(history) if append else None
        self._file: IO[str] | None = None

    def write(self, record: dict[str, Any]) -> None:
        self.catch_up()
        self._write(record)

    def catch_up(self) -> None:
        """Once, appending: the checkpoint's records that the log lacks (also where the
        run trains nothing more: called as it ends)."""
        if self._owed is None:
            return
        owed, self._owed = self._owed, None
        logged = _last_epoch(_whole_lines(self.path))
        for earlier in owed if logged is not None else ():
            if earlier["epoch"] > logged:
                self._write(earlier)

    def _write(self, record: dict[str, Any]) -> None:
        line = {
            "epoch": record["epoch"],
            "seconds": round(record["seconds"], 6),
            "train_loss": _finite_or_none(record.get("loss")),
            "train_accuracy": _finite_or_none(record.get("accuracy")),
            f"{self.watched}_loss": _finite_or_none(record.get("val_loss")),
            f"{self.watched}_accuracy": _finite_or_none(record.get("val_accuracy")),
            **{key: record.get(key, mine) for key, mine in self.trainer.items()},
        }
        if "lr" in record:  # with --lr-schedule
            line["lr"] = record["lr"]
        try:
            if self._file is None:
                self._file = self.path.open(self._mode, encoding="utf-8")
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()
        except OSError as exc:
            raise cannot_write(self.path, exc) from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def check_plot_available(path: str | os.PathLike | None = None) -> str:
    """Before training, not after it: matplotlib is there (else ``PlotUnavailable``) and
    ``path``'s suffix names a format it writes (else ``InvalidArgument``). Returns it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(f"--plot needs matplotlib: {PLOT_EXTRA}") from None
    if path is None:
        return "png"
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise InvalidArgument(
            f"{path}: the suffix names the image format; use one of "
            + ", ".join(f".{f}" for f in sorted(formats))
        )
    return suffix


def plot_history(
    history: list[dict[str, Any]], path: str | os.PathLike, title: str = "", watched: str = "test"
) -> Path:
    """Draw loss and accuracy per epoch, train and ``watched`` (what the ``val_`` records
    were measured on: the test set, or the held-out ``val`` images), into an image file.

    Uses matplotlib's object API with the Agg canvas: no window, no global pyplot state.
    """
    image_format = check_plot_available(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    panels = ((loss_ax, "loss", "cross-entropy loss"), (acc_ax, "accuracy", "accuracy"))
    for ax, key, ylabel in panels:
        ax.plot(epochs, [r[key] for r in history], marker="o", label="train")
        if any(f"val_{key}" in r for r in history):
            measured = [r.get(f"val_{key}", math.nan) for r in history]
            ax.plot(epochs, measured, marker="o", label=watched)
        ax.set(xlabel="epoch", ylabel=ylabel, title=key)
        ax.legend()
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    atomic_write(path, lambda file: fig.savefig(file, format=image_format))
    return path


def _finite_or_none(value: Any) -> float | None:
    """JSON has no NaN: a missing or non-finite metric is ``null``."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
