"""Synthetic MNIST-shaped data: learnable, reproducible, and written in the real file layout.

For machines without a dataset (CI's fixtures, the GPU check): each class lights up its own
band of rows over a noisy background, so a model can learn it and accuracy means something.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import CannotWrite
from .datasets import SPLITS
from .idx import write_idx


def make_images(
    n: int, classes: int = 10, side: int = 28, seed: int = 0, label_noise: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images of ``side``×``side`` pixels and their labels in ``[0, classes)``.

    A fraction ``label_noise`` of the labels is redrawn at random, so accuracy tops out near
    ``1 - label_noise`` and the loss stays well above zero, as on real data.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, side, side), dtype=np.uint8)
    band = max(1, side // classes)
    for c in range(classes):
        start = (c * side) // classes
        images[labels == c, start : start + band, :] = 255
    noisy = rng.random(n) < label_noise
    labels[noisy] = rng.integers(0, classes, size=int(noisy.sum()))
    return images, labels


def write_dataset(
    folder: str | os.PathLike,
    n_train: int = 60_000,
    n_test: int = 10_000,
    classes: int = 10,
    side: int = 28,
    seed: int = 0,
    gz: bool = True,
) -> Path:
    """Write train and test splits as IDX files named like MNIST's; returns the folder.

    A folder that already holds one of those files, plain or gzipped, is refused before
    anything is written: a loader reads the plain file first, so synthetic files beside a
    real dataset would silently stand in for it. A file system error (the folder is a file,
    or not writable) is a ``CannotWrite`` too."""
    folder = Path(folder)
    suffix = ".gz" if gz else ""
    taken = [
        path.name
        for stem in (stem for files in SPLITS.values() for stem in files)
        for path in (folder / stem, folder / f"{stem}.gz")
        if os.path.lexists(path)
    ]
    if taken:
        raise CannotWrite(
            f"{folder} already holds {', '.join(taken)}: write the synthetic dataset to a "
            "folder without one, or remove them first"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
            images, labels = make_images(n, classes, side, split_seed)
            image_stem, label_stem = SPLITS[split]
            write_idx(folder / (image_stem + suffix), images)
            write_idx(folder / (label_stem + suffix), labels)
    except CannotWrite:  # a file that could not be written, already named
        raise
    except OSError as exc:
        where = exc.filename or folder
        why = "it is a file, not a folder" if isinstance(exc, FileExistsError) else exc.strerror
        raise CannotWrite(f"cannot write the dataset to {str(where)!r}: {why or exc}") from None
    return folder
