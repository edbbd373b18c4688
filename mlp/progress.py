"""What ``fit`` shows as it trains, from Python (``verbose=True``) and in ``mlp-train``: a
progress bar per epoch and a line per finished epoch.

tqdm is imported only when a bar is shown, so the library imports without it. The bar is
driven by ``fit``'s host-side ``on_batch`` hook: it never reads the device.
"""

from __future__ import annotations

import sys
from typing import IO, Any


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """One finished epoch in a line: its number, every metric it has, its time."""
    metrics = "  ".join(
        f"{key.replace('_', ' ')} {record[key]:.4f}"
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr")
        if key in record
    )
    return f"epoch {record['epoch']:>3}/{epochs}  {metrics}  {record['seconds']:.2f} s"


class EpochProgress:
    """One tqdm bar per epoch: samples done, samples/s, and the epoch's loss when it ends.

    Off (every method a no-op) when ``enabled`` is false, when ``stream`` is not a terminal
    (unless ``force``), or when tqdm is missing. ``first``: the number of the first epoch
    it shows (a resumed run's, or a second ``fit``'s, is not 1).
    """

    def __init__(
        self,
        samples: int,
        batch_size: int,
        epochs: int,
        stream: IO[str],
        enabled: bool = True,
        force: bool = False,
        first: int = 1,
    ) -> None:
        self.samples, self.batch_size, self.epochs = samples, batch_size, epochs
        self.stream = stream
        self._tqdm = _tqdm() if enabled and (force or is_terminal(stream)) else None
        self._bar: Any = None
        self._epoch = first - 1  # the last one ended
        self._last_loss: float | None = None

    @property
    def active(self) -> bool:
        return self._tqdm is not None

    def start(self, epoch: int) -> None:
        """Open the bar for ``epoch`` (1-based)."""
        if self._tqdm is None:
            return
        self.close()
        self._epoch = epoch
        last = "" if self._last_loss is None else f"last loss {self._last_loss:.4f}"
        # the running loss lives on the device: until the epoch ends, show the previous one
        self._bar = self._tqdm(
            total=self.samples,
            desc=f"epoch {epoch}/{self.epochs}",
            unit=" samples",
            unit_scale=True,
            file=self.stream,
            leave=False,
            dynamic_ncols=True,
            postfix=last or None,
        )

    def batch(self, step: int) -> None:
        """``fit``'s ``on_batch`` hook: batch ``step`` of the current epoch is done."""
        if self._tqdm is None:
            return
        if self._bar is None:
            self.start(self._epoch + 1)
        done = step * self.batch_size
        self._bar.update(min(self.batch_size, self.samples - done))

    def end(self, record: dict[str, Any]) -> None:
        """The epoch's record arrived: show its loss, then clear the bar."""
        self._epoch, self._last_loss = record["epoch"], record.get("loss")
        if self._bar is not None and self._last_loss is not None:
            self._bar.set_postfix_str(f"loss {self._last_loss:.4f}")
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Verbose:
    """``fit(verbose=True)``: the bar on stderr (a notebook shows it too) and the epoch's line
    on stdout."""

    def __init__(self, samples: int, batch_size: int, epochs: int, first: int = 1) -> None:
        self.epochs = epochs
        self.progress = EpochProgress(
            samples, batch_size, epochs, sys.stderr, force=True, first=first
        )

    def batch(self, step: int) -> None:
        self.progress.batch(step)

    def end(self, record: dict[str, Any]) -> None:
        """The epoch's bar closed, before ``fit``'s callback runs (and may print)."""
        self.progress.end(record)

    def line(self, record: dict[str, Any]) -> None:
        """The epoch's line, of the record as the callback left it."""
        print(epoch_line(record, self.epochs), flush=True)

    def close(self) -> None:
        self.progress.close()


def _tqdm() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm
