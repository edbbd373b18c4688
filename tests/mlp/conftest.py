"""Fixtures the library's tests share: a small problem to learn, and, for the library's and the
commands' download tests, the loopback mirror (``tests/mirror.py``) and an empty user cache."""

from __future__ import annotations

import http.server
import threading

import pytest

from mlp.data.download import MIRRORS_ENV
from tests.mirror import Handler
from tests.mlp.problems import blobs


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty user cache, and no configured mirrors or data folders from the environment."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(MIRRORS_ENV, raising=False)
    monkeypatch.delenv("MLP_DATA_DIR", raising=False)
    Handler.hits.clear()
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def problem():
    """Training and test blobs: four classes of ten features."""
    X, y = blobs(400, seed=1)
    X_test, y_test = blobs(200, seed=2)
    return X, y, X_test, y_test
