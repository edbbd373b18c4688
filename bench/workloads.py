"""The benchmark's workloads and their data: Fashion-MNIST when present, else synthetic.

Every workload is float32 softmax cross-entropy over one epoch of 60,000 samples of 784
features, as Fashion-MNIST's training set is. An epoch may be cut to a number of steps
(``steps``) for quick runs; the limit is then cut the same way, so ratios stay honest.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Samples in one epoch: the size of Fashion-MNIST's training set.
EPOCH_SAMPLES = 60_000
FEATURES = 784
CLASSES = 10
DATASET = "fashion-mnist"


@dataclass(frozen=True)
class Workload:
    """One model and training set-up: layer sizes, batch size and optimizer."""

    name: str
    sizes: tuple[int, ...]
    batch_size: int
    optimizer: str  # "momentum" (SGD, momentum 0.9) or "adam"
    lr: float
    activation: str = "relu"
    momentum: float = 0.9

    @property
    def label(self) -> str:
        return "-".join(str(s) for s in self.sizes)

    def describe(self) -> str:
        opt = f"SGD momentum {self.momentum}" if self.optimizer == "momentum" else "Adam"
        return f"{self.label} {self.activation}, batch {self.batch_size}, {opt} lr {self.lr:g}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sizes"] = list(self.sizes)
        out["description"] = self.describe()
        return out


WORKLOADS: dict[str, Workload] = {
    "tiny": Workload("tiny", (784, 128, 10), 64, "momentum", 0.01),
    "std": Workload("std", (784, 512, 256, 10), 128, "adam", 1e-3),
    "big": Workload("big", (784, 2048, 2048, 10), 512, "adam", 1e-3),
    # std with larger batches: fewer, larger products per epoch, where a GPU pulls ahead.
    "std-b256": Workload("std-b256", (784, 512, 256, 10), 256, "adam", 1e-3),
    "std-b1024": Workload("std-b1024", (784, 512, 256, 10), 1024, "adam", 1e-3),
}
#: What ``python -m bench`` runs unless told otherwise.
DEFAULT_WORKLOADS = ("tiny", "std", "big")


def epoch_samples(workload: Workload, steps: int | None = None) -> int:
    """Samples in one (possibly shortened) epoch: all 60,000, or ``steps`` batches."""
    if steps is None:
        return EPOCH_SAMPLES
    return min(EPOCH_SAMPLES, steps * workload.batch_size)


def batch_sizes(workload: Workload, samples: int) -> list[tuple[int, int]]:
    """``[(rows, count), ...]``: the batches of one epoch, the last one possibly smaller."""
    full, rest = divmod(samples, workload.batch_size)
    out = [(workload.batch_size, full)] if full else []
    if rest:
        out.append((rest, 1))
    return out


def steps_per_epoch(workload: Workload, samples: int) -> int:
    return math.ceil(samples / workload.batch_size)


def real_data_problem() -> str | None:
    """Why Fashion-MNIST cannot be used (``None``: it is on disk where ``mlp.data`` looks;
    a folder it cannot search, it skips)."""
    from mlp.data import DatasetNotFound, find_dataset

    try:
        find_dataset(DATASET)
    except DatasetNotFound:
        return f"{DATASET} is not on disk (see README: make data)"
    return None


def synthetic_data(samples: int = EPOCH_SAMPLES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST-shaped float32 data in [0, 1] with 10 classes (each a brighter band)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=samples).astype(np.int64)
    X = rng.random((samples, FEATURES), dtype=np.float32)
    X *= 0.5
    band = FEATURES // CLASSES
    for c in range(CLASSES):
        X[y == c, c * band : (c + 1) * band] += 0.5
    return X, y


def training_data(real: bool, samples: int = EPOCH_SAMPLES) -> tuple[np.ndarray, np.ndarray, str]:
    """``(X float32 in [0, 1], y int64, source)`` for the first ``samples`` training rows."""
    if real:
        from mlp.data import load_dataset

        data = load_dataset(DATASET)
        X = np.multiply(data.X_train[:samples], np.float32(1 / 255), dtype=np.float32)
        return X, data.y_train[:samples].astype(np.int64), f"{DATASET} ({data.source})"
    X, y = synthetic_data(samples)
    return X, y, "synthetic (Fashion-MNIST-shaped)"
