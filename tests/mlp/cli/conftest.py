"""The commands' tests share small datasets, a private copy to break, and a saved run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlp.cli import train
from mlp.data.synthetic import write_dataset
from tests.helpers import run, train_on


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("good") / "data", n_train=300, n_test=100)


@pytest.fixture
def data(good, tmp_path) -> Path:
    """A private copy of the good dataset, for a test to break."""
    return Path(shutil.copytree(good, tmp_path / "data"))


@pytest.fixture
def checkpoint(data, tmp_path, capsys) -> Path:
    """A one-epoch run of ``train_on(data)``, saved."""
    path = tmp_path / "run.npz"
    assert run(train.main, train_on(data, "--save", path), capsys)[0] == 0
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A small dataset (600 training images) that the tests only read."""
    return write_dataset(tmp_path_factory.mktemp("data") / "tiny", n_train=600, n_test=200)


@pytest.fixture
def base(dataset) -> list[str]:
    """``mlp-train``'s options for a quick run on ``dataset`` (32 hidden units)."""
    return ["--data-dir", str(dataset), "--hidden", "32", "--no-download"]
