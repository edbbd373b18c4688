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
