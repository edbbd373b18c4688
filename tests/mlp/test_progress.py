"""What fit shows: the progress bar and the epoch's line."""

from __future__ import annotations

import io

import pytest

from mlp.progress import EpochProgress, epoch_line


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


def test_epoch_line_names_every_metric_it_has():
    record = {"epoch": 3, "loss": 0.5, "val_loss": 0.25, "lr": 0.001, "seconds": 1.5}
    assert epoch_line(record, 10) == "epoch   3/10  loss 0.5000  val loss 0.2500  lr 0.0010  1.50 s"


def test_a_second_fits_bars_go_on_numbering(capsys):
    """The bar of a fit that goes on (or of a resume) shows its epochs' numbers, as their
    lines do: a second fit of 2 after 2 showed epoch 1/4 and 2/4 for epochs 3 and 4."""
    pytest.importorskip("tqdm")
    from mlp import MLP
    from tests.mlp.problems import blobs

    X, y = blobs(40)
    model = MLP([10, 4], seed=0)
    model.fit(X, y, epochs=2, batch_size=10)
    model.fit(X, y, epochs=2, batch_size=10, verbose=True)
    shown = capsys.readouterr()
    assert "epoch 3/4" in shown.err and "epoch 4/4" in shown.err
    assert "epoch 1/4" not in shown.err and "epoch 2/4" not in shown.err
    bar = EpochProgress(samples=30, batch_size=10, epochs=9, stream=io.StringIO(), force=True,
                        first=6)  # fmt: skip
    bar.batch(0)
    assert "epoch 6/9" in bar.stream.getvalue()
