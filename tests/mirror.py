"""A loopback HTTP mirror of a small dataset, for the download tests: the files' bytes and
digests, and a handler that serves each file well or badly as its path says."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import socket
import time
from collections import Counter
from pathlib import Path
from typing import ClassVar

import numpy as np

from mlp.data import SPLITS
from mlp.data.synthetic import make_images


def dataset_files(n_train=300, n_test=100) -> dict[str, bytes]:
    """The four gzipped IDX files of a small learnable dataset, as bytes."""
    out = {}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = make_images(n, seed=seed)
        for stem, array in zip(SPLITS[split], (images, labels), strict=True):
            header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
            out[stem + ".gz"] = gzip.compress(header + array.tobytes(), mtime=0)
    return out


FILE_BYTES = dataset_files()
DIGESTS = {name: hashlib.sha256(data).hexdigest() for name, data in FILE_BYTES.items()}


class Handler(http.server.BaseHTTPRequestHandler):
    """``/<behaviour>/<file>``: good, corrupt, short, truncated, missing, stall, slow, flaky,
    drip (a byte every 0.2 s, for ever), labelled (sent with ``Content-Encoding: gzip``),
    endless (zeros, no length said, until the client hangs up) and oversized (announces a
    gigabyte)."""

    hits: ClassVar[Counter] = Counter()

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        _, behaviour, name = self.path.split("/", 2)
        Handler.hits[(behaviour, name)] += 1
        data = FILE_BYTES.get(name)
        if data is None or behaviour == "missing":
            self.send_error(404)
            return
        if behaviour == "flaky" and Handler.hits[(behaviour, name)] == 1:
            self.send_error(503)
            return
        if behaviour == "corrupt":  # same length, a few bytes flipped
            data = bytearray(data)
            data[len(data) // 2] ^= 0xFF
            data = bytes(data)
        if behaviour == "short":  # a consistent but incomplete file
            data = data[: len(data) // 2]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if behaviour == "labelled":  # a .gz said to be gzip-encoded, as some servers say
            self.send_header("Content-Encoding", "gzip")
        if behaviour != "endless":
            length = 1 << 30 if behaviour == "oversized" else len(data)
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if behaviour in ("drip", "endless"):
            self._pour(
                b"\0" if behaviour == "drip" else bytes(1 << 16), 0.2 * (behaviour == "drip")
            )
            return
        if behaviour == "truncated":  # promises all, sends half, hangs up
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if behaviour == "stall":  # half, then silence past the client's timeout
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            time.sleep(3)
            return
        if behaviour == "slow":  # slow but steady: finishes
            step = max(1, len(data) // 5)
            for i in range(0, len(data), step):
                self.wfile.write(data[i : i + step])
                self.wfile.flush()
                time.sleep(0.05)
            return
        self.wfile.write(data)

    def _pour(self, chunk: bytes, pause: float) -> None:
        """``chunk`` after ``chunk``, ``pause`` seconds apart, until the client is gone (or a
        minute has passed: a test server stops by itself)."""
        end = time.monotonic() + 60
        with contextlib.suppress(OSError):
            while time.monotonic() < end:
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(pause)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def contents(folder: Path) -> list[str]:
    """Every entry in the folder, hidden and temporary ones included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
