"""Datasets: MNIST-family IDX files (``idx.py``), finding and loading them (``datasets.py``),
downloading them (``download.py``), and learnable synthetic ones (``synthetic.py``).

>>> from mlp.data import load_dataset
>>> data = load_dataset("fashion-mnist")  # X_train, y_train, X_test, y_test, source
"""

from ..errors import DataError, DatasetNotFound, DownloadError
from .datasets import (
    CLASS_NAMES,
    CLASSES,
    DATASETS,
    FILE_NAMES,
    IMAGE_SHAPE,
    SPLITS,
    SYSTEM_DIRS,
    Dataset,
    candidate_dirs,
    find_dataset,
    load_dataset,
    load_split,
    user_cache_dir,
)
from .download import ensure_dataset, fetch_dataset
from .idx import parse_idx, read_idx, write_idx

__all__ = [
    "CLASSES",
    "CLASS_NAMES",
    "DATASETS",
    "FILE_NAMES",
    "IMAGE_SHAPE",
    "SPLITS",
    "SYSTEM_DIRS",
    "DataError",
    "Dataset",
    "DatasetNotFound",
    "DownloadError",
    "candidate_dirs",
    "ensure_dataset",
    "fetch_dataset",
    "find_dataset",
    "load_dataset",
    "load_split",
    "parse_idx",
    "read_idx",
    "user_cache_dir",
    "write_idx",
]
