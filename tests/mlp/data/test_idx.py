"""IDX files: reading and writing every type, gzip by content, and malformed bytes (fuzzed)
refused with an error naming the file."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlp.data import (
    parse_idx,
    read_idx,
    write_idx,
)
from mlp.errors import InvalidArgument
from tests.helpers import peak_allocation

NATIVE_DTYPES = ["u1", "i1", "i2", "i4", "f4", "f8"]


# ---------------------------------------------------------------------- malformed files
def _valid_bytes(array=None):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) if array is None else array
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.tobytes()


@st.composite
def idx_like(draw):
    """A valid header (sometimes), then a payload that is sometimes exactly the right size."""
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x0A, 0xFF]))
    ndim = draw(st.integers(0, 5) | st.sampled_from([64, 65, 255]))
    small = st.integers(0, 4)
    huge = st.sampled_from([2**31, 2**32 - 1, 65536])
    dims = draw(st.lists(small | huge if ndim <= 5 else st.just(1), min_size=ndim, max_size=ndim))
    header = bytes([0, 0, code, ndim]) + b"".join(struct.pack(">I", d) for d in dims)
    itemsize = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}.get(code, 1)
    exact = int(np.prod(dims, dtype=object)) * itemsize if dims else 0
    if exact <= 4096 and draw(st.booleans()):
        payload = draw(st.binary(min_size=exact, max_size=exact))
    else:
        payload = draw(st.binary(max_size=300))
    cut = draw(st.integers(0, 8))
    return (header + payload)[: len(header) + len(payload) - (cut if draw(st.booleans()) else 0)]


def _reencode(array, code):
    dtype = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(dtype).tobytes()


# ---------------------------------------------------------------------- IDX round trip
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", NATIVE_DTYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 5, 6), (0, 28, 28)])
def test_idx_round_trip(tmp_path, dtype, suffix, shape):
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        array = rng.standard_normal(shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    path = tmp_path / f"data-idx{len(shape)}{suffix}"
    write_idx(path, array)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)  # native byte order, same kind and size
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)


def test_idx_header_layout(tmp_path):
    """The header is the published one: two zero bytes, type, ndim, then big-endian sizes."""
    path = tmp_path / "labels"
    write_idx(path, np.arange(3, dtype=np.int32))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0C, 1])
    assert struct.unpack(">I", raw[4:8]) == (3,)
    assert raw[8:] == struct.pack(">3i", 0, 1, 2)


def test_a_size_the_header_cannot_hold_is_refused(tmp_path):
    """A dimension of 2**32 (an empty array may have one) is one InvalidArgument, and nothing
    is written (it was NumPy's OverflowError)."""
    with pytest.raises(InvalidArgument, match=r"IDX sizes are below 2\*\*32, .* \(4294967296, 0\)"):
        write_idx(tmp_path / "x", np.empty((2**32, 0), np.uint8))
    assert not list(tmp_path.iterdir())


def test_big_endian_input_is_written_like_native(tmp_path):
    values = np.array([1.5, -2.25, 1e10])
    write_idx(tmp_path / "a", values)
    write_idx(tmp_path / "b", values.astype(">f8"))
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), values)


def test_gzip_detected_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "x.gz", array)
    renamed = tmp_path / "x-without-suffix"
    renamed.write_bytes((tmp_path / "x.gz").read_bytes())
    np.testing.assert_array_equal(read_idx(renamed), array)


@pytest.mark.parametrize("dtype", ["i8", "u2", "bool", "c8", "f2"])
def test_write_idx_rejects_unstorable_dtypes(tmp_path, dtype):
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=dtype))


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic"),
        (b"\x00\x01\x08\x01\x00\x00\x00\x01\x05", "magic"),
        (b"PK\x03\x04 this is a zip file", "magic"),
        (b"", "magic"),
        (b"\x00\x00", "magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type byte 0x07"),
        (b"\x00\x00\xff\x01\x00\x00\x00\x01\x05", "type byte 0xff"),
        (b"\x00\x00\x08\x00", "header"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", "header"),
        (_valid_bytes()[:-1], "truncated"),
        (_valid_bytes()[:20], "truncated"),
        (_valid_bytes() + b"\x00", "truncated or corrupt"),
        (bytes([0, 0, 0x08, 65]) + struct.pack(">I", 1) * 65 + b"\x07", "unsupported"),
    ],
    ids=[
        "magic-1",
        "magic-2",
        "zip",
        "empty",
        "two-bytes",
        "type-07",
        "type-ff",
        "ndim-0",
        "short-header",
        "one-byte-short",
        "no-data",
        "trailing-byte",
        "65-dims",
    ],
)
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_malformed_idx_names_the_file(tmp_path, raw, problem, compress):
    path = tmp_path / ("broken-idx3-ubyte" + (".gz" if compress else ""))
    path.write_bytes(gzip.compress(raw) if compress else raw)
    with pytest.raises(ValueError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert problem in message


@pytest.mark.parametrize(
    "damage",
    [
        lambda gz: gz[: len(gz) // 2],
        lambda gz: gz[:-4],
        lambda gz: gz[:10] + bytes(b ^ 0xFF for b in gz[10:20]) + gz[20:],
        lambda gz: gz[:-8] + bytes(8),
        lambda gz: b"\x1f\x8b" + b"\x00" * 30,
    ],
    ids=["cut-in-half", "no-size", "flipped-bytes", "zeroed-trailer", "bare-magic"],
)
def test_broken_gzip_names_the_file(tmp_path, damage):
    good = tmp_path / "good.gz"
    write_idx(good, np.arange(300, dtype=np.uint8).reshape(10, 30) % 251)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(good.read_bytes()))
    with pytest.raises(ValueError) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


# ---------------------------------------------------------------------- property tests
@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.binary(max_size=200))
def test_parse_idx_arbitrary_bytes(data):
    try:
        result = parse_idx(data)
    except ValueError:
        return
    assert isinstance(result, np.ndarray)


@settings(
    max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(idx_like())
def test_parse_idx_deep(data):
    try:
        result = parse_idx(data, name="prop")
    except ValueError as exc:
        assert "prop" in str(exc)
        return
    assert isinstance(result, np.ndarray)
    assert result.ndim == data[3]
    assert result.dtype.isnative
    # a successful parse is exactly what write_idx would write back
    assert _reencode(result, data[2]) == data


def test_write_idx_refuses_a_scalar(tmp_path):
    """IDX has no 0-d arrays: writing one would leave a file read_idx rejects."""
    with pytest.raises(ValueError, match="one or more dimensions"):
        write_idx(tmp_path / "x-idx1-ubyte", np.array(5, np.uint8))
    assert not (tmp_path / "x-idx1-ubyte").exists()


# ----------------------------------------------------------------------------- bombs
def header(shape) -> bytes:
    return bytes([0, 0, 0x08, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def test_a_write_that_fails_leaves_the_old_file(tmp_path, monkeypatch):
    """A full disk (or a Ctrl-C) part-way leaves the file as it was, and nothing beside it."""
    path = tmp_path / "labels.gz"
    write_idx(path, np.arange(5, dtype=np.uint8))
    before = path.read_bytes()

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    with pytest.raises(OSError, match=r"cannot write .*labels\.gz: No space left on device"):
        write_idx(path, np.zeros(100, dtype=np.uint8))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["labels.gz"]


def test_a_gzip_that_inflates_far_past_its_header_is_refused_early(tmp_path):
    """10 images declared, 64 MB inflated (64 kB on disk): refused once the 7,841st byte of
    data is read, not after inflating it all."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(header((10, 28, 28)))
        for _ in range(64):
            f.write(bytes(1 << 20))
    assert path.stat().st_size < 200_000
    with pytest.raises(ValueError, match=r"holds more than the 7840 bytes of data its header"):
        read_idx(path)
    assert peak_allocation(lambda: read_idx(path), ValueError) < 1_000_000


def test_a_sparse_plain_file_far_past_its_header_is_refused_early(tmp_path):
    """A 3 GiB plain file (sparse: no disk) whose header declares 10 images."""
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(header((10, 28, 28)) + bytes(7840))
    with path.open("r+b") as f:
        f.truncate(3 << 30)
    with pytest.raises(ValueError, match="holds more than the 7840 bytes"):
        read_idx(path)
    assert peak_allocation(lambda: read_idx(path), ValueError) < 1_000_000


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_a_header_that_declares_more_than_its_file_could_hold_allocates_nothing(tmp_path, compress):
    """4 × 10⁹ images of 28×28 declared in a file of a few bytes: refused from the header."""
    raw = header((4_000_000_000, 28, 28)) + bytes(100)
    path = tmp_path / "labels-idx3-ubyte"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    with pytest.raises(ValueError, match=r"needs 3136000000000 \(truncated or corrupt file\)"):
        read_idx(path)
    assert peak_allocation(lambda: read_idx(path), ValueError) < 1_000_000
