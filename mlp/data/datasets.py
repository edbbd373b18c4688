"""MNIST-family datasets on disk: where they are looked for, and reading and checking them.

MNIST, Fashion-MNIST and KMNIST share one layout: ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
plain or gzipped (``mlp/data/idx.py``). Images are returned as uint8 rows of 784 pixels
(compact: the model scales them on the device), labels as uint8. The files are checked as
they are read, so that a problem names the file it is in.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .. import checks
from ..errors import DataError, DatasetNotFound, DownloadError, InvalidArgument
from .idx import read_idx

DATASETS = ("fashion-mnist", "mnist", "kmnist")
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: Where Debian's dataset packages (``apt install dataset-fashion-mnist``) put the files.
SYSTEM_DIRS = (Path("/usr/share/datasets"), Path("/usr/local/share/datasets"))
#: Each dataset's class names, in label order (KMNIST's: the romanized hiragana).
CLASS_NAMES = {
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    "mnist": tuple(str(digit) for digit in range(10)),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}  # fmt: skip
#: Each dataset's classes: a label beyond is a mistake (a corrupt file, another dataset).
CLASSES = {name: len(names) for name, names in CLASS_NAMES.items()}
#: Every MNIST-family image: 28×28 grayscale, light strokes on a dark (zero) background.
IMAGE_SHAPE = (28, 28)


class Dataset(NamedTuple):
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    source: Path

    def digest(self) -> str:
        """A fingerprint of the four arrays (values, dtypes and shapes), whatever folder or
        file form they came from: a resumed run checks it trains on the data it began on
        (SHA-256, about 0.04 s over Fashion-MNIST)."""
        fingerprint = hashlib.sha256()
        for array in self[:4]:
            fingerprint.update(f"{array.dtype.str}{array.shape}".encode())
            fingerprint.update(np.ascontiguousarray(array).data)
        return fingerprint.hexdigest()


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


def home() -> Path:
    """The user's home folder; where none can be found (no ``$HOME`` and no passwd entry, a
    container's arbitrary user), ``/nonexistent``, as Debian names a home that is not there."""
    try:
        return Path.home()
    except (RuntimeError, KeyError):  # KeyError: the password database's, on some Pythons
        return Path("/nonexistent")


def user_cache_dir(dataset: str) -> Path:
    """``$XDG_CACHE_HOME/mlp/<dataset>``, by default ``~/.cache/mlp/<dataset>``; a relative
    ``XDG_CACHE_HOME`` is ignored, as the XDG base directory specification says."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else home() / ".cache"
    return root / "mlp" / dataset


def usable_cache_dir(dataset: str) -> Path:
    """``user_cache_dir``, where a download may create it: never under a home folder that
    does not exist (``HOME=/nonexistent``), which a download would otherwise make."""
    folder = user_cache_dir(dataset)
    if not os.path.isabs(os.environ.get("XDG_CACHE_HOME", "")) and not home().is_dir():
        raise DownloadError(
            f"no user cache to download {dataset} into: the home folder {home()} does not "
            "exist; set XDG_CACHE_HOME to a folder, or put the files in one and pass --data-dir"
        )
    return folder


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


def load_split(
    folder: Path, split: str, classes: int, dtype: Any = None, dataset: str = "the dataset"
) -> tuple[np.ndarray, np.ndarray]:
    """Images as (n, rows*cols) and labels as (n,) for ``"train"`` or ``"test"``: integer
    pixels as uint8 (0 to 255, whatever the file's type), float pixels as they are.

    Float images must be finite (as ``dtype`` would hold them, where given), labels whole
    numbers from 0 below ``classes``, the ``dataset``'s; an error names the file.
    """
    images, labels = _read_split(folder, split, classes, dtype, dataset)
    return images.reshape(images.shape[0], -1), labels


def _read_split(
    folder: Path, split: str, classes: int, dtype: Any, dataset: str
) -> tuple[np.ndarray, np.ndarray]:
    """``load_split``'s images as (n, rows, cols)."""
    if split not in SPLITS:
        raise InvalidArgument(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    files = [(stem, _split_file(folder, stem)) for stem in SPLITS[split]]
    for stem, found in files:
        if found is None:
            raise DatasetNotFound(f"{folder} lacks {stem}[.gz]: put it there")
    (_, image_file), (_, label_file) = files
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
    if images.dtype.kind == "f":
        problem = checks.unrepresentable(images, np.float64 if dtype is None else dtype)
        if problem:
            raise DataError(
                f"{image_file}: the {split} images hold {problem}"
                + ("" if problem == checks.NOT_FINITE else " (use --dtype float64, or scale them)")
            )
    elif images.dtype != np.uint8:  # pixels are scaled as bytes: wider ones must fit
        if images.min() < 0 or images.max() > 255:
            raise DataError(
                f"{image_file}: {images.dtype} pixels from {images.min()} to {images.max()}; "
                "integer pixels must be 0 to 255 (store them as uint8, or as floats)"
            )
        images = images.astype(np.uint8)
    if labels.dtype.kind == "f" and not (
        np.all(np.isfinite(labels)) and np.all(labels == np.round(labels))
    ):
        raise DataError(f"{label_file}: labels must be whole numbers, got {labels.dtype} values")
    if labels.min() < 0:
        raise DataError(f"{label_file}: labels must be 0 or more, got {labels.min():g}")
    check_label_range(label_file, labels, classes, f"{dataset} has {classes} classes")
    return images, labels


def check_label_range(where: Path, labels: np.ndarray, classes: int, limit: str) -> None:
    """Labels below ``classes``; ``limit`` says what makes it the bound."""
    if labels.max() >= classes:
        raise DataError(
            f"{where}: labels go up to {labels.max():g}, but {limit} (labels 0 to {classes - 1})"
        )


def load_dataset(
    dataset: str = "fashion-mnist",
    data_dir: str | os.PathLike | None = None,
    classes: int | None = None,
    dtype: Any = None,
) -> Dataset:
    """Find and read a dataset: ``X_train, y_train, X_test, y_test, source``.

    Every label must be one of the dataset's classes (``CLASSES``), and the test labels
    below ``classes`` too where given: the outputs of the model they will be compared with.
    Float images must be finite as ``dtype`` (the model's) would hold them.
    """
    folder = find_dataset(dataset, data_dir)
    known = CLASSES[dataset]
    (X_train, y_train), (X_test, y_test) = (
        _read_split(folder, split, known, dtype, dataset) for split in ("train", "test")
    )
    if X_train.shape[1:] != X_test.shape[1:]:
        raise DataError(
            f"{folder}: the train images are {'×'.join(map(str, X_train.shape[1:]))} pixels "
            f"but the test images {'×'.join(map(str, X_test.shape[1:]))}: they must match"
        )
    X_train, X_test = (images.reshape(images.shape[0], -1) for images in (X_train, X_test))
    if classes is not None:
        where = _split_file(folder, SPLITS["test"][1])
        check_label_range(where, y_test, classes, f"the model has {classes} outputs")
    return Dataset(X_train, y_train, X_test, y_test, folder)
