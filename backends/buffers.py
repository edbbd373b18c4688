"""Device memory a training step reuses: work buffers, allocated on its first run and never
again, and counters that device work advances."""

from __future__ import annotations

from typing import Any

import numpy as np


class BufferCache:
    """Named work buffers on one backend, allocated on first use for each shape and reused."""

    def __init__(self, backend: Any, limit: int = 16) -> None:
        self.backend = backend
        self.limit = limit
        self._buffers: dict[tuple, Any] = {}

    def get(self, name: str, shape: tuple, dtype: Any) -> Any:
        key = (name, tuple(shape), np.dtype(dtype).str)
        out = self._buffers.get(key)
        if out is None:
            if len(self._buffers) >= self.limit:
                self._buffers.clear()  # shapes keep changing: start afresh, never grow unbounded
            out = self._buffers[key] = self.backend.empty(shape, dtype)
        return out

    def arrays(self) -> tuple:
        """Every buffer held now (a recorded step keeps them alive: see ``Backend.capture``)."""
        return tuple(self._buffers.values())


class DeviceCounter:
    """An integer kept on the device, advanced by a fixed amount by device work, so that a
    recorded step (``Backend.capture``) counts on by itself with no value from the host.
    Reading it back waits for the device: do it rarely (once per epoch, at a save)."""

    def __init__(self, backend: Any, by: int = 1, value: int = 0) -> None:
        self.backend = backend
        self.array = backend.asarray(np.array([value], np.int64))
        self._by = backend.asarray(np.array([by], np.int64))

    def advance(self) -> None:
        self.backend.add(self.array, self._by, out=self.array)

    def read(self) -> int:
        return int(self.backend.to_numpy(self.array)[0])

    def set(self, value: int) -> None:
        with self.backend.activated():  # the copy runs on the counter's GPU, even a second one
            self.array[...] = self.backend.asarray(np.array([value], np.int64))

    def arrays(self) -> tuple:
        """The device arrays it uses (a recorded step keeps them alive)."""
        return (self.array, self._by)
