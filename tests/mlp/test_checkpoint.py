"""Checkpoints: exact round trips, any device to any device, no pickle, atomic writes that
survive SIGKILL, and one clear error (naming the file) for anything unusable."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends import BackendUnavailable, get_backend
from mlp import MLP, SGD, Adam, AdamW
from mlp.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from mlp.errors import CannotWrite, InvalidArgument
from mlp.files import atomic_write
from tests.helpers import ROOT, backend_or_skip, peak_allocation

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def toy_data(n=256, features=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features)).astype(np.float32)
    y = (X[:, :classes].argmax(axis=1)).astype(np.int64)
    return X, y


def trained_model(device="cpu", optimizer=None, epochs=2, **kwargs):
    X, y = toy_data()
    model = MLP([12, 16, 4], device=device, seed=3, **kwargs)
    model.fit(X, y, epochs=epochs, batch_size=32, optimizer=optimizer or Adam(lr=1e-2))
    return model


def assert_same_weights(a: MLP, b: MLP) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


def rewrite(path: Path, change) -> None:
    """Load every array of a checkpoint, let ``change`` edit the dict, write it back."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    np.savez(path, **arrays)


def edit_meta(path: Path, change) -> None:
    def edit(arrays):
        meta = json.loads(arrays["__meta__"].tobytes())
        change(meta)
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)

    rewrite(path, edit)


# ----------------------------------------------------------------------------- never pickle
class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["MLP_TEST_MARKER"]),))


_SAVER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import mlp.files as ckpt
    from mlp import MLP

    path, slow = sys.argv[1], sys.argv[2] == "slow"
    model = MLP([784, 1024, 512, 10], seed=0)  # ~1.3 M parameters: ~5 MB per save
    model.save(path, epoch=0)
    if slow:  # every write of the temporary file takes a while: a kill lands mid-write
        real_open = ckpt._open_temp

        class Slow:
            def __init__(self, f):
                self.f = f
            def write(self, data):
                time.sleep(0.02)
                return self.f.write(data)
            def __getattr__(self, name):
                return getattr(self.f, name)
            def __enter__(self):
                return self
            def __exit__(self, *exc):
                return self.f.__exit__(*exc)

        ckpt._open_temp = lambda fd: Slow(real_open(fd))
    print("ready", flush=True)
    epoch = 0
    while True:
        epoch += 1
        model.save(path, epoch=epoch)
    """
)


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize(
    "optimizer",
    [Adam(lr=1e-2), AdamW(lr=1e-2), SGD(lr=0.1, momentum=0.9, nesterov=True), SGD(lr=0.1)],
    ids=repr,
)
def test_round_trip_is_exact(tmp_path, optimizer):
    model = trained_model(optimizer=optimizer, dropout=0.25)
    history = [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.5} for e in (1, 2)]
    path = model.save(tmp_path / "run.npz", epoch=2, history=history)
    loaded = MLP.load(path)
    assert loaded.config() == model.config()
    assert_same_weights(loaded, model)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.hyperparameters() == model.optimizer.hyperparameters()
    assert loaded.optimizer.steps == model.optimizer.steps > 0
    for name, value in model.optimizer.state_dict().items():
        if name != "steps":
            np.testing.assert_array_equal(loaded.optimizer.state_dict()[name], value)
    ckpt = load_checkpoint(path)
    assert ckpt.epoch == 2 and ckpt.seed == 3
    assert ckpt.meta["format_version"] == FORMAT_VERSION
    assert ckpt.history == history


def test_untrained_model_saves_without_optimizer(tmp_path):
    model = MLP([5, 3], activation="tanh", dtype="float64", seed=9)
    loaded = MLP.load(model.save(tmp_path / "m.npz"))
    assert loaded.optimizer is None
    assert loaded.dtype == np.float64 and loaded.activation == "tanh"
    assert_same_weights(loaded, model)


def test_loaded_model_continues_training_like_the_original(tmp_path):
    """The optimizer state comes back too: one more epoch gives the same weights."""
    X, y = toy_data()
    model = trained_model()
    loaded = MLP.load(model.save(tmp_path / "run.npz"))
    model.fit(X, y, epochs=3, batch_size=32, initial_epoch=2)
    loaded.fit(X, y, epochs=3, batch_size=32, initial_epoch=2, seed=3)
    assert_same_weights(loaded, model)


@pytest.mark.parametrize("save_on", DEVICES)
@pytest.mark.parametrize("load_on", DEVICES)
def test_saved_on_one_device_loads_on_another(tmp_path, save_on, load_on):
    backend_or_skip(save_on)
    backend_or_skip(load_on)
    model = trained_model(device=save_on)
    path = model.save(tmp_path / "run.npz")
    assert load_checkpoint(path).meta["saved_on"] == model.device
    loaded = MLP.load(path, device=load_on)
    assert loaded.device == get_backend(load_on).device
    assert_same_weights(loaded, model)  # host copies: bit for bit, whatever the devices
    X, _ = toy_data(seed=1)
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), atol=1e-5)
    assert loaded.optimizer.backend is loaded.backend


def test_load_on_unavailable_device_says_so(tmp_path):
    try:
        get_backend("cuda")
    except BackendUnavailable:
        pass
    else:
        pytest.skip("a GPU is available here")
    path = trained_model().save(tmp_path / "run.npz")
    with pytest.raises(BackendUnavailable, match=r"cuda|CUDA|CuPy"):
        MLP.load(path, device="cuda")


def test_loading_never_unpickles(tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    monkeypatch.setenv("MLP_TEST_MARKER", str(marker))
    path = trained_model().save(tmp_path / "run.npz")
    rewrite(path, lambda a: a.update(evil=np.array([_Boom()], dtype=object)))
    with pytest.raises(CheckpointError, match=r"an entry \['evil'\] that no mlp checkpoint"):
        MLP.load(path)  # an entry no checkpoint has: refused before it is read

    path = trained_model().save(tmp_path / "run.npz")
    rewrite(path, lambda a: a.update({"param.0.bias": np.array([_Boom()] * 16, dtype=object)}))
    with pytest.raises(CheckpointError, match="pickled") as info:
        MLP.load(path)  # where a weight should be: its header says so, and nothing is read
    assert str(path) in str(info.value)
    assert not marker.exists()


# ----------------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file") as info:
        load_checkpoint(tmp_path / "nope.npz")
    assert str(tmp_path / "nope.npz") in str(info.value)


def test_a_pipe_is_refused_unopened(tmp_path):
    """Opened, a pipe would wait for a writer for ever (mlp-eval, --resume, mlp-predict hung)."""
    os.mkfifo(tmp_path / "run.npz")
    with pytest.raises(CheckpointError, match=r"run\.npz: not a regular file \(a pipe"):
        load_checkpoint(tmp_path / "run.npz")


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file(tmp_path, fraction):
    path = trained_model().save(tmp_path / "run.npz")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_corrupt_bytes_in_an_array(tmp_path):
    """A flipped byte inside the weights fails the zip CRC check: caught, not loaded."""
    path = trained_model().save(tmp_path / "run.npz")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("param.0.weight.npy")
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not an mlp checkpoint"):
        load_checkpoint(text)
    plain = tmp_path / "plain.npz"
    np.savez(plain, weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an mlp checkpoint"):
        load_checkpoint(plain)
    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(CheckpointError, match="not an mlp checkpoint"):
        load_checkpoint(npy)
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path)
    two_bytes = tmp_path / "pk.npz"
    two_bytes.write_bytes(b"PK")  # a zip's first letters, but no zip
    with pytest.raises(CheckpointError, match=r"not an mlp checkpoint \(not an \.npz file\)"):
        load_checkpoint(two_bytes)


def test_a_long_checkpoint_name_still_saves(tmp_path):
    """The temporary file beside it takes only the name's start, so any name that may be
    written may be saved to (255 bytes is the usual limit)."""
    path = tmp_path / ("r" * 251 + ".npz")
    model = trained_model()
    model.save(path)
    assert load_checkpoint(path).epoch == model.epochs_trained > 0  # the epochs it trained
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_version_1_checkpoint_still_loads(tmp_path):
    model = trained_model()
    path = model.save(tmp_path / "run.npz")
    edit_meta(path, lambda m: m.update(format_version=1))
    assert_same_weights(MLP.load(path), model)


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (FORMAT_VERSION + 1, "format version 4, but this mlp reads versions 1, 2 and 3; upgrade"),
        (0, "format version 0, but this mlp reads versions 1, 2 and 3"),
        ("1", "format version '1'"),
    ],
)
def test_other_format_version(tmp_path, version, message):
    path = trained_model().save(tmp_path / "run.npz")
    edit_meta(path, lambda m: m.update(format_version=version))
    with pytest.raises(CheckpointError, match=message):
        MLP.load(path)


def test_corrupt_metadata(tmp_path):
    path = trained_model().save(tmp_path / "run.npz")
    rewrite(path, lambda a: a.update(__meta__=np.frombuffer(b"{not json", np.uint8)))
    with pytest.raises(CheckpointError, match="corrupt checkpoint metadata"):
        load_checkpoint(path)
    edit_meta_path = trained_model().save(tmp_path / "run2.npz")
    edit_meta(edit_meta_path, lambda m: m["model"].pop("sizes"))
    with pytest.raises(CheckpointError, match="incomplete checkpoint metadata"):
        load_checkpoint(edit_meta_path)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"best": (1, np.zeros(7))}, r"best weights must be the model's 276 flat .* shape \(7,\)"),
        ({"best": (5, None), "epoch": 2}, "best_epoch 5 is after its epoch 2"),
        ({"epoch": -1}, "epoch must be a whole number from 0, got -1"),
        ({"run": {"dataset": 5}}, "run.dataset is not a string"),
    ],
)
def test_a_save_that_its_load_would_refuse_is_refused(tmp_path, settings, problem):
    """Arguments that would make a file ``load_checkpoint`` refuses are an InvalidArgument
    at the save, and the checkpoint there stays (they wrote the file over it)."""
    model = trained_model()
    path = model.save(tmp_path / "run.npz", epoch=2)
    if "best" in settings and settings["best"][1] is None:
        settings = {**settings, "best": (5, model.backend.to_numpy(model.params))}
    with pytest.raises(InvalidArgument, match=f"^(cannot save this checkpoint: )?{problem}"):
        model.save(path, **settings)
    assert load_checkpoint(path).epoch == 2


@pytest.mark.parametrize("name", ["adam", "momentum"])
def test_a_loaded_model_goes_on_with_the_optimizer_named_again(tmp_path, name):
    """``fit(optimizer=name)`` after ``MLP.load`` goes on with the optimizer the file holds,
    as it does on the model that saved it (it made a fresh one: moments and count lost)."""
    rng = np.random.default_rng(1)
    X, y = rng.random((96, 20), dtype=np.float32), rng.integers(0, 3, 96)
    unbroken = MLP([20, 16, 3], seed=3)
    unbroken.fit(X, y, epochs=2, optimizer=name, batch_size=32)
    path = unbroken.save(tmp_path / "run.npz", epoch=2)
    unbroken.fit(X, y, epochs=1, optimizer=name, batch_size=32)
    loaded = MLP.load(path)
    loaded.fit(X, y, epochs=1, optimizer=name, batch_size=32)
    assert loaded.optimizer.steps == unbroken.optimizer.steps == 9
    for key, value in unbroken.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value)


def test_a_validation_loss_that_overflowed_is_saved_and_loaded(tmp_path):
    """Validation data a model overflows on (a NaN loss) while it trains well: the run's
    checkpoint loads (it was refused as corrupt, so the run could not be resumed)."""
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 5), dtype=np.float32), rng.integers(0, 3, 40)
    model = MLP([5, 4, 3], seed=0)
    with np.errstate(all="ignore"):  # the overflow is the point
        history = model.fit(
            X, y, epochs=2, validation_data=(np.full((8, 5), 3e38, np.float32), y[:8])
        )
    assert np.isnan(history[-1]["val_loss"]) and np.isfinite(history[-1]["loss"])
    loaded = load_checkpoint(model.save(tmp_path / "run.npz", epoch=2, history=history))
    assert (
        np.isnan(loaded.history[-1]["val_loss"])
        and loaded.history[-1]["loss"] == history[-1]["loss"]
    )


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda m: m.update(run=[1, 2]), "'run' is not an object"),
        (lambda m: m.update(history=5), "'history' is not a list"),
        (lambda m: m.update(history=["epoch 1"]), "history entry 0 is not an epoch's record"),
        (lambda m: m.update(history=[{"epoch": True}]), "history entry 0 is not an epoch's"),
        (
            lambda m: m.update(
                history=[{"epoch": 1, "loss": 0.5, "accuracy": 0.7}, {"epoch": 2, "loss": "low"}]
            ),
            "history entry 1 has a loss that is not a number",
        ),
    ],
)
def test_hand_edited_run_or_history_is_refused_on_load(tmp_path, edit, problem):
    """Read back on resume and plotted at the end: a bad one must fail at load, not later."""
    record = {"epoch": 1, "loss": 0.5, "accuracy": 0.75}
    path = trained_model().save(tmp_path / "run.npz", history=[record])
    assert load_checkpoint(path).history == [record]
    edit_meta(path, edit)
    with pytest.raises(CheckpointError, match=f"corrupt checkpoint metadata \\({problem}"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_configuration(tmp_path):
    path = trained_model().save(tmp_path / "run.npz")
    rewrite(path, lambda a: a.update({"param.0.weight": np.zeros((12, 15), np.float32)}))
    with pytest.raises(CheckpointError, match=r"weight 0.weight is float32\[12, 15\]"):
        load_checkpoint(path)
    rewrite(path, lambda a: a.pop("param.1.bias"))
    with pytest.raises(CheckpointError, match=r"missing \['1.bias'\]"):
        load_checkpoint(path)


def test_non_finite_weights(tmp_path):
    path = trained_model().save(tmp_path / "run.npz")

    def poison(arrays):
        arrays["param.1.weight"] = arrays["param.1.weight"].copy()
        arrays["param.1.weight"][0, 0] = np.nan

    rewrite(path, poison)
    with pytest.raises(CheckpointError, match="NaN or infinity"):
        load_checkpoint(path)


def test_optimizer_state_of_the_wrong_size(tmp_path):
    path = trained_model().save(tmp_path / "run.npz")
    rewrite(path, lambda a: a.update({"optim.m": np.zeros(7, np.float32)}))
    with pytest.raises(CheckpointError, match=r"optimizer state m is float32\[7\], but needs"):
        load_checkpoint(path)


def test_restoring_with_another_models_optimizer_changes_nothing(tmp_path):
    source = trained_model()
    path = source.save(tmp_path / "run.npz", optimizer=source.optimizer)
    other = MLP([12, 16, 4], seed=9)
    before = other.state_dict()
    with pytest.raises(ValueError, match="already trains another model"):
        load_checkpoint(path).restore(other, source.optimizer)
    for key, value in other.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_other_architecture_is_refused_and_nothing_is_loaded(tmp_path):
    path = trained_model().save(tmp_path / "run.npz")
    other = MLP([12, 16, 4], activation="tanh", seed=5)
    before = other.state_dict()
    with pytest.raises(CheckpointError, match="activation 'relu' in the file but 'tanh' here"):
        load_checkpoint(path).restore(other)
    for key, value in other.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    wider = MLP([12, 32, 4])
    with pytest.raises(CheckpointError, match=r"sizes \[12, 16, 4\] in the file but \[12, 32, 4\]"):
        load_checkpoint(path).restore(wider)
    with pytest.raises(CheckpointError, match="optimizer Adam in the file but SGD here"):
        load_checkpoint(path).restore(MLP([12, 16, 4], seed=3), SGD())


# ----------------------------------------------------------------------------- atomicity
def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = trained_model().save(tmp_path / "run.npz", epoch=1)

    def crash(f):
        f.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, crash)
    assert load_checkpoint(path).epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"]


def test_a_pipe_is_not_replaced_by_a_file(tmp_path):
    """Saving over a named pipe (or a device, /dev/null) is refused, and the pipe stays: the
    rename replaced it with a regular file."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    model = trained_model()
    for save in (lambda: model.save(pipe), lambda: atomic_write(pipe, lambda f: None)):
        with pytest.raises(CannotWrite, match=f"cannot write {pipe}: not a regular file"):
            save()
        assert pipe.is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_an_interrupt_mid_save_stays_the_interrupt(tmp_path, monkeypatch):
    """SIGTERM landing as ``np.savez`` opened a zip member (after zipfile marked a member
    open, before its writer existed) surfaced as zipfile's ValueError ("Can't close the ZIP
    file while there is an open writing handle"), with a traceback, instead of the interrupt
    the commands turn into one line (seen in CI, in the SIGTERM test of mlp-train)."""
    import zipfile

    model = trained_model()
    path = model.save(tmp_path / "run.npz", epoch=1)
    real_init = zipfile._ZipWriteFile.__init__
    opened = []

    def interrupted_at_the_second_member(self, *args, **kwargs):
        opened.append(1)
        if len(opened) == 2:
            raise KeyboardInterrupt  # where the signal's handler raised, in CI
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(zipfile._ZipWriteFile, "__init__", interrupted_at_the_second_member)
    with pytest.raises(KeyboardInterrupt):
        model.save(path, epoch=2)
    assert load_checkpoint(path).epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"]


@pytest.mark.parametrize("mode", ["slow", "fast"])
def test_sigkill_during_save_leaves_a_loadable_checkpoint(tmp_path, mode):
    """A process saving in a loop is killed with SIGKILL: the file still loads, every time."""
    path = tmp_path / "run.npz"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = np.random.default_rng(0)
    interrupted_writes = 0
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(path), mode], stdout=subprocess.PIPE, env=env
        )
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.05 + rng.uniform(0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        ckpt = load_checkpoint(path)  # never truncated, never half-written
        assert ckpt.config["sizes"] == [784, 1024, 512, 10]
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".run.npz.")]
        interrupted_writes += bool(leftovers)
        if mode == "slow":  # killed mid-write: its temporary file is incomplete, the target not
            for p in leftovers:
                broken = (zipfile.BadZipFile, ValueError, OSError, EOFError)
                with pytest.raises(broken), np.load(p, allow_pickle=False) as npz:
                    [npz[k] for k in npz.files]
        for p in leftovers:
            p.unlink()
    if mode == "slow":
        assert interrupted_writes == 3, "the kill should have landed mid-write each time"


# ----------------------------------------------------------------------------- hostile files
def add_member(
    path: Path,
    name: str,
    header: dict,
    data_bytes: int,
    chunk: bytes = b"\0",
    compression: int = zipfile.ZIP_DEFLATED,
) -> None:
    """Append a ``.npy`` member (deflated): ``header`` as its header, then ``data_bytes`` of
    ``chunk`` repeated, streamed (a large member costs the test no memory)."""
    with (
        zipfile.ZipFile(path, "a", compression=compression) as archive,
        archive.open(name, "w", force_zip64=True) as member,
    ):
        np.lib.format.write_array_header_1_0(member, header)
        block = chunk * (1 << 20)
        for start in range(0, data_bytes, len(block)):
            member.write(block[: data_bytes - start])


def test_an_entry_no_checkpoint_has_is_refused_before_it_is_read(tmp_path):
    """An extra 200 MB member (200 kB on disk): refused from the member list, unread."""
    path = trained_model().save(tmp_path / "run.npz")
    header = {"descr": "<f4", "fortran_order": False, "shape": (50_000_000,)}
    add_member(path, "bomb.npy", header, 200_000_000)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(CheckpointError, match=r"an entry \['bomb'\] that no mlp checkpoint"):
        load_checkpoint(path)
    assert peak_allocation(lambda: load_checkpoint(path), CheckpointError) < 5_000_000


def test_a_header_that_declares_a_huge_array_is_refused_before_any_allocation(tmp_path):
    """Shape (2**40,) where a 12×16 weight belongs: 8 TiB asked for, nothing allocated."""
    path = trained_model().save(tmp_path / "run.npz")
    rewrite(path, lambda a: a.pop("param.0.weight"))
    header = {"descr": "<f4", "fortran_order": False, "shape": (2**40,)}
    add_member(path, "param.0.weight.npy", header, 1000)
    with pytest.raises(CheckpointError, match=r"weight 0.weight is float32\[1099511627776\]"):
        load_checkpoint(path)
    assert peak_allocation(lambda: load_checkpoint(path), CheckpointError) < 5_000_000


def test_a_member_compressed_as_numpy_never_does_is_refused_unread(tmp_path):
    """bzip2 (79 bytes for 64 MB of zeros): zipfile would inflate it whole at the first read."""
    path = trained_model().save(tmp_path / "run.npz")
    rewrite(path, lambda a: a.pop("param.0.weight"))
    header = {"descr": "<f4", "fortran_order": False, "shape": (12, 16)}
    add_member(path, "param.0.weight.npy", header, 64 << 20, compression=zipfile.ZIP_BZIP2)
    with pytest.raises(CheckpointError, match=r"weight 0\.weight is compressed by method 12"):
        load_checkpoint(path)
    assert peak_allocation(lambda: load_checkpoint(path), CheckpointError) < 5_000_000


def test_early_stoppings_best_weights_round_trip_and_are_checked(tmp_path):
    model = trained_model()
    best = np.linspace(-1, 1, model.num_parameters, dtype=np.float32)
    path = save_checkpoint(tmp_path / "run.npz", model, best=(1, best))
    stored = load_checkpoint(path)
    assert stored.best[0] == 1 and stored.best[1].tobytes() == best.tobytes()
    assert load_checkpoint(model.save(tmp_path / "plain.npz")).best is None
    rewrite(path, lambda a: a.update({"best.params": np.full_like(best, np.nan)}))
    with pytest.raises(CheckpointError, match="NaN or infinity in epoch 1's best weights"):
        load_checkpoint(path)
    rewrite(path, lambda a: a.pop("best.params"))
    with pytest.raises(CheckpointError, match="names a best epoch, 1, without its weights"):
        load_checkpoint(path)


def test_an_entry_that_appears_twice_is_refused(tmp_path):
    """Appended, a second bias of zeros was what loaded (zip readers differ on which)."""
    path = trained_model().save(tmp_path / "run.npz")
    header = {"descr": "<f4", "fortran_order": False, "shape": (16,)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name"
        add_member(path, "param.0.bias.npy", header, 16 * 4)
    with pytest.raises(CheckpointError, match=r"run\.npz: an entry appears twice"):
        load_checkpoint(path)


def test_a_seed_an_int64_cannot_hold_is_refused_where_it_enters():
    with pytest.raises(ValueError, match=r"seed must be below 2\*\*63"):
        MLP([3, 2], seed=2**63)


def test_an_array_in_fortran_order_is_named_so(tmp_path):
    path = trained_model().save(tmp_path / "run.npz")
    rewrite(path, lambda a: a.update({"param.0.weight": np.asfortranarray(a["param.0.weight"])}))
    with pytest.raises(
        CheckpointError, match=r"in Fortran order, but needs float32\[12, 16\] in C"
    ):
        load_checkpoint(path)


def test_a_member_longer_than_its_header_says_is_refused(tmp_path):
    path = trained_model().save(tmp_path / "run.npz")
    rewrite(path, lambda a: a.pop("param.0.bias"))
    header = {"descr": "<f4", "fortran_order": False, "shape": (16,)}
    add_member(path, "param.0.bias.npy", header, 64 + 10_000_000)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    assert peak_allocation(lambda: load_checkpoint(path), CheckpointError) < 5_000_000


def test_metadata_larger_than_any_checkpoints_is_refused_unread(tmp_path):
    path = trained_model().save(tmp_path / "run.npz")
    rewrite(path, lambda a: a.pop("__meta__"))
    header = {"descr": "|u1", "fortran_order": False, "shape": (100_000_000,)}
    add_member(path, "__meta__.npy", header, 100_000_000, chunk=b" ")
    with pytest.raises(CheckpointError, match=r"metadata of 100,000,\d+ bytes"):
        load_checkpoint(path)


def nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda m: m.update(epoch=float("inf")), "epoch must be a whole number from 0"),
        (lambda m: m.update(epoch=-3), "epoch must be a whole number from 0, got -3"),
        (lambda m: m.update(epoch=0.5), "epoch must be a whole number from 0, got 0.5"),
        (lambda m: m.update(epoch=True), "epoch must be a whole number from 0, got True"),
        (lambda m: m["rng"].update(seed=float("inf")), "rng.seed must be a whole number"),
        (lambda m: m["model"].update(seed=float("inf")), "model.seed: seed must be a"),
        (lambda m: m["model"].update(dropout=10**400), "model.dropout: dropout probability"),
        (lambda m: m["model"].update(sizes=[12.0, 16, 4]), "model.sizes must be a list of"),
        (lambda m: m["model"].update(dtype=["float32"]), "model.dtype must be one of"),
        (lambda m: m["optimizer"]["hyperparameters"].update(lr=10**400), "learning rate must"),
        (lambda m: m["optimizer"].update(steps=2**63), "optimizer.steps must be a whole"),
        (lambda m: m["optimizer"].update(steps=True), "optimizer.steps must be a whole"),
        (lambda m: m["optimizer"].update(name=["Adam"]), r"unknown optimizer \['Adam'\]"),
        (lambda m: m["optimizer"].pop("steps"), "no optimizer.steps"),
        (
            lambda m: m["optimizer"].update(
                name="SGD", hyperparameters={"lr": 0.1, "momentum": 0.9, "nesterov": "false"}
            ),
            "optimizer.hyperparameters: nesterov must be True or False",
        ),
        (lambda m: m["optimizer"].update(made_of="sgd"), "made_of 'sgd' does not name a Adam"),
        (lambda m: m["optimizer"].update(made_of=["adam"]), r"made_of \['adam'\] does not"),
        (lambda m: m.update(history=[{"epoch": 1, "accuracy": 0.5}]), "entry 0 has no loss"),
        (
            lambda m: m.update(history=[{"epoch": 1, "loss": float("nan"), "accuracy": 0.5}]),
            "history entry 0 has a loss that is not a number",
        ),
        (lambda m: m["run"].update(dataset=["mnist"]), "run.dataset is not a string"),
        (lambda m: m["run"].update(data_dir=7), "run.data_dir is not a string"),
        (lambda m: m.update(best_epoch=0), "best_epoch must be a whole number from 1, got 0"),
        (lambda m: m.update(best_epoch=9), "best_epoch 9 is after its epoch 2"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_edited_metadata_is_checked_against_its_schema(tmp_path, edit, problem):
    """Every field a load or a resumed run reads, of the type and in the range it must be:
    one CheckpointError naming it, never an OverflowError or a TypeError, nor a pass."""
    path = trained_model().save(tmp_path / "run.npz", run={"dataset": "mnist"})
    edit_meta(path, edit)
    with pytest.raises(CheckpointError, match=problem):
        load_checkpoint(path)


def test_metadata_nested_too_deeply_is_one_error(tmp_path):
    path = trained_model().save(tmp_path / "run.npz")
    text = b'{"format": "mlp-checkpoint", "format_version": 1, "history": ' + nested(100_000)
    rewrite(path, lambda a: a.update(__meta__=np.frombuffer(text + b"}", np.uint8)))
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("v", -1.0, "optimizer state 'v' holds -1, but it cannot be negative"),
        ("v", np.nan, "optimizer state 'v' holds NaN or infinity"),
        ("m", np.inf, "optimizer state 'm' holds NaN or infinity"),
    ],
)
def test_corrupt_optimizer_state_is_refused_and_changes_nothing(tmp_path, name, value, problem):
    """A second moment of -1 or NaN resumed a run into nonsense (loss 1.09 → 4.96e8): refused
    at load, so no restore ever writes the model's weights first."""
    model = trained_model()
    path = model.save(tmp_path / "run.npz")

    def poison(arrays):
        arrays[f"optim.{name}"] = np.full_like(arrays[f"optim.{name}"], value)

    rewrite(path, poison)
    with pytest.raises(CheckpointError, match=problem):
        load_checkpoint(path)
    other = MLP([12, 16, 4], seed=8)
    before = other.state_dict()
    with pytest.raises(CheckpointError, match=problem):
        load_checkpoint(path).restore(other, Adam())
    assert_same_state(other.state_dict(), before)


def test_optimizer_state_of_another_dtype_is_refused(tmp_path):
    path = trained_model().save(tmp_path / "run.npz")
    rewrite(path, lambda a: a.update({"optim.m": a["optim.m"].astype(bool)}))
    with pytest.raises(
        CheckpointError, match=r"optimizer state m is bool\[276\], but needs float32"
    ):
        load_checkpoint(path)


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "run.npz"
    model = MLP([5, 4, 3], seed=1)
    model.fit(np.eye(5, dtype=np.float32), np.arange(5) % 3, epochs=1, batch_size=2)
    model.save(path, epoch=1, history=[{"epoch": 1, "loss": 1.0, "accuracy": 0.2}])
    return path.read_bytes()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_bit_flip_or_truncation_loads_or_is_one_checkpoint_error(
    small_checkpoint, tmp_path, data
):
    """Whatever bits are flipped (in the zip's records, the .npy headers, the JSON) or however
    the file is cut: a model, or a CheckpointError. No other exception, ever."""
    raw = bytearray(small_checkpoint)
    for _ in range(data.draw(st.integers(1, 3))):
        bit = data.draw(st.integers(0, 8 * len(raw) - 1))
        raw[bit // 8] ^= 1 << (bit % 8)
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(raw[:cut]) if cut is not None else bytes(raw))
    try:
        model = MLP.load(path)
    except CheckpointError:
        return
    assert model.predict(np.eye(5, dtype=np.float32)).shape == (5,)


def test_every_single_bit_flip_of_the_zip_records_is_one_error(small_checkpoint, tmp_path):
    """Each bit of every local and central record header, flipped alone (byte 78's first bit
    made mlp-eval print a 56-line traceback)."""
    with zipfile.ZipFile(io.BytesIO(small_checkpoint)) as archive:
        offsets = [info.header_offset for info in archive.infolist()]
    end = small_checkpoint.rfind(b"PK\x01\x02")
    regions = [range(o, o + 128) for o in offsets] + [range(end - 200, len(small_checkpoint))]
    path = tmp_path / "flipped.npz"
    for region in regions:
        for byte in region:
            for bit in range(8):
                raw = bytearray(small_checkpoint)
                raw[byte] ^= 1 << bit
                path.write_bytes(bytes(raw))
                with contextlib.suppress(CheckpointError):
                    MLP.load(path)


def test_metadata_whose_header_declares_a_terabyte_allocates_nothing(tmp_path):
    """Any 1-D length may hold the metadata, so its header's shape must fit the entry (and
    the file) before anything is allocated: a 2 kB file asked for 1 TiB, a MemoryError."""
    path = trained_model().save(tmp_path / "run.npz")
    rewrite(path, lambda a: a.pop("__meta__"))
    header = {"descr": "|u1", "fortran_order": False, "shape": (2**40,)}
    add_member(path, "__meta__.npy", header, 100, chunk=b"{")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    assert peak_allocation(lambda: load_checkpoint(path), CheckpointError) < 5_000_000
    from mlp.checkpoint_reader import stored_epoch

    assert stored_epoch(path) is None  # what a stopped run reads back: nothing, no error


def test_last_weights_go_beside_the_best_and_are_checked(tmp_path):
    """A run that ended on its best epoch's weights keeps its last epoch's beside them; a
    file that says so without them is refused, and last weights alone are a mistake."""
    model = trained_model()
    flat = model.backend.to_numpy(model.params).copy()
    path = save_checkpoint(tmp_path / "run.npz", model, epoch=2, best=(1, flat), last=flat * 2)
    read = load_checkpoint(path)
    assert read.meta["ended_on_best"] is True
    np.testing.assert_array_equal(read.last, flat * 2)
    assert_same_weights(MLP.load(path), model)  # the model is the file's params
    with pytest.raises(InvalidArgument, match="give best"):
        save_checkpoint(tmp_path / "alone.npz", model, last=flat)
    plain = save_checkpoint(tmp_path / "plain.npz", model, epoch=2, best=(1, flat))
    assert load_checkpoint(plain).last is None
    edit_meta(plain, lambda m: m.update(ended_on_best=True))
    with pytest.raises(CheckpointError, match="without its last ones"):
        load_checkpoint(plain)
