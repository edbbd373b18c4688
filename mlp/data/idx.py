"""The IDX format of MNIST-family files: reading (plain or gzipped) and writing.

An IDX file is a 4-byte magic number (two zero bytes, a type byte, the number of
dimensions), one big-endian uint32 per dimension, then the values, big-endian, row-major.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError, InvalidArgument

# IDX type byte → NumPy dtype (multi-byte values are big-endian).
_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of one IDX file; any malformed input raises ``DataError``."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{name}: not an IDX file (bad magic number)")
    dtype = _IDX_TYPES.get(data[2])
    if dtype is None:
        raise DataError(f"{name}: not an IDX file (unknown type byte 0x{data[2]:02x})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"{name}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{name}: holds {len(data) - header} bytes of data but its header {shape} "
            f"needs {expected} (truncated or corrupt file)"
        )
    try:
        values = np.frombuffer(data, dtype, offset=header).reshape(shape)
    except ValueError as exc:  # more dimensions than NumPy supports: still name the file
        raise DataError(f"{name}: unsupported IDX array ({exc})") from None
    return values.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, plain or ``.gz``; errors name the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the extension
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise DataError(f"{path}: cannot read ({exc})") from None
    return parse_idx(raw, str(path))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped when the name ends in ``.gz``)."""
    array = np.asarray(array)
    if array.ndim == 0:
        raise InvalidArgument("IDX stores arrays of one or more dimensions, got a scalar")
    codes = {dt.newbyteorder("="): code for code, dt in _IDX_TYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise InvalidArgument(f"IDX cannot store dtype {array.dtype}")
    big_endian = array.astype(_IDX_TYPES[code], copy=False)
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + big_endian.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(payload, mtime=0) if path.suffix == ".gz" else payload)
