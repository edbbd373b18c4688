"""What a run shows and leaves: the JSON-lines log, the plot, the progress bar, ``--quiet``;
plots and logs checked before training, and kept whole when a write fails."""

from __future__ import annotations

import io
import json
import sys

import pytest

from mlp.checkpoint import load_checkpoint
from mlp.cli import train
from mlp.cli.reporting import plot_history
from tests.helpers import one_line, run, train_on


# ----------------------------------------------------------------------------- log and plot
def test_metrics_log_one_json_line_per_epoch_appended_on_resume(tmp_path, base, capsys):
    log, saved = tmp_path / "metrics.jsonl", tmp_path / "run.npz"
    argv = [*base, "--log", log, "--save", saved]
    assert run(train.main, [*argv, "--epochs", "2"], capsys)[0] == 0
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
        "precision",
        "world_size",
    }
    assert lines[0]["device"] == "cpu" and lines[0]["seconds"] > 0
    assert lines[0]["precision"] == "float32"
    assert lines[0]["world_size"] == 1
    assert 0 <= lines[1]["test_accuracy"] <= 1 and lines[1]["train_loss"] > 0
    assert run(train.main, [*argv, "--epochs", "3", "--resume", saved], capsys)[0] == 0
    assert [json.loads(x)["epoch"] for x in log.read_text().splitlines()] == [1, 2, 3]
    assert run(train.main, [*base, "--log", log, "--epochs", "1"], capsys)[0] == 0
    assert len(log.read_text().splitlines()) == 1  # a fresh run starts a fresh log


def test_a_resumed_log_first_writes_the_epochs_a_stop_left_out(tmp_path, base, capsys):
    """A stop between an epoch's checkpoint and its log line left the log one short: the
    resumed run wrote epoch 3 after epoch 1, for good."""
    log, saved = tmp_path / "metrics.jsonl", tmp_path / "run.npz"
    argv = [*base, "--log", log, "--save", saved]
    assert run(train.main, [*argv, "--epochs", "2"], capsys)[0] == 0
    log.write_text(log.read_text().splitlines(keepends=True)[0])  # epoch 2's line lost
    assert run(train.main, [*argv, "--epochs", "3", "--resume", saved], capsys)[0] == 0
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    history = load_checkpoint(saved).history
    assert [r["train_loss"] for r in lines] == pytest.approx([r["loss"] for r in history])


def test_plot_draws_a_png(tmp_path, base, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    code, out, _ = run(train.main, [*base, "--epochs", "2", "--plot", png], capsys)
    assert code == 0 and f"curves: {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_plot_without_matplotlib_fails_before_training(tmp_path, base, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run(train.main, [*base, "--plot", tmp_path / "c.png"], capsys)
    assert code == 1
    assert err == (
        "mlp-train: error: --plot needs matplotlib: pip install 'mlp-backprop[plot]' "
        "(or pip install matplotlib)\n"
    )
    assert out == ""  # nothing trained


# ----------------------------------------------------------------------------- output
def test_not_a_terminal_means_no_progress_bar(base, capsys):
    code, out, err = run(train.main, [*base, "--epochs", "2"], capsys)
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


def test_quiet_prints_only_the_result(base, capsys):
    code, out, err = run(train.main, [*base, "--epochs", "2", "--quiet"], capsys)
    assert code == 0 and err == ""
    assert len(out.splitlines()) == 1 and out.startswith("test accuracy: ")


@pytest.mark.parametrize("name", ["curves.xyz", "curves"])
def test_plot_format_is_checked_before_training(data, tmp_path, capsys, name):
    pytest.importorskip("matplotlib")
    code, out, err = run(train.main, train_on(data, "--plot", tmp_path / name), capsys)
    assert code == 2 and out == ""  # nothing trained
    line = one_line(err)
    assert line.startswith(f"--plot {tmp_path / name}: the suffix names the image format")
    assert ".png" in line and ".svg" in line


def test_a_failed_plot_write_keeps_the_old_plot(data, tmp_path, capsys, monkeypatch):
    """The disk fills up while the new plot is written: the old one stays whole, and the
    line names the file."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    plot = tmp_path / "curves.png"
    plot.write_bytes(b"the previous run's plot")

    def disk_full(self, file, **kwargs):
        file.write(b"half a png")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", disk_full)
    code, _, err = run(train.main, train_on(data, "--plot", plot), capsys)
    assert code == 1
    assert one_line(err) == f"cannot write {plot}: No space left on device"
    assert plot.read_bytes() == b"the previous run's plot"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "data"]  # no temp file


def test_a_run_that_fails_before_its_first_epoch_keeps_an_earlier_log(data, tmp_path, capsys):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"epoch": 1}\n')
    argv = train_on(data, "--optimizer", "sgd", "--lr", "1e30", "--log", log)
    code, _, err = run(train.main, argv, capsys)
    assert code == 1 and "training diverged" in one_line(err)
    assert log.read_text() == '{"epoch": 1}\n'


@pytest.mark.parametrize("watched", ["test", "val"])
def test_the_plot_names_what_the_val_records_were_measured_on(tmp_path, watched):
    pytest.importorskip("matplotlib")
    history = [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4}]
    text = plot_history(history, tmp_path / "curves.svg", watched=watched).read_text()
    other = {"test": "val", "val": "test"}[watched]
    assert f"<!-- {watched} -->" in text and f"<!-- {other} -->" not in text


def test_a_log_line_left_half_written_is_cut_off_on_resume(tmp_path, base, capsys):
    """A full disk or a kill mid-write left half of epoch 3's line: the resumed run's first
    line was glued to it (one line no reader could parse); it is cut off, and epoch 3
    written whole from the checkpoint's record."""
    log, saved = tmp_path / "metrics.jsonl", tmp_path / "run.npz"
    argv = [*base, "--log", log, "--save", saved]
    assert run(train.main, [*argv, "--epochs", "3"], capsys)[0] == 0
    text = log.read_text()
    log.write_text(text[: text.rindex("\n", 0, -1) + 20])  # epoch 3's line, 19 characters in
    assert run(train.main, [*argv, "--epochs", "4", "--resume", saved], capsys)[0] == 0
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]


def test_a_resume_into_a_file_that_is_no_log_of_ours_catches_nothing_up(tmp_path, base, capsys):
    """A --log whose last line is no record (another file) gets the resumed epochs, not the
    checkpoint's history as well."""
    saved, log = tmp_path / "run.npz", tmp_path / "notes.txt"
    assert run(train.main, [*base, "--epochs", "2", "--save", saved], capsys)[0] == 0
    log.write_text("hello world\n")
    argv = [*base, "--epochs", "3", "--resume", saved, "--log", log]
    assert run(train.main, argv, capsys)[0] == 0
    first, *rest = log.read_text().splitlines()
    assert first == "hello world" and [json.loads(line)["epoch"] for line in rest] == [3]
