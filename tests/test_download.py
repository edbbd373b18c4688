"""The real download code (pooch underneath) against a loopback HTTP server that serves good,
corrupted, truncated, missing (404), stalled and flaky files: only verified files ever land
in the cache, and a failure names what happened and what to do."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

pytest.importorskip("pooch", reason="downloads use pooch (pip install pooch)")

from mlp.cli import download
from mlp.data import SPLITS, write_idx
from mlp.data.download import (
    FILES,
    MIRRORS_ENV,
    REGISTRY,
    DownloadError,
    ensure_dataset,
    fetch_dataset,
    fetch_files,
    manual_options,
    mirrors_for,
    pinned_digests,
)
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
    """``/<behaviour>/<file>``: good, corrupt, short, truncated, missing, stall, slow, flaky."""

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
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
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


def closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def contents(folder: Path) -> list[str]:
    """Every entry in the folder, hidden and temporary ones included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def fetch(cache, *behaviours, server, retries=0, timeout=1.0, files=None):
    mirrors = [f"{server}/{b}/" for b in behaviours]
    return fetch_files(files or DIGESTS, mirrors, cache, retries=retries, timeout=timeout)


# ----------------------------------------------------------------------------- the happy path
def test_good_mirror_downloads_verified_files(cache, server):
    folder = fetch(cache, "good", server=server)
    assert folder == cache
    assert contents(cache) == sorted(FILE_BYTES)
    for name, data in FILE_BYTES.items():
        assert (cache / name).read_bytes() == data


def test_verified_files_are_not_downloaded_again(cache, server):
    fetch(cache, "good", server=server)
    Handler.hits.clear()
    fetch(cache, "good", server=server)
    assert sum(Handler.hits.values()) == 0


def test_a_damaged_cached_file_is_replaced(cache, server):
    fetch(cache, "good", server=server)
    name = "train-labels-idx1-ubyte.gz"
    (cache / name).write_bytes(b"garbage")
    Handler.hits.clear()
    fetch(cache, "good", server=server)
    assert (cache / name).read_bytes() == FILE_BYTES[name]
    assert Handler.hits == Counter({("good", name): 1})


def test_slow_but_steady_mirror_completes(cache, server):
    name = "train-labels-idx1-ubyte.gz"
    fetch(cache, "slow", server=server, files={name: DIGESTS[name]}, timeout=2.0)
    assert contents(cache) == [name]


def test_progress_bar_while_downloading(cache, server, capsys):
    pytest.importorskip("tqdm")
    name = "train-images-idx3-ubyte.gz"
    fetch_files({name: DIGESTS[name]}, [f"{server}/good/"], cache, progress=True)
    shown = capsys.readouterr().err
    assert "100%" in shown and "B/s" in shown  # tqdm's bar, in bytes


# ----------------------------------------------------------------------------- failures
@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("corrupt", "SHA-256 mismatch"),
        ("short", "SHA-256 mismatch"),
        ("truncated", "connection dropped mid-file"),
        ("missing", "HTTP 404"),
        ("stall", "timed out"),
    ],
)
def test_bad_mirror_fails_cleanly_and_leaves_nothing(cache, server, behaviour, reason):
    with pytest.raises(DownloadError) as info:
        fetch(cache, behaviour, server=server, timeout=0.5)
    message = str(info.value)
    assert re.search(reason, message), message
    assert f"{server}/{behaviour}/train-images-idx3-ubyte.gz" in message
    assert "\n" not in message
    assert contents(cache) == []  # no partial file, no temporary file


def test_next_mirror_is_tried(cache, server):
    fetch(cache, "missing", "corrupt", "truncated", "good", server=server)
    assert contents(cache) == sorted(FILE_BYTES)
    name = "t10k-labels-idx1-ubyte.gz"
    assert Handler.hits[("missing", name)] == Handler.hits[("good", name)] == 1


def test_retries_with_backoff(cache, server):
    name = "train-labels-idx1-ubyte.gz"
    started = time.monotonic()
    fetch(cache, "flaky", server=server, retries=1, files={name: DIGESTS[name]})
    assert Handler.hits[("flaky", name)] == 2  # 503, then the file
    assert time.monotonic() - started >= 1.0  # waited before retrying
    assert contents(cache) == [name]


def test_a_404_is_not_retried(cache, server):
    name = "train-labels-idx1-ubyte.gz"
    started = time.monotonic()
    fetch(cache, "missing", "good", server=server, retries=2, files={name: DIGESTS[name]})
    assert Handler.hits[("missing", name)] == 1 and time.monotonic() - started < 1.0
    assert contents(cache) == [name]


# ----------------------------------------------------------------------------- datasets
def test_registry_pins_every_file_of_every_dataset():
    for dataset, (mirrors, _) in REGISTRY.items():
        digests = pinned_digests(dataset)
        assert sorted(digests) == sorted(FILES), dataset
        assert all(re.fullmatch(r"[0-9a-f]{64}", d) for d in digests.values()), dataset
        assert mirrors and all(m.startswith(("https://", "http://")) for m in mirrors)
    assert len({d for ds in REGISTRY for d in pinned_digests(ds).values()}) == 12


def test_mirrors_configured_by_environment_replace_the_official_ones(monkeypatch):
    monkeypatch.delenv(MIRRORS_ENV, raising=False)
    assert mirrors_for("kmnist") == list(REGISTRY["kmnist"][0])
    monkeypatch.setenv(MIRRORS_ENV, "http://a.example/{dataset}, http://b.example/x/")
    assert mirrors_for("mnist") == ["http://a.example/mnist/", "http://b.example/x/"]
    assert mirrors_for("mnist", ["http://c.example"]) == ["http://c.example/"]


def test_fetch_dataset_into_the_user_cache(cache, server, monkeypatch):
    monkeypatch.setitem(REGISTRY, "mnist", ((), "\n".join(f"{d}  {n}" for n, d in DIGESTS.items())))
    folder = fetch_dataset("mnist", mirrors=[f"{server}/good/"])
    assert folder == cache.parent / "xdg" / "mlp" / "mnist"
    assert contents(folder) == sorted(FILE_BYTES)
    assert ensure_dataset("mnist", download=False) == folder  # found now, no download


def test_real_digests_reject_other_files(cache, server):
    """The pinned MNIST digests do not match our synthetic files: refused, nothing kept."""
    with pytest.raises(DownloadError, match=r"could not download mnist .*SHA-256 mismatch"):
        fetch_dataset("mnist", mirrors=[f"{server}/good/"], retries=0)
    assert contents(cache.parent / "xdg" / "mlp" / "mnist") == []


def test_offline_error_names_the_manual_options(cache):
    with pytest.raises(DownloadError) as info:
        fetch_dataset("fashion-mnist", mirrors=[closed_port_url()], retries=0, timeout=1)
    message = str(info.value)
    assert "could not download fashion-mnist" in message
    assert "cannot connect" in message
    for option in ("--data-dir", "MLP_DATA_DIR", "apt install dataset-fashion-mnist", *FILES):
        assert option in message
    assert "dataset-fashion-mnist" not in manual_options("kmnist")


def test_no_download_is_respected(cache, server):
    with pytest.raises(FileNotFoundError, match=r"kmnist not found .*--no-download"):
        ensure_dataset("kmnist", download=False, mirrors=[f"{server}/good/"])
    assert sum(Handler.hits.values()) == 0


def test_without_pooch_the_error_says_how_to_get_it(cache, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pooch", None)
    with pytest.raises(DownloadError, match="pip install pooch"):
        fetch_files(DIGESTS, ["http://127.0.0.1:9/"], cache)


def test_module_entry_point_offline(cache, capsys, monkeypatch):
    monkeypatch.setenv(MIRRORS_ENV, closed_port_url())
    monkeypatch.setattr(
        download, "ensure_dataset", lambda *a, **k: ensure_dataset(*a, **k, retries=0, timeout=1)
    )
    assert download.main(["kmnist", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m mlp.cli.download: error: could not download kmnist")
    assert err.count("\n") == 1


def test_write_idx_files_match_served_bytes(tmp_path):
    """The server's files are ordinary IDX files: mlp.data reads them."""
    from mlp.data import read_idx

    name = "train-labels-idx1-ubyte.gz"
    (tmp_path / name).write_bytes(FILE_BYTES[name])
    labels = read_idx(tmp_path / name)
    write_idx(tmp_path / "again.gz", labels)
    assert read_idx(tmp_path / "again.gz").tolist() == labels.tolist()


# ----------------------------------------------------------------------------- mlp-train
def cli(argv, capsys):
    from mlp.cli import train

    try:
        code = train.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


TRAIN = ["--dataset", "mnist", "--epochs", "1", "--hidden", "16"]


def test_mlp_train_downloads_a_missing_dataset(cache, server, capsys, monkeypatch):
    registry = "\n".join(f"{d}  {n}" for n, d in DIGESTS.items())
    monkeypatch.setitem(REGISTRY, "mnist", ((), registry))
    monkeypatch.setenv(MIRRORS_ENV, f"{server}/missing/,{server}/good/")
    code, out, err = cli(TRAIN, capsys)
    folder = cache.parent / "xdg" / "mlp" / "mnist"
    assert code == 0, err
    assert err == f"mnist is not on this machine: downloading it into {folder} (SHA-256 checked)\n"
    assert f"mnist from {folder}" in out
    assert contents(folder) == sorted(FILE_BYTES)
    Handler.hits.clear()
    code, _, err = cli(TRAIN, capsys)  # the second run finds it in the cache
    assert code == 0 and err == "" and sum(Handler.hits.values()) == 0


def test_mlp_train_offline(cache, capsys, monkeypatch):
    monkeypatch.setenv(MIRRORS_ENV, closed_port_url())
    monkeypatch.setattr(
        "mlp.cli.common.ensure_dataset", lambda *a, **k: ensure_dataset(*a, **{**k, "retries": 0})
    )
    code, out, err = cli(TRAIN, capsys)
    assert code == 1 and out == ""
    last = err.splitlines()[-1]
    assert err.count("\n") == 2  # the announcement, then the error
    assert last.startswith("mlp-train: error: could not download mnist (")
    assert "cannot connect (offline?)" in last
    assert (
        "put train-images-idx3-ubyte.gz, " in last
        and "pass --data-dir, or set MLP_DATA_DIR" in last
    )
    assert contents(cache.parent / "xdg" / "mlp" / "mnist") == []


def test_mlp_train_no_download(cache, server, capsys, monkeypatch):
    monkeypatch.setenv(MIRRORS_ENV, f"{server}/good/")
    code, _, err = cli([*TRAIN, "--no-download"], capsys)
    assert code == 1 and sum(Handler.hits.values()) == 0
    assert err.startswith("mlp-train: error: mnist not found (looked in ")
    assert err.endswith("(downloading is off: --no-download)\n")
