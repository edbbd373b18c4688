"""Synthetic MNIST-shaped data: learnable, reproducible, and written in the real file layout.

For machines without a dataset (CI's fixtures, the GPU check): each class lights up its own
band of rows over a noisy background, so a model can learn it and accuracy means something.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .data import SPLITS, write_idx


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


def main(argv: list[str] | None = None) -> None:
    """``python -m mlp.synthetic FOLDER [N_TRAIN N_TEST]``: plain (fast) IDX files."""
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m mlp.synthetic",
        description="Write a learnable MNIST-shaped dataset as IDX files (for offline runs).",
    )
    p.add_argument("folder", type=Path)
    p.add_argument("n_train", type=int, nargs="?", default=60_000)
    p.add_argument("n_test", type=int, nargs="?", default=10_000)
    args = p.parse_args(argv)
    if args.n_train <= 0 or args.n_test <= 0:
        p.error("N_TRAIN and N_TEST must be positive")
    print(write_dataset(args.folder, args.n_train, args.n_test, gz=False))


if __name__ == "__main__":
    main()
