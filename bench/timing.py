"""Timing: synchronised wall-clock time, a watch on other work, and the epoch schedule.

On a shared machine another process can take the cores in the middle of an epoch and
double its time. ``/proc/stat`` counts the busy time of the whole machine (every process,
whatever its namespace, plus the hypervisor's steal); take away this process's own CPU
time and what is left is other work. An epoch during which other work used more than
``QUIET`` of the machine is *contended*: the schedule then runs extra epochs (up to
``max_extra``), and the median is taken over the quiet epochs only.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Largest share of the machine that other work may use during an epoch that counts as quiet.
QUIET = 0.10
#: ``/proc/stat`` counts in ticks of 10 ms: shorter epochs are not judged (``None``).
MIN_WATCH_SECONDS = 0.25


def timed(fn: Callable[[], Any], synchronize: Callable[[], None] = lambda: None) -> float:
    """Seconds that ``fn()`` takes, with the device synchronised before and after."""
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """Median, minimum and spread (max / min) of repeated timings."""
    values = [float(s) for s in seconds]
    return {
        "median_seconds": statistics.median(values),
        "min_seconds": min(values),
        "spread": max(values) / min(values) if min(values) > 0 else float("nan"),
    }


def _machine_busy() -> tuple[float, int] | None:
    """``(busy seconds of all CPUs, CPU count)`` from ``/proc/stat``; ``None`` elsewhere."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    fields = [int(v) for v in lines[0].split()[1:]]
    # user nice system idle iowait irq softirq steal: all but idle and iowait are busy
    busy = sum(fields[:3]) + sum(fields[5:8])
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return busy / os.sysconf("SC_CLK_TCK"), cpus


def _own_cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    except ImportError:
        return sum(os.times()[:2])


class OtherWork:
    """Share of the machine used by other processes between ``start()`` and ``stop()``."""

    def start(self) -> None:
        self._busy = _machine_busy()
        self._own = _own_cpu_seconds()
        self._wall = time.perf_counter()

    def own_seconds(self) -> float:
        """CPU seconds of the timed work since ``start()``: this process's (every process of
        an MPI world's, in ``bench.distributed.WorldWork``)."""
        return _own_cpu_seconds() - self._own

    def stop(self) -> float | None:
        busy, wall = _machine_busy(), time.perf_counter() - self._wall
        own = self.own_seconds()  # before any return: in a world, every process must ask
        if busy is None or self._busy is None or wall < MIN_WATCH_SECONDS:
            return None
        other = busy[0] - self._busy[0] - own
        return max(0.0, other / (wall * busy[1]))


@dataclass(frozen=True)
class Schedule:
    """Untimed warm-up epochs, then ``epochs`` quiet timed ones (``max_extra`` more at most)."""

    warmup: int = 1
    epochs: int = 3
    max_extra: int = 3


def run_epochs(
    run_epoch: Callable[[int], float], schedule: Schedule, watch: OtherWork | None = None
) -> dict[str, Any]:
    """Run epochs ``0, 1, …`` (``run_epoch(i)`` returns epoch ``i``'s seconds) as scheduled;
    ``watch`` judges each epoch quiet or not (``OtherWork()`` unless given).

    Returns every timed epoch's seconds and other-work share, and the median, minimum and
    spread over the quiet epochs (over all timed epochs, flagged, if too few were quiet).
    """
    warm = [run_epoch(i) for i in range(schedule.warmup)]
    seconds: list[float] = []
    other: list[float | None] = []
    watch = OtherWork() if watch is None else watch
    epoch = schedule.warmup
    while True:
        watch.start()
        seconds.append(run_epoch(epoch))
        other.append(watch.stop())
        epoch += 1
        quiet = [s for s, o in zip(seconds, other, strict=True) if o is None or o <= QUIET]
        if len(quiet) >= schedule.epochs or len(seconds) >= schedule.epochs + schedule.max_extra:
            break
    contended = len(quiet) < schedule.epochs
    return {
        "warmup_seconds": warm,
        "epoch_seconds": seconds,
        "other_work": other,
        "quiet_epochs": len(quiet),
        "contended": contended,
        **summarize(seconds if contended else quiet),
    }
