"""Synthetic MNIST-shaped data: learnable, reproducible, and written in the real file layout.

For machines without a dataset (CI's fixtures, the GPU check): each class lights up its own
band of rows over a noisy background, so a model can learn it and accuracy means something.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from .data import SPLITS, write_idx

PROG = "python -m mlp.synthetic"


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
    """Write train and test splits as IDX files named like MNIST's; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = make_images(n, classes, side, split_seed)
        image_stem, label_stem = SPLITS[split]
        write_idx(folder / (image_stem + suffix), images)
        write_idx(folder / (label_stem + suffix), labels)
    return folder


#: IDX stores each dimension as an unsigned 32-bit integer.
MAX_COUNT = 2**32 - 1


def write_command_dataset(folder: Path, n_train: int, n_test: int) -> None:
    """Write plain IDX files and print the folder; a file system error is one line."""
    try:
        print(write_dataset(folder, n_train, n_test, gz=False))
    except OSError as exc:
        where = exc.filename or folder
        why = "it is a file, not a folder" if isinstance(exc, FileExistsError) else exc.strerror
        raise OSError(f"cannot write the dataset to {str(where)!r}: {why or exc}") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m mlp.synthetic FOLDER [N_TRAIN N_TEST]``: plain (fast) IDX files."""
    from .train import OneLineParser, bounded, named_path, run_reporting_errors

    count = bounded(int, lambda v: 0 < v <= MAX_COUNT, f"an integer from 1 to {MAX_COUNT}")
    p = OneLineParser(
        prog=PROG,
        description="Write a learnable MNIST-shaped dataset as IDX files (for offline runs).",
    )
    p.add_argument("folder", type=named_path)
    p.add_argument("n_train", type=count, nargs="?", default=60_000)
    p.add_argument("n_test", type=count, nargs="?", default=10_000)
    args = p.parse_args(argv)
    return run_reporting_errors(
        PROG,
        lambda: write_command_dataset(args.folder, args.n_train, args.n_test),
        out_of_memory="try smaller N_TRAIN and N_TEST",
    )


if __name__ == "__main__":
    sys.exit(main())
