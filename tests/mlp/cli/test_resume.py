"""``--resume``: bitwise the weights of an unbroken run (after SIGKILL too), and a checkpoint
of another run, truncated or missing, refused with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backends import threads
from mlp.checkpoint import load_checkpoint
from mlp.cli import evaluate, train
from mlp.data.synthetic import write_dataset
from tests.helpers import ROOT, one_line, run, train_on


def same_checkpoints(a: Path, b: Path) -> None:
    """Bit-for-bit equal weights and optimizer state, same epoch and step count."""
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca.epoch == cb.epoch
    assert ca.meta["optimizer"] == cb.meta["optimizer"]
    for group in ("params", "optimizer_state"):
        ga, gb = getattr(ca, group), getattr(cb, group)
        assert ga.keys() == gb.keys()
        for key in ga:
            assert ga[key].dtype == gb[key].dtype
            assert ga[key].tobytes() == gb[key].tobytes(), f"{group} {key} differs"


# ----------------------------------------------------------------------------- resume
def interrupted_after(epoch: int, argv: list, capsys, monkeypatch) -> None:
    """Run ``argv`` as Ctrl-C would stop it, just after epoch ``epoch``'s checkpoint."""
    real_save = train.save_checkpoint

    def crash_after(path, *args, **kwargs):
        real_save(path, *args, **kwargs)
        if kwargs["epoch"] == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", crash_after)
    assert run(train.main, argv, capsys)[0] == 130
    monkeypatch.setattr(train, "save_checkpoint", real_save)


@pytest.mark.parametrize(
    "options",
    [
        ["--optimizer", "adam", "--dropout", "0.2"],
        ["--optimizer", "momentum", "--activation", "tanh", "--dtype", "float64"],
        ["--lr-schedule", "cosine", "--validation-split", "0.2"],
        ["--lr-schedule", "step", "--early-stopping", "5", "--lr", "0.003"],
    ],
)
def test_resume_ends_bitwise_equal_to_an_unbroken_run(tmp_path, base, capsys, monkeypatch, options):
    """The settings, a schedule's starting rate and a validation split included, come back
    from the checkpoint: --resume alone continues as if never stopped."""
    command = [*base, "--epochs", "4", "--batch-size", "64", "--seed", "7", *options]
    full, part = tmp_path / "full.npz", tmp_path / "part.npz"
    assert run(train.main, [*command, "--save", full], capsys)[0] == 0

    real_save = train.save_checkpoint

    def crash_after_epoch_2(path, *args, epoch, **kwargs):
        real_save(path, *args, epoch=epoch, **kwargs)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", crash_after_epoch_2)
    code, _, err = run(train.main, [*command, "--save", part], capsys)
    assert code == 130
    assert err == f"mlp-train: interrupted; {part} holds epoch 2: continue with --resume {part}\n"
    monkeypatch.setattr(train, "save_checkpoint", real_save)
    assert load_checkpoint(part).epoch == 2

    resumed = [*base, "--resume", part]  # the run's settings come from the checkpoint
    code, out, _ = run(train.main, resumed, capsys)
    assert code == 0
    assert f"resuming {part} after epoch 2 of 4" in out
    assert "epoch   1/4" not in out and "epoch   3/4" in out and "epoch   4/4" in out
    same_checkpoints(full, part)
    assert [r["epoch"] for r in load_checkpoint(part).history] == [1, 2, 3, 4]


@pytest.mark.parametrize("crash", [4, 5, 6], ids=["at its best", "after it", "at the stop"])
def test_resume_with_early_stopping_stops_where_an_unbroken_run_does(
    tmp_path, base, capsys, monkeypatch, crash
):
    """The unbroken run's best is epoch 4 and it stops after 6, ending on epoch 4's weights.
    Interrupted after epoch 4, 5 or 6, a resume judges the epochs again from the history,
    takes the best weights from the checkpoint, and ends the same, bit for bit."""
    command = [*base, "--epochs", "10", "--batch-size", "64", "--seed", "7", "--lr", "0.01",
               "--early-stopping", "2"]  # fmt: skip
    full, part = tmp_path / "full.npz", tmp_path / "part.npz"
    assert run(train.main, [*command, "--save", full], capsys)[0] == 0
    unbroken = load_checkpoint(full)
    assert unbroken.epoch == 6 and unbroken.best[0] == 4
    interrupted_after(crash, [*command, "--save", part], capsys, monkeypatch)
    code, out, _ = run(train.main, [*base, "--resume", part], capsys)
    assert code == 0 and "epoch   7/10" not in out  # it stops after 6, as the unbroken run
    same_checkpoints(full, part)
    resumed = load_checkpoint(part)
    assert resumed.best[0] == 4 and resumed.best[1].tobytes() == unbroken.best[1].tobytes()
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("crash", [7, 9, 11], ids=["before a fall", "at it", "after it"])
def test_resume_with_a_plateau_schedule_falls_where_an_unbroken_run_does(
    tmp_path, base, capsys, monkeypatch, crash
):
    """The unbroken run's rate falls after epochs 9 and 14. Resumed after epoch 7, 9 or 11,
    the schedule judges the records again and takes up the last one's rate: bit for bit."""
    command = [*base, "--epochs", "16", "--batch-size", "64", "--seed", "7", "--lr", "0.05",
               "--lr-schedule", "plateau"]  # fmt: skip
    full, part = tmp_path / "full.npz", tmp_path / "part.npz"
    assert run(train.main, [*command, "--save", full], capsys)[0] == 0
    rates = [record["lr"] for record in load_checkpoint(full).history]
    assert rates == [0.05] * 9 + [0.05 * 0.1] * 5 + [0.05 * 0.1 * 0.1] * 2
    interrupted_after(crash, [*command, "--save", part], capsys, monkeypatch)
    assert run(train.main, [*base, "--resume", part], capsys)[0] == 0
    same_checkpoints(full, part)
    assert [record["lr"] for record in load_checkpoint(part).history] == rates


def test_a_new_lr_on_resume_wins_over_a_plateau_schedules_last_rate(tmp_path, base, capsys):
    """The same command plus --resume takes up the rate the plateau had lowered to; a new
    --lr is the rate the run goes on at (it trained on at the old one, saying the new)."""
    command = [*base, "--epochs", "2", "--lr", "0.05", "--lr-schedule", "plateau"]
    path = tmp_path / "run.npz"
    assert run(train.main, [*command, "--save", path], capsys)[0] == 0
    code, out, _ = run(train.main, [*base, "--resume", path, "--epochs", "3", "--lr", "0.01"],
                       capsys)  # fmt: skip
    assert code == 0 and "lr=0.01" in out
    assert [record["lr"] for record in load_checkpoint(path).history] == [0.05, 0.05, 0.01]


def test_resume_goes_on_at_the_runs_precision(tmp_path, base, capsys, monkeypatch):
    """--precision is the run's: --resume alone went on in float32 after bf16 epochs."""
    command = [*base, "--epochs", "3", "--precision", "bf16"]
    full, part = tmp_path / "full.npz", tmp_path / "part.npz"
    assert run(train.main, [*command, "--save", full], capsys)[0] == 0
    interrupted_after(1, [*command, "--save", part], capsys, monkeypatch)
    code, out, _ = run(train.main, ["--resume", part], capsys)
    assert code == 0 and "bf16" in out
    same_checkpoints(full, part)
    assert load_checkpoint(part).run["precision"] == "bf16"


@pytest.mark.parametrize("killed", [False, True])
def test_a_run_that_ended_on_its_best_weights_goes_on_from_its_last(
    tmp_path, base, capsys, monkeypatch, killed
):
    """12 epochs end on an earlier epoch's weights (early stopping keeps the best): run on
    to 16, they go on from epoch 12's own and its momentum, bit for bit and record for
    record as an unbroken 16-epoch run. ``killed``: stopped between epoch 12's checkpoint
    and the one that puts the best weights in front, the run finished by --resume keeps
    epoch 12's beside them all the same."""
    command = [*base, "--lr", "0.05", "--optimizer", "momentum", "--early-stopping", "6",
               "--validation-split", "0.2"]  # fmt: skip
    full, part = tmp_path / "full.npz", tmp_path / "part.npz"
    assert run(train.main, [*command, "--epochs", "16", "--save", full], capsys)[0] == 0
    if killed:
        interrupted_after(12, [*command, "--epochs", "12", "--save", part], capsys, monkeypatch)
        assert load_checkpoint(part).last is None
        assert run(train.main, ["--resume", part], capsys)[0] == 0
    else:
        assert run(train.main, [*command, "--epochs", "12", "--save", part], capsys)[0] == 0
    ended = load_checkpoint(part)
    assert ended.meta["ended_on_best"] and ended.best[0] < 12 and ended.last is not None
    np.testing.assert_array_equal(ended.best[1], np.concatenate(
        [ended.params[k].ravel() for k in ended.params]))  # fmt: skip
    code, out, _ = run(train.main, ["--resume", part, "--epochs", "16"], capsys)
    assert code == 0, out
    same_checkpoints(full, part)
    unbroken, resumed = load_checkpoint(full), load_checkpoint(part)
    assert [{**r, "seconds": 0} for r in resumed.history] == [
        {**r, "seconds": 0} for r in unbroken.history]  # fmt: skip
    np.testing.assert_array_equal(resumed.last, unbroken.last)
    code, out, _ = run(evaluate.main, ["--checkpoint", part], capsys)
    assert f"(epoch 16, early stopping's best: epoch {resumed.best[0]})" in out


def test_resume_after_sigkill_mid_training(tmp_path, tmp_path_factory):
    """The real thing: kill the process with SIGKILL during training, rerun with --resume."""
    data = write_dataset(tmp_path_factory.mktemp("small"), n_train=600, n_test=100)
    command = [
        sys.executable,
        "-m",
        "mlp",
        "--data-dir",
        str(data),
        "--no-download",
        "--quiet",
        "--hidden",
        "16",
        "--epochs",
        "12",
        "--batch-size",
        "4",  # many short steps per epoch
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    full, crashed = tmp_path / "full.npz", tmp_path / "crashed.npz"
    subprocess.run([*command, "--save", str(full)], env=env, check=True, capture_output=True)

    proc = subprocess.Popen(
        [*command, "--save", str(crashed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not crashed.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = load_checkpoint(crashed).epoch
    if killed_at == 12:
        pytest.skip("the run finished before it could be killed (machine too fast)")

    rerun = subprocess.run(
        [*command, "--save", str(crashed), "--resume", str(crashed)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0, rerun.stderr
    same_checkpoints(full, crashed)


def test_resume_without_save_keeps_saving_into_the_same_file(tmp_path, base, capsys):
    saved = tmp_path / "run.npz"
    assert run(train.main, [*base, "--epochs", "1", "--save", saved], capsys)[0] == 0
    assert run(train.main, [*base, "--epochs", "2", "--resume", saved], capsys)[0] == 0
    assert load_checkpoint(saved).epoch == 2


def test_resume_of_a_finished_run_only_evaluates(tmp_path, base, capsys):
    saved, copy = tmp_path / "run.npz", tmp_path / "copy.npz"
    assert run(train.main, [*base, "--epochs", "2", "--save", saved], capsys)[0] == 0
    before = saved.read_bytes()
    argv = [*base, "--epochs", "2", "--resume", saved]
    code, out, _ = run(train.main, argv, capsys)
    assert code == 0 and "train loss" not in out
    assert out.splitlines()[-1].startswith("test accuracy: ")
    assert saved.read_bytes() == before  # untouched
    assert run(train.main, [*argv, "--save", copy], capsys)[0] == 0
    same_checkpoints(saved, copy)


# ----------------------------------------------------------------------------- checkpoints
def test_resume_from_a_missing_checkpoint(data, tmp_path, capsys):
    code, _, err = run(train.main, train_on(data, "--resume", tmp_path / "nope.npz"), capsys)
    assert code == 1
    assert one_line(err) == f"{tmp_path / 'nope.npz'}: no such checkpoint file"


def test_resume_from_a_truncated_checkpoint(data, checkpoint, capsys):
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    code, _, err = run(train.main, train_on(data, "--resume", checkpoint), capsys)
    assert code == 1
    assert one_line(err).startswith(f"{checkpoint}: truncated or corrupt checkpoint (")


def test_resume_with_another_architecture(data, checkpoint, capsys):
    argv = train_on(data, "--resume", checkpoint, "--epochs", "2")
    argv[argv.index("16")] = "24"
    code, _, err = run(train.main, argv, capsys)
    assert code == 1
    assert one_line(err) == f"{checkpoint}: is another run: --hidden 16 in the file but 24 here"


def test_resume_with_another_seed_or_optimizer(data, checkpoint, capsys):
    code, _, err = run(train.main, train_on(data, "--resume", checkpoint, "--seed", "5"), capsys)
    assert code == 1
    assert one_line(err) == f"{checkpoint}: is another run: --seed 0 in the file but 5 here"
    argv = train_on(data, "--resume", checkpoint, "--epochs", "2", "--optimizer", "sgd")
    code, _, err = run(train.main, argv, capsys)
    assert code == 1
    assert (
        one_line(err) == f"{checkpoint}: is another run: --optimizer adam in the file but sgd here"
    )
    argv = train_on(data, "--resume", checkpoint, "--validation-split", "0.2")
    code, _, err = run(train.main, argv, capsys)  # other rows would train, and be watched
    assert one_line(err) == (
        f"{checkpoint}: is another run: --validation-split 0.0 in the file but 0.2 here"
    )
    argv = train_on(data, "--resume", checkpoint, "--seed", "5", "--activation", "tanh")
    code, _, err = run(train.main, argv, capsys)
    assert one_line(err) == (  # every difference, in one line
        f"{checkpoint}: is another run: --activation relu in the file but tanh here; "
        "--seed 0 in the file but 5 here"
    )


@pytest.mark.parametrize(("saved", "resumed"), [("sgd", "momentum"), ("momentum", "sgd")])
def test_resume_sgd_with_and_without_momentum(data, tmp_path, capsys, saved, resumed):
    """The same class, other state: refused (it was a KeyError, or momentum silently lost)."""
    path = tmp_path / f"{saved}.npz"
    assert run(train.main, train_on(data, "--optimizer", saved, "--save", path), capsys)[0] == 0
    argv = train_on(data, "--optimizer", resumed, "--resume", path, "--epochs", "2")
    code, _, err = run(train.main, argv, capsys)
    assert code == 1
    assert one_line(err) == (
        f"{path}: is another run: --optimizer {saved} in the file but {resumed} here"
    )


def test_resume_takes_the_run_from_its_checkpoint(tmp_path, base, capsys):
    """Only --resume and --epochs typed again: the model, optimizer (its learning rate
    too), seed, batch size and dataset come from the file, bitwise as an unbroken run."""
    command = [
        *base, "--hidden", "24,12", "--activation", "tanh", "--dropout", "0.1",
        "--optimizer", "momentum", "--lr", "0.02", "--seed", "3", "--batch-size", "50",
        "--dtype", "float64",
    ]  # fmt: skip
    full, part = tmp_path / "full.npz", tmp_path / "part.npz"
    assert run(train.main, [*command, "--epochs", "3", "--save", full], capsys)[0] == 0
    assert run(train.main, [*command, "--epochs", "1", "--save", part], capsys)[0] == 0
    data_dir = base[base.index("--data-dir") + 1]
    argv = ["--data-dir", data_dir, "--no-download", "--resume", part, "--epochs", "3"]
    code, out, _ = run(train.main, argv, capsys)
    assert code == 0, out
    assert "MLP(784-24-12-10, activation='tanh'" in out and "batch 50" in out
    assert "SGD(lr=0.02" in out
    same_checkpoints(full, part)
    assert load_checkpoint(part).meta["optimizer"]["hyperparameters"]["lr"] == 0.02


def test_resume_reads_the_data_it_began_on(tmp_path, base, capsys, monkeypatch):
    """Without --data-dir, a resumed run reads the folder it began on (the default folders
    may hold other data), bitwise as an unbroken run; a folder of other data, given or
    found, is refused before any epoch, with the folder it began on named."""
    full, part = tmp_path / "full.npz", tmp_path / "part.npz"
    assert run(train.main, [*base, "--epochs", "2", "--save", full], capsys)[0] == 0
    assert run(train.main, [*base, "--epochs", "1", "--save", part], capsys)[0] == 0
    other = write_dataset(tmp_path / "other", n_train=300, n_test=100, seed=5)
    monkeypatch.setenv("MLP_DATA_DIR", str(other))  # where a run without --data-dir looks
    code, out, _ = run(train.main, ["--no-download", "--resume", part, "--epochs", "2"], capsys)
    assert code == 0, out
    same_checkpoints(full, part)
    argv = ["--data-dir", str(other), "--no-download", "--resume", part, "--epochs", "3"]
    code, _, err = run(train.main, argv, capsys)
    began_on = base[base.index("--data-dir") + 1]
    assert code == 1 and one_line(err) == (
        f"{part}: began on other data than {other} holds (on "
        f"{Path(began_on).resolve()}): give --data-dir the folder of the data it began on"
    )
    assert load_checkpoint(part).epoch == 2


def test_resume_without_epochs_finishes_the_run(tmp_path, base, capsys, monkeypatch):
    """--epochs, too, is the checkpoint's: an interrupted run is finished by --resume alone."""
    path = tmp_path / "run.npz"
    real_save = train.save_checkpoint

    def stop_after_epoch_1(target, *args, epoch, **kwargs):
        real_save(target, *args, epoch=epoch, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", stop_after_epoch_1)
    assert run(train.main, [*base, "--epochs", "3", "--save", path], capsys)[0] == 130
    monkeypatch.setattr(train, "save_checkpoint", real_save)
    data_dir = base[base.index("--data-dir") + 1]
    code, out, _ = run(train.main, ["--data-dir", data_dir, "--resume", path], capsys)
    assert code == 0 and "resuming" in out and "epoch   3/3" in out
    assert load_checkpoint(path).epoch == 3


def test_resume_may_change_the_learning_rate(tmp_path, base, capsys):
    path = tmp_path / "run.npz"
    assert run(train.main, [*base, "--epochs", "1", "--save", path], capsys)[0] == 0
    argv = [*base, "--epochs", "2", "--resume", path, "--lr", "0.0005", "--batch-size", "64"]
    code, out, _ = run(train.main, argv, capsys)
    assert code == 0 and "batch 64" in out
    assert load_checkpoint(path).meta["optimizer"]["hyperparameters"]["lr"] == 0.0005


def test_resume_with_unusable_run_settings(tmp_path, base, capsys):
    from mlp import MLP

    path = MLP([784, 8, 10]).save(tmp_path / "odd.npz", run={"batch_size": 0})
    code, _, err = run(train.main, [*base, "--resume", path], capsys)
    assert code == 1
    assert one_line(err) == (
        f"{path}: unusable run settings (batch size must be a positive integer, got 0)"
    )


def test_resume_of_a_library_checkpoint(tmp_path, dataset, capsys):
    """A checkpoint of model.save, with no run recorded: its model and optimizer are taken,
    the rest defaults (Fashion-MNIST's 10 classes)."""
    from mlp import MLP, SGD
    from mlp.data import load_dataset

    data = load_dataset("fashion-mnist", dataset)
    model = MLP([784, 20, 10], activation="sigmoid", seed=4, init="xavier")
    model.fit(data.X_train, data.y_train, epochs=2, optimizer=SGD(lr=0.1, momentum=0.5))
    path = model.save(tmp_path / "lib.npz")
    assert load_checkpoint(path).epoch == 2  # the epochs fit trained
    argv = ["--data-dir", dataset, "--resume", path, "--epochs", "3", "--quiet"]
    code, _, err = run(train.main, argv, capsys)
    assert code == 0, err
    stored = load_checkpoint(path)
    assert stored.epoch == 3 and stored.model_settings["activation"] == "sigmoid"
    assert stored.meta["optimizer"]["hyperparameters"]["momentum"] == 0.5


@pytest.mark.parametrize(
    ("sizes", "loss", "holds"),
    [
        ([784, 8, 1], "squared_error", "a squared_error model with 1 outputs"),
        ([784, 8, 20], "cross_entropy", "a cross_entropy model with 20 outputs"),
    ],
)
def test_resume_of_a_model_that_is_not_the_datasets_classifier(
    tmp_path, dataset, capsys, sizes, loss, holds
):
    """Refused before any epoch, where it failed an epoch in (a regression model's missing
    accuracy, or 20 outputs named by 10 classes)."""
    from mlp import MLP

    path = MLP(sizes, loss=loss).save(tmp_path / "other.npz")
    argv = ["--data-dir", dataset, "--resume", path, "--epochs", "2", "--quiet"]
    code, out, err = run(train.main, argv, capsys)
    assert code == 1 and out == ""
    assert one_line(err) == (
        f"{path}: holds {holds}; mlp-train goes on with a classifier of fashion-mnist's 10 "
        "classes only (train this one with MLP.fit, docs/library.md)"
    )


def test_resume_past_the_total_is_a_usage_error(data, tmp_path, capsys):
    path = tmp_path / "run3.npz"
    assert run(train.main, train_on(data, "--save", path, "--epochs", "3"), capsys)[0] == 0
    code, _, err = run(train.main, train_on(data, "--resume", path, "--epochs", "2"), capsys)
    assert code == 2
    assert one_line(err) == (
        f"{path} already holds 3 epochs, more than --epochs 2 (--epochs is the total, as "
        "when it started)"
    )


def test_resume_into_a_folder_it_cannot_write_is_refused_before_training(
    data, checkpoint, capsys, monkeypatch
):
    """It trained a whole epoch before failing to save it. (As root a chmod stops nothing, so
    the folder's refusal is simulated.)"""
    from mlp.cli import common

    real_access = os.access
    folder = str(checkpoint.parent)
    monkeypatch.setattr(
        common.os, "access", lambda path, mode: str(path) != folder and real_access(path, mode)
    )
    code, out, err = run(
        train.main, train_on(data, "--epochs", "2", "--resume", checkpoint), capsys
    )
    assert code == 2 and "epoch" not in out
    assert one_line(err) == (
        f"--resume {checkpoint}: folder {folder!r} is not writable (or give --save another file)"
    )


def test_resume_through_a_symbolic_link_keeps_the_link(data, checkpoint, tmp_path, capsys):
    """The save replaced the link with a file; it now writes the file the link names."""
    link = tmp_path / "latest.npz"
    link.symlink_to(checkpoint)
    code, _, _ = run(train.main, train_on(data, "--epochs", "2", "--resume", link), capsys)
    assert code == 0
    assert link.is_symlink() and link.resolve() == checkpoint.resolve()
    assert load_checkpoint(checkpoint).epoch == 2


def test_resume_of_a_float64_run_with_a_reduced_precision(data, tmp_path, capsys):
    """The dtype came from the checkpoint: the fix is to drop --precision, not to retype it."""
    path = tmp_path / "f64.npz"
    assert run(train.main, train_on(data, "--dtype", "float64", "--save", path), capsys)[0] == 0
    argv = train_on(data, "--resume", path, "--epochs", "2", "--precision", "bf16")
    code, _, err = run(train.main, argv, capsys)
    assert code == 2
    assert one_line(err) == (
        f"--precision bf16 reduces float32 matmuls only: drop it ({path} holds a float64 model)"
    )


def test_resume_may_turn_a_schedule_off(tmp_path, base, capsys):
    """Turned off, the schedule leaves the rate where it had brought it (it went back to the
    run's starting --lr), as PyTorch's and Keras' optimizers keep theirs."""
    path, log = tmp_path / "run.npz", tmp_path / "log.jsonl"
    argv = [*base, "--epochs", "2", "--lr-schedule", "cosine", "--save", path]
    assert run(train.main, argv, capsys)[0] == 0
    resumed = [*base, "--resume", path, "--epochs", "3", "--log", log]
    assert run(train.main, [*resumed, "--lr-schedule", "none"], capsys)[0] == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    # the checkpoint's epoch first (a new log covers the whole run), then no schedule's rate
    assert [("lr" in r) for r in records] == [True, True, False]
    stored = load_checkpoint(path)
    assert stored.run["lr_schedule"] is None and stored.run["lr"] == 1e-3  # where it started
    assert records[1]["lr"] == pytest.approx(0.5e-3)  # half a cosine over two epochs
    assert stored.meta["optimizer"]["hyperparameters"]["lr"] == records[1]["lr"]
    # resumed again without a schedule, it goes on at that rate (the start's, from a history
    # whose last record had none)
    assert run(train.main, ["--resume", path, "--epochs", "4"], capsys)[0] == 0
    assert load_checkpoint(path).meta["optimizer"]["hyperparameters"]["lr"] == records[1]["lr"]
    # a plateau turned on then goes on from that rate too (it jumped back to the start's)
    argv = ["--resume", path, "--epochs", "5", "--lr-schedule", "plateau", "--log", log]
    assert run(train.main, argv, capsys)[0] == 0
    assert json.loads(log.read_text().splitlines()[-1])["lr"] == records[1]["lr"]


def logged(path: Path) -> list[dict]:
    """A log's lines, without their seconds."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [{key: value for key, value in line.items() if key != "seconds"} for line in lines]


@pytest.mark.parametrize("stop", ["first", "half", "last"])
def test_a_stopped_and_resumed_run_leaves_the_unbroken_runs_log(
    tmp_path, base, capsys, monkeypatch, stop
):
    """Stopped between an epoch's checkpoint and its log line, at the first epoch (no log
    yet), with the log's only line half-written, or at the last epoch (the resume trains
    nothing): the log lost that epoch for good, and a resume that trained nothing saved the
    optimizer at its starting rate, not the rate its last epoch ran at."""
    command = [*base, "--epochs", "3", "--lr-schedule", "cosine", "--lr", "0.01"]
    full, part = tmp_path / "full.npz", tmp_path / "part.npz"
    log = tmp_path / "part.jsonl"
    assert run(train.main, [*command, "--save", full, "--log", tmp_path / "full.jsonl"],
               capsys)[0] == 0  # fmt: skip
    argv = [*command, "--save", part, "--log", log]
    interrupted_after({"first": 1, "half": 2, "last": 3}[stop], argv, capsys, monkeypatch)
    if stop == "half":
        log.write_text(log.read_text()[:19])
    assert run(train.main, ["--resume", part, "--log", log], capsys)[0] == 0
    assert logged(log) == logged(tmp_path / "full.jsonl")
    same_checkpoints(full, part)  # the optimizer's rate among its settings


def test_log_lines_caught_up_from_the_checkpoint_say_what_trained_them(
    tmp_path, base, capsys, monkeypatch
):
    """Epoch 2, trained in float32 but logged by the resume in bf16, said bf16."""
    part, log = tmp_path / "part.npz", tmp_path / "part.jsonl"
    interrupted_after(2, [*base, "--epochs", "3", "--save", part, "--log", log], capsys,
                      monkeypatch)  # fmt: skip
    resumed = ["--resume", part, "--log", log, "--precision", "bf16"]
    assert run(train.main, resumed, capsys)[0] == 0
    assert [line["precision"] for line in logged(log)] == ["float32", "float32", "bf16"]


@pytest.mark.parametrize("first", [True, False])
def test_a_resumed_run_trains_on_the_blas_threads_its_epochs_ran_on(
    tmp_path, base, capsys, monkeypatch, first
):
    """A small model's BLAS threads are timed afresh in each process (one where it is
    clearly faster), and their rounding differs: a resume whose timing chose otherwise than
    the first process's ended digits away from the unbroken run. ``first``: whether the
    first process found one thread faster; the resumed process's timing says the other."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.delenv(threads.PINNED, raising=False)
    command = [*base, "--epochs", "3"]
    full, part = tmp_path / "full.npz", tmp_path / "part.npz"
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        monkeypatch.setattr(threads, "_timed_faster", lambda *args: first)
        assert run(train.main, [*command, "--save", full], capsys)[0] == 0
        interrupted_after(1, [*command, "--save", part], capsys, monkeypatch)
        monkeypatch.setattr(threads, "_timed_faster", lambda *args: not first)
        assert run(train.main, ["--resume", part], capsys)[0] == 0
        assert threads.in_use() == 2  # as it was, after the run
    assert load_checkpoint(part).run["blas_threads"] == load_checkpoint(full).run["blas_threads"]
    assert load_checkpoint(full).run["blas_threads"] == (1 if first else 2)
    same_checkpoints(full, part)


def test_a_run_early_stopping_ended_says_so_and_its_resume_too(tmp_path, base, capsys):
    """The epoch lines just stopped short of --epochs; resumed, the run said nothing."""
    path = tmp_path / "run.npz"
    command = [*base, "--lr", "0.1", "--optimizer", "momentum", "--early-stopping", "6",
               "--validation-split", "0.2", "--epochs", "16", "--save", path]  # fmt: skip
    code, out, _ = run(train.main, command, capsys)
    stopped = load_checkpoint(path)
    assert code == 0 and stopped.epoch < 16
    said = (
        f"early stopping ended the run after epoch {stopped.epoch}, 6 epochs without a lower "
        f"val loss: the weights are epoch {stopped.best[0]}'s\n"
    )
    assert said in out
    code, out, _ = run(train.main, ["--resume", path], capsys)
    assert code == 0 and said in out and "epoch  " not in out
