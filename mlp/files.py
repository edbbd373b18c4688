"""Writing a file so that nothing is lost: a reader sees the old file or the new one, never
half of one (checkpoints, plots, benchmark results all go through ``atomic_write``)."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .errors import CannotWrite


def cannot_write(path: str | os.PathLike, exc: OSError) -> CannotWrite:
    """The error to report: the file meant (not a temporary one) and the system's reason."""
    return CannotWrite(f"cannot write {path}: {exc.strerror or exc}")


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, rename it over ``path``
    (over the file a symbolic link names, not the link).

    On any error the temporary file is removed and ``path`` is as it was (after SIGKILL a
    ``.<name>.*.tmp`` may remain, harmless); a failing write or rename is a ``CannotWrite``
    (an ``OSError``) naming ``path``, so a full disk is one clear line; so is a ``path`` that
    is a pipe or a device, which a rename would replace with a file. An interrupt (Ctrl-C,
    or the commands' SIGTERM) stays the interrupt, though the writer's own clean-up fails
    under it (``np.savez``: zipfile cannot close with a member half written).
    """
    named, path = path, Path(os.path.realpath(path))  # through a symbolic link, to its file
    folder = path.parent
    if _special(path):
        raise CannotWrite(f"cannot write {named}: not a regular file (a pipe or a device)")
    # the name's start identifies a leftover; all of it could make the name too long
    tmp = folder / f".{path.name[:64]}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
        try:
            with _open_temp(fd) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            interrupt = _interrupt_under(exc)
            if interrupt is not None:
                raise interrupt from None
            raise
    except OSError as exc:
        raise cannot_write(named, exc) from None
    _fsync_folder(folder)


def _special(path: Path) -> bool:
    """Whether ``path`` is there and neither a file nor a folder (whose rename fails on its
    own); one that cannot be looked at fails at the write."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _interrupt_under(exc: BaseException) -> KeyboardInterrupt | None:
    """The interrupt that a later error was raised while handling, if any (not ``exc``)."""
    context = exc.__context__
    while context is not None and not isinstance(context, KeyboardInterrupt):
        context = context.__context__
    return None if isinstance(exc, KeyboardInterrupt) else context


def _open_temp(fd: int) -> IO[bytes]:
    """The temporary file as a binary file object (a seam for tests that slow writes down)."""
    return os.fdopen(fd, "wb")


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); not possible, nor needed, everywhere."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
