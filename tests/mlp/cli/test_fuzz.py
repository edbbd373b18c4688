"""Fuzzing the command line's data path: whatever bytes a dataset file holds, mlp-train
trains or exits 1 with one line. Never a traceback."""

from __future__ import annotations

import contextlib
import gzip
import io
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlp.cli import train
from mlp.data import SPLITS
from tests.helpers import one_line, train_on

TEST_LABELS = SPLITS["test"][1]


@st.composite
def idx_labels(draw):
    """A well-formed IDX header of any type and shape, then an exact or wrong-sized payload."""
    import numpy as np

    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]))
    itemsize = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}[code]
    shape = draw(st.lists(st.sampled_from([0, 1, 2, 99, 100, 101]), min_size=1, max_size=2))
    size = int(np.prod(shape)) * itemsize
    size = draw(st.sampled_from([size, max(0, size - 1), size + 3]))
    payload = draw(st.binary(min_size=size, max_size=size))
    return bytes([0, 0, code, len(shape)]) + np.asarray(shape, ">u4").tobytes() + payload


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=st.one_of(st.binary(max_size=300), idx_labels()), compress=st.booleans())
def test_any_labels_file_gives_a_result_or_one_line(good, tmp_path_factory, raw, compress):
    """Whatever bytes the labels file holds: exit 0, or exit 1 with one line. Never a crash."""
    folder = Path(shutil.copytree(good, tmp_path_factory.mktemp("fuzz") / "data"))
    (folder / f"{TEST_LABELS}.gz").unlink()
    (folder / TEST_LABELS).write_bytes(gzip.compress(raw) if compress else raw)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = train.main([str(a) for a in train_on(folder, "--quiet")])
    assert code in (0, 1)
    if code == 1:
        assert str(folder) in one_line(err.getvalue()) or "labels" in err.getvalue()
