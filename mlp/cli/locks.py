"""One writer per file: a run holds an advisory lock on each file it writes, for its life.

Two runs given the same ``--save`` or ``--log`` would take turns replacing the checkpoint
and interleave their log lines. So beside each file the run writes is a lock file,
``.<name>.lock``, holding the PID of the run that owns it, locked with ``flock(2)``: the
kernel releases that lock when the process ends, however it ends, so a lock file a killed
run left behind locks nothing (the next run takes it over).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import CannotWrite, MLPError

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks to take
    fcntl = None  # type: ignore[assignment]


class FileInUse(MLPError, RuntimeError):
    """Another run holds one of this run's files."""


@contextlib.contextmanager
def holding(paths: Iterable[Path]) -> Iterator[None]:
    """Lock each of ``paths`` for the enclosed work; one that another process holds raises
    ``FileInUse`` naming that process, before anything is written."""
    held: list[tuple[int, Path]] = []
    try:
        for path in dict.fromkeys(Path(os.path.realpath(p)) for p in paths):
            held.append(_lock(path))
        yield
    finally:
        for fd, lock in held:
            with contextlib.suppress(OSError):
                os.unlink(lock)
            os.close(fd)


def _lock(path: Path) -> tuple[int, Path]:
    lock = path.parent / f".{path.name[:200]}.lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise CannotWrite(f"cannot write {path}: {exc.strerror or exc}") from None
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FileInUse(
                f"{path} is being written by another run (PID {holder}): wait for it to end, "
                "or give this run other files"
            ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd, lock
