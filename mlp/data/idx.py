"""The IDX format of MNIST-family files: reading (plain or gzipped) and writing.

An IDX file is a 4-byte magic number (two zero bytes, a type byte, the number of
dimensions), one big-endian uint32 per dimension, then the values, big-endian, row-major.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from ..errors import DataError, InvalidArgument
from ..files import atomic_write

# IDX type byte → NumPy dtype (multi-byte values are big-endian).
_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


#: The most a gzip stream inflates: deflate codes at most 258 bytes in 2 bits (~1032:1).
GZIP_EXPANSION = 1032


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of one IDX file; any malformed input raises ``DataError``."""
    return _read(io.BytesIO(data), name, len(data), gzipped=False)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, plain or gzipped (told by its content, whatever its name); errors
    name the file. It reads no more than its header declares, and one byte more to tell
    trailing data, streaming through gzip: a header that lies costs no memory beyond what it
    declares, and a size its file could not hold is refused before anything is allocated."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            size = os.fstat(f.fileno()).st_size
            if not gzipped:
                return _read(f, str(path), size, gzipped=False)
            with gzip.GzipFile(fileobj=f) as stream:
                return _read(stream, str(path), size, gzipped=True)
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise DataError(f"{path}: cannot read ({exc})") from None


def _read(stream: IO[bytes], name: str, size: int, gzipped: bool) -> np.ndarray:
    """The array an IDX stream holds; ``size`` is what its file takes on disk."""
    magic = stream.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise DataError(f"{name}: not an IDX file (bad magic number)")
    dtype = _IDX_TYPES.get(magic[2])
    if dtype is None:
        raise DataError(f"{name}: not an IDX file (unknown type byte 0x{magic[2]:02x})")
    ndim = magic[3]
    dims = stream.read(4 * ndim)
    if ndim == 0 or len(dims) < 4 * ndim:
        raise DataError(f"{name}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
    expected = math.prod(shape) * dtype.itemsize
    header = 4 + 4 * ndim
    room = size * GZIP_EXPANSION if gzipped else size - header
    if expected > room:
        held = f"at most {room:,} (inflating {size:,} gzipped)" if gzipped else f"{room}"
        raise DataError(
            f"{name}: holds {held} bytes of data but its header {shape} needs {expected} "
            "(truncated or corrupt file)"
        )
    data = np.empty(expected, np.uint8)
    view, got = memoryview(data), 0
    while got < expected:
        count = stream.readinto(view[got:])
        if not count:
            raise DataError(
                f"{name}: holds {got} bytes of data but its header {shape} needs {expected} "
                "(truncated or corrupt file)"
            )
        got += count
    if stream.read(1):
        raise DataError(
            f"{name}: holds more than the {expected} bytes of data its header {shape} needs "
            "(truncated or corrupt file)"
        )
    try:
        values = data.view(dtype).reshape(shape)
    except ValueError as exc:  # more dimensions than NumPy supports: still name the file
        raise DataError(f"{name}: unsupported IDX array ({exc})") from None
    return values.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped when the name ends in ``.gz``), whole or not
    at all: an interrupted writer leaves the file as it was."""
    array = np.asarray(array)
    if array.ndim == 0:
        raise InvalidArgument("IDX stores arrays of one or more dimensions, got a scalar")
    codes = {dt.newbyteorder("="): code for code, dt in _IDX_TYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise InvalidArgument(f"IDX cannot store dtype {array.dtype}")
    if max(array.shape) >= 2**32:  # the header's sizes are 32-bit
        raise InvalidArgument(f"IDX sizes are below 2**32, got an array of shape {array.shape}")
    big_endian = array.astype(_IDX_TYPES[code], copy=False)
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + big_endian.tobytes()
    data = gzip.compress(payload, mtime=0) if Path(path).suffix == ".gz" else payload
    atomic_write(path, lambda file: file.write(data))
