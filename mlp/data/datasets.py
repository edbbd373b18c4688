"""MNIST-family datasets on disk: where they are looked for, and reading and checking them.

MNIST, Fashion-MNIST and KMNIST share one layout: ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
plain or gzipped (``mlp/data/idx.py``). Images are returned as uint8 rows of 784 pixels
(compact: the model scales them on the device), labels as uint8. The files are checked as
they are read, so that a problem names the file it is in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError, DatasetNotFound, InvalidArgument
from .idx import read_idx

DATASETS = ("fashion-mnist", "mnist", "kmnist")
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: Where Debian's dataset packages (``apt install dataset-fashion-mnist``) put the files.
SYSTEM_DIRS = (Path("/usr/share/datasets"), Path("/usr/local/share/datasets"))
#: The most classes a label file may make: a label beyond is a mistake (an ID, a
#: measurement), which would otherwise surface as running out of memory.
MAX_CLASSES = 65536


class Dataset(NamedTuple):
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    source: Path


def _split_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _has_dataset(folder: Path) -> bool:
    """All four files are there; a folder that cannot be looked into has none of them."""
    try:
        return all(_split_file(folder, stem) for files in SPLITS.values() for stem in files)
    except OSError:  # no permission to search it, a name too long, …
        return False


#: The four files, as a person would look for them.
FILE_NAMES = ", ".join(f"{stem}[.gz]" for files in SPLITS.values() for stem in files)


def user_cache_dir(dataset: str) -> Path:
    """``$XDG_CACHE_HOME/mlp/<dataset>``, by default ``~/.cache/mlp/<dataset>``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mlp" / dataset


def candidate_dirs(dataset: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched, in order: ``data_dir`` (when given, the only one, with its
    ``<dataset>`` subfolder), else ``$MLP_DATA_DIR``, the user cache, the system folders."""
    if data_dir is not None:
        return [Path(data_dir), Path(data_dir) / dataset]
    out: list[Path] = []
    root = os.environ.get("MLP_DATA_DIR")
    if root:
        out += [Path(root), Path(root) / dataset]
    out.append(user_cache_dir(dataset))
    out += [d / dataset for d in SYSTEM_DIRS]
    return out


def find_dataset(dataset: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The first folder holding all four files of ``dataset``; else a message saying what to do.

    A ``data_dir`` that is given is the only place looked: a typo there is an error, not a
    silent fall-back to another copy of the data (or a download).
    """
    if dataset not in DATASETS:
        raise InvalidArgument(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    if data_dir is not None and not str(data_dir).strip():
        raise InvalidArgument("the data folder is an empty name: give a folder, or none to search")
    searched = candidate_dirs(dataset, data_dir)
    for folder in searched:
        if _has_dataset(folder):
            return folder
    if data_dir is not None:
        raise DatasetNotFound(f"{data_dir}: {_given_folder_problem(Path(data_dir), dataset)}")
    hint = (
        " or `sudo apt install dataset-fashion-mnist` (Debian/Ubuntu)"
        if (dataset == "fashion-mnist")
        else ""
    )
    raise DatasetNotFound(
        f"{dataset} not found (looked in {', '.join(str(d) for d in searched)}): "
        f"put its four IDX files in one of them, pass --data-dir, set MLP_DATA_DIR{hint}"
    )


def _given_folder_problem(folder: Path, dataset: str) -> str:
    """Why a folder named by the user (``--data-dir``) does not hold the dataset."""
    leave_out = "or leave --data-dir out to search the usual places (and to download)"
    try:
        if not folder.exists():
            return f"no such folder: fix the path, {leave_out}"
        if not folder.is_dir():
            return f"is a file, not a folder: name the folder that holds the IDX files, {leave_out}"
        if not os.access(folder, os.R_OK | os.X_OK):
            return f"cannot look into this folder (no permission), {leave_out}"
        stems = [stem for files in SPLITS.values() for stem in files]
        for where in (folder, folder / dataset):
            missing = [stem for stem in stems if _split_file(where, stem) is None]
            if len(missing) < len(stems):  # some of the files are here: name the others
                return (
                    f"{where} lacks {', '.join(f'{stem}[.gz]' for stem in missing)} of "
                    f"{dataset}: put them there, {leave_out}"
                )
    except OSError as exc:
        return f"cannot look into it ({exc.strerror}), {leave_out}"
    return (
        f"no {dataset} here or in {folder / dataset} (all four of {FILE_NAMES}): "
        f"put them there, {leave_out}"
    )


def load_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images as (n, rows*cols) uint8 and labels as (n,) uint8 for ``"train"`` or ``"test"``.

    Float images must be finite, labels whole numbers from 0 (and below ``MAX_CLASSES``).
    """
    image_stem, label_stem = SPLITS[split]
    image_file, label_file = _split_file(folder, image_stem), _split_file(folder, label_stem)
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3:
        raise DataError(
            f"{image_file}: expected images of shape (n, rows, cols), got {images.shape}"
        )
    if labels.ndim != 1:
        raise DataError(f"{label_file}: expected a 1-D array of labels, got {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{folder}: {images.shape[0]} {split} images but {labels.shape[0]} labels")
    if images.size == 0:
        raise DataError(f"{image_file}: holds no images (its header says {images.shape})")
    if images.dtype.kind == "f" and not np.all(np.isfinite(images)):
        raise DataError(f"{image_file}: the {split} images contain NaN or infinity")
    if labels.dtype.kind == "f" and not (
        np.all(np.isfinite(labels)) and np.all(labels == np.round(labels))
    ):
        raise DataError(f"{label_file}: labels must be whole numbers, got {labels.dtype} values")
    if labels.min() < 0:
        raise DataError(f"{label_file}: labels must be 0 or more, got {labels.min():g}")
    if labels.max() >= MAX_CLASSES:
        raise DataError(
            f"{label_file}: labels go up to {labels.max():g}, but they are class indices 0 to "
            f"K-1, one output unit each, with K at most {MAX_CLASSES}"
        )
    return images.reshape(images.shape[0], -1), labels


def load_dataset(
    dataset: str = "fashion-mnist",
    data_dir: str | os.PathLike | None = None,
    classes: int | None = None,
) -> Dataset:
    """Find and read a dataset: ``X_train, y_train, X_test, y_test, source``.

    The test labels must be below ``classes``, the outputs of the model to be evaluated;
    without it, within the classes the training labels make.
    """
    folder = find_dataset(dataset, data_dir)
    X_train, y_train = load_split(folder, "train")
    X_test, y_test = load_split(folder, "test")
    if X_train.shape[1] != X_test.shape[1]:
        raise DataError(f"{folder}: train and test images differ in size")
    limit = f"the model has {classes} outputs"
    if classes is None:
        classes = int(y_train.max()) + 1
        limit = f"the training labels make {classes} classes"
    if y_test.max() >= classes:
        raise DataError(
            f"{_split_file(folder, SPLITS['test'][1])}: labels go up to {y_test.max():g}, "
            f"but {limit} (labels 0 to {classes - 1})"
        )
    return Dataset(X_train, y_train, X_test, y_test, folder)
