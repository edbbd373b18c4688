"""Everyday command-line use: checkpoints and bitwise resume, divergence that keeps the last
good checkpoint, the JSON-lines log, plots, the progress bar, --quiet, and mlp-eval."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlp.checkpoint import load_checkpoint
from mlp.cli import evaluate, train
from mlp.cli.reporting import EpochProgress
from mlp.data.synthetic import write_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "tiny", n_train=600, n_test=200)


@pytest.fixture
def base(data) -> list[str]:
    return ["--data-dir", str(data), "--hidden", "32", "--no-download"]


def cli(main, argv, capsys) -> tuple[int, str, str]:
    """Run a console script's ``main`` in-process: (exit status, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


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
@pytest.mark.parametrize(
    "options",
    [
        ["--optimizer", "adam", "--dropout", "0.2"],
        ["--optimizer", "momentum", "--activation", "tanh", "--dtype", "float64"],
    ],
)
def test_resume_ends_bitwise_equal_to_an_unbroken_run(tmp_path, base, capsys, monkeypatch, options):
    command = [*base, "--epochs", "4", "--batch-size", "64", "--seed", "7", *options]
    full, part = tmp_path / "full.npz", tmp_path / "part.npz"
    assert cli(train.main, [*command, "--save", full], capsys)[0] == 0

    real_save = train.save_checkpoint

    def crash_after_epoch_2(path, *args, epoch, **kwargs):
        real_save(path, *args, epoch=epoch, **kwargs)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", crash_after_epoch_2)
    code, _, err = cli(train.main, [*command, "--save", part], capsys)
    assert code == 130
    assert err == f"mlp-train: interrupted; {part} holds epoch 2: continue with --resume {part}\n"
    monkeypatch.setattr(train, "save_checkpoint", real_save)
    assert load_checkpoint(part).epoch == 2

    code, out, _ = cli(train.main, [*command, "--save", part, "--resume", part], capsys)
    assert code == 0
    assert f"resuming {part} after epoch 2 of 4" in out
    assert "epoch   1/4" not in out and "epoch   3/4" in out and "epoch   4/4" in out
    same_checkpoints(full, part)
    assert [r["epoch"] for r in load_checkpoint(part).history] == [1, 2, 3, 4]


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
    run = tmp_path / "run.npz"
    assert cli(train.main, [*base, "--epochs", "1", "--save", run], capsys)[0] == 0
    assert cli(train.main, [*base, "--epochs", "2", "--resume", run], capsys)[0] == 0
    assert load_checkpoint(run).epoch == 2


def test_resume_of_a_finished_run_only_evaluates(tmp_path, base, capsys):
    run, copy = tmp_path / "run.npz", tmp_path / "copy.npz"
    assert cli(train.main, [*base, "--epochs", "2", "--save", run], capsys)[0] == 0
    before = run.read_bytes()
    argv = [*base, "--epochs", "2", "--resume", run]
    code, out, _ = cli(train.main, argv, capsys)
    assert code == 0 and "train loss" not in out
    assert out.splitlines()[-1].startswith("test accuracy: ")
    assert run.read_bytes() == before  # untouched
    assert cli(train.main, [*argv, "--save", copy], capsys)[0] == 0
    same_checkpoints(run, copy)


# ----------------------------------------------------------------------------- divergence
def test_divergence_names_the_epoch_and_keeps_the_last_good_checkpoint(tmp_path, base, capsys):
    run = tmp_path / "run.npz"
    sgd = ["--optimizer", "sgd"]
    assert cli(train.main, [*base, *sgd, "--epochs", "1", "--save", run], capsys)[0] == 0
    good = run.read_bytes()
    code, _, err = cli(
        train.main, [*base, *sgd, "--lr", "1e30", "--epochs", "3", "--resume", run], capsys
    )
    assert code == 1
    assert err.startswith("mlp-train: error: training diverged: the loss became ")
    assert "in epoch 2; lower the learning rate" in err
    assert err.endswith(f"{run} holds epoch 1: continue with --resume {run}\n")
    assert err.count("\n") == 1
    assert run.read_bytes() == good  # the NaN epoch never overwrote it
    assert load_checkpoint(run).epoch == 1


def test_divergence_in_the_first_epoch(tmp_path, base, capsys):
    run = tmp_path / "run.npz"
    argv = [*base, "--optimizer", "sgd", "--lr", "1e30", "--epochs", "2", "--save", run]
    code, _, err = cli(train.main, argv, capsys)
    assert code == 1 and "in epoch 1" in err
    assert err.endswith(f"no epoch finished, so nothing was saved to {run}\n")
    assert not run.exists()


# ----------------------------------------------------------------------------- log and plot
def test_metrics_log_one_json_line_per_epoch_appended_on_resume(tmp_path, base, capsys):
    log, run = tmp_path / "metrics.jsonl", tmp_path / "run.npz"
    argv = [*base, "--log", log, "--save", run]
    assert cli(train.main, [*argv, "--epochs", "2"], capsys)[0] == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert set(lines[0]) == {
        "epoch",
        "seconds",
        "train_loss",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
        "device",
    }
    assert lines[0]["device"] == "cpu" and lines[0]["seconds"] > 0
    assert 0 <= lines[1]["test_accuracy"] <= 1 and lines[1]["train_loss"] > 0
    assert cli(train.main, [*argv, "--epochs", "3", "--resume", run], capsys)[0] == 0
    assert [json.loads(x)["epoch"] for x in log.read_text().splitlines()] == [1, 2, 3]
    assert cli(train.main, [*base, "--log", log, "--epochs", "1"], capsys)[0] == 0
    assert len(log.read_text().splitlines()) == 1  # a fresh run starts a fresh log


def test_plot_draws_a_png(tmp_path, base, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    code, out, _ = cli(train.main, [*base, "--epochs", "2", "--plot", png], capsys)
    assert code == 0 and f"curves: {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_plot_without_matplotlib_fails_before_training(tmp_path, base, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = cli(train.main, [*base, "--plot", tmp_path / "c.png"], capsys)
    assert code == 1
    assert err == (
        "mlp-train: error: --plot needs matplotlib: pip install 'mlp[plot]' "
        "(or pip install matplotlib)\n"
    )
    assert out == ""  # nothing trained


# ----------------------------------------------------------------------------- output
def test_not_a_terminal_means_no_progress_bar(base, capsys):
    code, out, err = cli(train.main, [*base, "--epochs", "2"], capsys)
    assert code == 0 and err == ""
    assert "\r" not in out and "samples/s" not in out
    assert out.count("train loss") == 2


def test_progress_bar_on_a_terminal(base, capsys, monkeypatch):
    pytest.importorskip("tqdm")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert train.main([*base, "--epochs", "2"]) == 0
    shown = term.getvalue()
    assert "epoch 1/2" in shown and "epoch 2/2" in shown
    assert "samples/s" in shown and "600/600" in shown
    assert "loss" in shown

    term.seek(0)
    term.truncate()
    assert train.main([*base, "--epochs", "1", "--quiet"]) == 0
    assert term.getvalue() == ""
    assert capsys.readouterr().out.splitlines()[-1].startswith("test accuracy: ")


def test_progress_shows_the_finished_epochs_loss():
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    bar = EpochProgress(samples=300, batch_size=128, epochs=2, stream=stream, force=True)
    for epoch in (1, 2):
        for step in range(3):
            bar.batch(step)
        bar.end({"epoch": epoch, "loss": 0.123})
    text = stream.getvalue()
    assert "epoch 2/2" in text and "300/300" in text
    assert "loss 0.1230" in text and "last loss 0.1230" in text
    off = EpochProgress(samples=300, batch_size=128, epochs=2, stream=io.StringIO())
    assert not off.active  # a StringIO is no terminal


def test_quiet_prints_only_the_result(base, capsys):
    code, out, err = cli(train.main, [*base, "--epochs", "2", "--quiet"], capsys)
    assert code == 0 and err == ""
    assert len(out.splitlines()) == 1 and out.startswith("test accuracy: ")


# ----------------------------------------------------------------------------- mlp-eval
def test_eval_prints_accuracy_and_confusion_matrix(tmp_path, base, data, capsys):
    run = tmp_path / "run.npz"
    code, out, _ = cli(train.main, [*base, "--epochs", "3", "--save", run], capsys)
    trained_accuracy = out.splitlines()[-1]
    code, out, err = cli(evaluate.main, ["--checkpoint", run, "--data-dir", data], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert trained_accuracy in lines  # the same number mlp-train ended with
    assert "fashion-mnist test set" in out  # the dataset recorded in the checkpoint
    header = lines.index("confusion matrix (rows: true class, columns: predicted class):")
    matrix = np.array([[int(v) for v in row.split()[1:]] for row in lines[header + 2 :]])
    assert matrix.shape == (10, 10) and matrix.sum() == 200
    accuracy = float(trained_accuracy.split()[-1])
    assert abs(np.trace(matrix) / 200 - accuracy) < 1e-9


def test_confusion_matrix_counts():
    m = evaluate.confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert evaluate.format_confusion(m).splitlines()[0].split() == ["true\\pred", "0", "1", "2"]
