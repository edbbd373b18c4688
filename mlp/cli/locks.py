"""One writer per file: a run holds an advisory lock on each file it writes, for its life.

Two runs given the same ``--save`` or ``--log`` would take turns replacing the checkpoint
and interleave their log lines. So beside each file the run writes is a lock file,
``.<name>.lock``, holding the PID of the run that owns it, locked with ``flock(2)``: the
kernel releases that lock when the process ends, however it ends, so a lock file a killed
run left behind locks nothing (the next run takes it over).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
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
    lock = path.parent / lock_name(path.name)
    while True:
        try:  # never through a link: a planted one would have its target truncated
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise CannotWrite(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            if _locked(fd, lock, path):
                return fd, lock
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the file was replaced while we waited for it: lock the new one


def _locked(fd: int, lock: Path, path: Path) -> bool:
    """Whether ``fd`` now holds the lock at ``lock``'s name (``False``: a holder that ended
    removed that file between our open and our lock, so it locks nothing any more)."""
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode):
        raise CannotWrite(f"cannot write {path}: {lock} is not a regular file")
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise FileInUse(
                f"{path} is being written by another run (PID {holder}): wait for it to end, "
                "or give this run other files"
            ) from None
    try:
        now = os.stat(lock, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
        return False
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as exc:
        raise CannotWrite(f"cannot write {path}: {exc.strerror or exc}") from None
    return True


def lock_name(name: str) -> str:
    """``.<name>.lock``, or, where that would pass a file name's 255 bytes, the name's start
    and a digest of all of it (two long names never share a lock)."""
    plain = f".{name}.lock"
    if len(plain.encode()) <= 255:
        return plain
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f".{name.encode()[:200].decode(errors='ignore')}-{digest}.lock"
