"""Finding datasets on disk (the search order, a given folder as the only place looked) and
loading them (the four files checked together)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import mlp.data.datasets
from mlp.data import (
    DataError,
    DatasetNotFound,
    candidate_dirs,
    find_dataset,
    load_dataset,
    load_split,
    write_idx,
)
from mlp.data.download import ensure_dataset
from mlp.data.synthetic import write_dataset
from mlp.errors import InvalidArgument


# ---------------------------------------------------------------------- finding datasets
@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Nothing outside tmp_path is searched: cache, $MLP_DATA_DIR and system folders."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MLP_DATA_DIR", raising=False)
    monkeypatch.setattr(mlp.data.datasets, "SYSTEM_DIRS", (tmp_path / "system",))
    return tmp_path


def _tiny(folder):
    return write_dataset(folder, n_train=4, n_test=2, gz=False)


def test_image_and_label_counts_must_match(tmp_path):
    folder = write_dataset(tmp_path / "ds", n_train=20, n_test=10, gz=False)
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(19, dtype=np.uint8))
    with pytest.raises(ValueError, match="20 train images but 19 labels") as info:
        load_dataset("mnist", data_dir=folder)
    assert str(folder) in str(info.value)


def test_images_must_be_three_dimensional(tmp_path):
    folder = write_dataset(tmp_path / "ds", n_train=20, n_test=10, gz=False)
    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((10, 784), dtype=np.uint8))
    with pytest.raises(ValueError, match="t10k-images"):
        load_dataset("mnist", data_dir=folder)


def test_train_and_test_images_must_have_one_shape(tmp_path):
    """14×56 test images beside 28×28 training ones are as many pixels, in other places."""
    folder = write_dataset(tmp_path / "ds", n_train=20, n_test=10, gz=False)
    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((10, 14, 56), dtype=np.uint8))
    with pytest.raises(DataError, match="train images are 28×28 pixels but the test images 14×56"):
        load_dataset("mnist", data_dir=folder)


def test_wider_integer_pixels_are_read_as_bytes_or_refused(tmp_path):
    folder = write_dataset(tmp_path / "ds", n_train=20, n_test=10, gz=False)
    test_images = load_dataset("mnist", data_dir=folder).X_test
    write_idx(folder / "t10k-images-idx3-ubyte", test_images.reshape(10, 28, 28).astype(np.int32))
    again = load_dataset("mnist", data_dir=folder).X_test
    assert again.dtype == np.uint8  # scaled by 1/255 like any other bytes
    np.testing.assert_array_equal(again, test_images)
    write_idx(folder / "t10k-images-idx3-ubyte", np.full((10, 28, 28), 256, np.int16))
    with pytest.raises(DataError, match="int16 pixels from 256 to 256; integer pixels must be"):
        load_dataset("mnist", data_dir=folder)


def test_load_split_names_what_it_lacks(tmp_path):
    folder = write_dataset(tmp_path / "ds", n_train=20, n_test=10, gz=False)
    images, labels = load_split(folder, "test", 10)
    assert images.shape == (10, 784) and labels.shape == (10,)
    with pytest.raises(InvalidArgument, match="unknown split 'validation': choose one of train"):
        load_split(folder, "validation", 10)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFound, match="lacks t10k-labels-idx1-ubyte"):
        load_split(folder, "test", 10)


def test_load_dataset(tmp_path):
    folder = write_dataset(tmp_path / "ds", n_train=30, n_test=12)
    data = load_dataset("kmnist", data_dir=folder)
    assert data.source == folder
    assert data.X_train.shape == (30, 784) and data.X_test.shape == (12, 784)
    assert data.X_train.dtype == np.uint8 and data.y_train.dtype == np.uint8
    assert data.y_train.shape == (30,) and data.y_test.shape == (12,)
    assert data.y_train.max() < 10


def test_find_dataset_lookup_order(isolated, monkeypatch):
    tmp = isolated
    explicit = _tiny(tmp / "explicit")
    env = _tiny(tmp / "env" / "mnist")  # $MLP_DATA_DIR/<dataset>
    cache = _tiny(tmp / "cache" / "mlp" / "mnist")
    system = _tiny(tmp / "system" / "mnist")
    monkeypatch.setenv("MLP_DATA_DIR", str(tmp / "env"))

    assert find_dataset("mnist", data_dir=explicit) == explicit
    assert find_dataset("mnist") == env
    monkeypatch.delenv("MLP_DATA_DIR")
    assert find_dataset("mnist") == cache
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (cache / name).unlink()  # an incomplete folder does not count
        assert find_dataset("mnist") == system
    for f in system.iterdir():
        f.unlink()
    with pytest.raises(DatasetNotFound):
        find_dataset("mnist")


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda d: d, "{d} lacks t10k-labels-idx1-ubyte[.gz] of mnist: put them there"),
        (lambda d: d / "typo", "no such folder: fix the path"),
        (lambda d: d / "train-images-idx3-ubyte", "is a file, not a folder"),
        (lambda d: d / "train-images-idx3-ubyte" / "x", "no such folder"),
    ],
)
def test_a_given_folder_without_the_dataset_is_an_error(isolated, monkeypatch, make, problem):
    """Named but wrong (empty, a typo, a file): an error saying so, never another copy of
    the dataset found elsewhere, nor a download."""
    _tiny(isolated / "cache" / "mlp" / "mnist")  # a copy the search would otherwise find
    _tiny(isolated / "given")
    (isolated / "given" / "t10k-labels-idx1-ubyte").unlink()  # three files of four
    given = make(isolated / "given")
    with pytest.raises(DatasetNotFound) as info:
        find_dataset("mnist", data_dir=given)
    message = str(info.value)
    assert message.startswith(f"{given}: " + problem.format(d=isolated / "given"))
    assert message.endswith("or leave --data-dir out to search the usual places (and to download)")
    with pytest.raises(DatasetNotFound):
        ensure_dataset("mnist", data_dir=given, download=True)  # no download either
    with pytest.raises(ValueError, match="empty name"):
        find_dataset("mnist", data_dir="")


def test_a_folder_that_cannot_be_searched_is_skipped(isolated, monkeypatch):
    """$MLP_DATA_DIR names a folder this user may not look into: the search goes on."""
    cache = _tiny(isolated / "cache" / "mlp" / "mnist")
    locked = isolated / "locked"
    real_is_file = Path.is_file

    def is_file(path):
        if locked in path.parents:
            raise PermissionError(13, "Permission denied", str(path))
        return real_is_file(path)

    monkeypatch.setattr(Path, "is_file", is_file)
    monkeypatch.setenv("MLP_DATA_DIR", str(locked))
    assert find_dataset("mnist") == cache


def test_find_dataset_appends_dataset_name(isolated):
    root = isolated / "root"
    nested = _tiny(root / "kmnist")
    assert find_dataset("kmnist", data_dir=root) == nested
    with pytest.raises(DatasetNotFound):
        find_dataset("mnist", data_dir=root)  # kmnist is not mnist


def test_find_dataset_plain_and_gz_mixed(isolated):
    folder = write_dataset(isolated / "mixed", n_train=4, n_test=2, gz=True)
    gz = folder / "t10k-labels-idx1-ubyte.gz"
    (folder / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    assert find_dataset("mnist", data_dir=folder) == folder
    data = load_dataset("mnist", data_dir=folder)
    assert len(data.y_test) == 2


def test_default_user_cache_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert mlp.data.datasets.user_cache_dir("mnist") == tmp_path / ".cache" / "mlp" / "mnist"


def test_candidate_dirs(isolated, monkeypatch):
    monkeypatch.setenv("MLP_DATA_DIR", "/srv/data")
    assert [str(d) for d in candidate_dirs("mnist", "/here")] == ["/here", "/here/mnist"]
    dirs = candidate_dirs("mnist")
    assert [str(d) for d in dirs] == [
        "/srv/data",
        "/srv/data/mnist",
        str(isolated / "cache" / "mlp" / "mnist"),
        str(isolated / "system" / "mnist"),
    ]


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_dataset_not_found_message_lists_the_options(isolated, monkeypatch, dataset):
    monkeypatch.setenv("MLP_DATA_DIR", str(isolated / "envdir"))
    with pytest.raises(DatasetNotFound) as info:
        find_dataset(dataset)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for folder in (
        isolated / "envdir",
        isolated / "cache" / "mlp" / dataset,
        isolated / "system" / dataset,
    ):
        assert str(folder) in message
    assert "--data-dir" in message and "MLP_DATA_DIR" in message
    assert ("apt install dataset-fashion-mnist" in message) == (dataset == "fashion-mnist")
    assert "\n" not in message  # one line for the CLI


def test_unknown_dataset_is_value_error(isolated):
    with pytest.raises(ValueError, match="cifar"):
        find_dataset("cifar10")
