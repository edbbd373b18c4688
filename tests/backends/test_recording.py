"""The CPU's recorded step: recording runs nothing, a replay repeats the bodies' work, what
a replay could not repeat refuses, and a recorded fit trains exactly as one run op by op."""

from __future__ import annotations

import inspect
import re
import threading

import numpy as np
import pytest

from backends import NumpyBackend, get_backend, recording
from backends.base import Backend
from backends.buffers import DeviceCounter
from mlp import MLP


@pytest.fixture(params=["numba", "numpy"])
def cpu(request) -> NumpyBackend:
    """The CPU backend with its Numba kernels (where installed) and without."""
    return get_backend("cpu") if request.param == "numba" else NumpyBackend(use_numba=False)


def _stand_ins(be: Backend) -> set[str]:
    return set(vars(be)) & set(recording.RECORDED + recording.REFUSED)


def test_recording_runs_nothing_and_each_replay_runs_the_step_once(cpu):
    counter = DeviceCounter(cpu, by=3)
    replay = cpu.capture(counter.advance)
    assert replay is not None, cpu.capture_failure
    assert counter.read() == 0  # recorded, not run
    replay()
    replay()
    assert counter.read() == 6
    assert len(replay) == 1 and not _stand_ins(cpu)


@pytest.mark.parametrize(
    ("step", "why"),
    [
        (lambda be, x: be.add(x, x), "add would allocate its result"),
        (lambda be, x: be.to_numpy(x), "to_numpy cannot be replayed"),
        (lambda be, x: be.argmax(x), "argmax cannot be replayed"),
        (lambda be, x: be.all_finite(x), "all_finite cannot be replayed"),
        (lambda be, x: be.zeros((2,)), "zeros cannot be replayed"),
        (lambda be, x: be.asarray(np.ones(2)), "asarray cannot be replayed"),
        (lambda be, x: be.dropout_mask(be.random_generator(0), 0.5, x), "dropout_mask"),
    ],
)
def test_what_a_replay_could_not_repeat_refuses_the_recording(cpu, step, why):
    x = cpu.asarray(np.ones((2, 3), np.float32))
    assert cpu.capture(lambda: step(cpu, x)) is None
    assert why in cpu.capture_failure
    assert not _stand_ins(cpu)  # the backend is as it was


def test_the_environment_turns_recording_off(cpu, monkeypatch):
    monkeypatch.setenv("MLP_NO_CPU_RECORDING", "1")
    assert cpu.capture(DeviceCounter(cpu).advance) is None
    assert cpu.capture_failure == "MLP_NO_CPU_RECORDING is set"


def test_a_failing_step_refuses_and_leaves_the_backend_as_it_was(cpu):
    def step() -> None:
        raise RuntimeError("in the step")

    assert cpu.capture(step) is None
    assert cpu.capture_failure == "RuntimeError: in the step"
    assert not _stand_ins(cpu)


def test_another_threads_ops_run_while_a_step_is_recorded(cpu):
    """Only the recording thread's calls are logged: another thread computing on the same
    backend (inference, say) gets its answers, and none of its work joins the recording."""
    a = cpu.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    seen = cpu.empty((2, 3), np.float32)
    counter = DeviceCounter(cpu)

    def step() -> None:
        counter.advance()
        other = threading.Thread(target=lambda: cpu.add(a, a, out=seen))
        other.start()
        other.join()

    replay = cpu.capture(step)
    np.testing.assert_array_equal(seen, 2 * a)
    assert len(replay) == 1 and counter.read() == 0


def test_a_recording_inside_a_recorded_step_is_refused_not_a_deadlock():
    """In its own process, so that a deadlock fails this test rather than hanging the rest."""
    import subprocess
    import sys

    code = (
        "from backends import get_backend\n"
        "from backends.buffers import DeviceCounter\n"
        "cpu = get_backend('cpu')\n"
        "counter = DeviceCounter(cpu)\n"
        "inner = []\n"
        "def step():\n"
        "    counter.advance()\n"
        "    inner.append((cpu.capture(counter.advance), cpu.capture_failure))\n"
        "replay = cpu.capture(step)\n"
        "(nested, why), = inner\n"
        "assert nested is None and 'is set on this backend instance' in why, why\n"
        "assert replay is not None and len(replay) == 1, cpu.capture_failure\n"
        "print('refused')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "refused", done.stderr


def test_every_body_a_public_op_calls_is_recorded_or_refused():
    """A body the list missed would run while a step is recorded, and not in its replays."""
    helpers = {"_scratch_cache", "_adopt"}  # a buffer cache, a DLPack import: no op bodies
    called = set()
    for name, method in inspect.getmembers(Backend, inspect.isfunction):
        if not name.startswith("_"):
            called |= set(re.findall(r"self\.(_[a-z]\w*)\(", inspect.getsource(method)))
    assert called, "no bodies found: the pattern no longer matches the source"
    assert called - helpers <= set(recording.RECORDED + recording.REFUSED)


def _data(rows: int = 150):
    rng = np.random.default_rng(1)
    X = rng.random((rows, 12), dtype=np.float32)
    return X, rng.integers(0, 4, rows), rng.random(rows).astype(np.float32) + 0.5


@pytest.mark.parametrize(
    "options",
    [
        {"optimizer": "adam"},
        {"optimizer": "momentum", "sample_weight": True},
        {"optimizer": "adamw", "validation_split": 0.2, "lr_schedule": "cosine"},
    ],
)
def test_a_recorded_fit_trains_exactly_as_one_op_by_op(cpu, monkeypatch, options):
    """Bitwise the same parameters and records, short last batches included (150 rows in
    batches of 32), with the step recorded (checked) and with every step run op by op."""
    X, y, weights = _data()
    options = {**options, "sample_weight": weights if options.get("sample_weight") else None}

    def train() -> tuple[np.ndarray, list]:
        model = MLP([12, 16, 8, 4], device=cpu, seed=3)
        history = model.fit(X, y, epochs=3, batch_size=32, **options)
        for record in history:
            record.pop("seconds")
        return cpu.to_numpy(model.params).copy(), history

    made = []
    capture = NumpyBackend.capture

    def spy(self, step, keep=()):
        made.append(capture(self, step, keep))
        return made[-1]

    monkeypatch.setattr(NumpyBackend, "capture", spy)
    recorded = train()
    assert made and None not in made, cpu.capture_failure  # full batches were replayed
    monkeypatch.setattr(NumpyBackend, "capture", lambda self, step, keep=(): None)
    np.testing.assert_array_equal(recorded[0], train()[0])
    assert recorded[1] == train()[1]
