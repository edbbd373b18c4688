"""``python -m mlp.cli.download`` offline, and ``mlp-train`` fetching a missing dataset from
the loopback mirror (``tests/mirror.py``), offline, or not at all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from mlp.cli import download
from mlp.data.download import (
    MIRRORS_ENV,
    REGISTRY,
    ensure_dataset,
)
from tests.helpers import ROOT, run
from tests.mirror import DIGESTS, FILE_BYTES, Handler, closed_port_url, contents


# ----------------------------------------------------------------------------- mlp-train
def train_main(argv, capsys):
    from mlp.cli import train

    return run(train.main, argv, capsys)


TRAIN = ["--dataset", "mnist", "--epochs", "1", "--hidden", "16"]


def test_module_entry_point_offline(cache, capsys, monkeypatch):
    monkeypatch.setenv(MIRRORS_ENV, closed_port_url())
    monkeypatch.setattr(
        download, "ensure_dataset", lambda *a, **k: ensure_dataset(*a, **k, retries=0, timeout=1)
    )
    assert download.main(["kmnist", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m mlp.cli.download: error: could not download kmnist")
    assert err.count("\n") == 1


def test_mlp_train_downloads_a_missing_dataset(cache, server, capsys, monkeypatch):
    registry = "\n".join(f"{d}  {n}" for n, d in DIGESTS.items())
    monkeypatch.setitem(REGISTRY, "mnist", ((), registry))
    monkeypatch.setenv(MIRRORS_ENV, f"{server}/missing/,{server}/good/")
    code, out, err = train_main(TRAIN, capsys)
    folder = cache.parent / "xdg" / "mlp" / "mnist"
    assert code == 0, err
    assert err == f"mnist is not on this machine: downloading it into {folder} (SHA-256 checked)\n"
    assert f"mnist from {folder}" in out
    assert contents(folder) == sorted(FILE_BYTES)
    Handler.hits.clear()
    code, _, err = train_main(TRAIN, capsys)  # the second run finds it in the cache
    assert code == 0 and err == "" and sum(Handler.hits.values()) == 0


def test_mlp_train_offline(cache, capsys, monkeypatch):
    monkeypatch.setenv(MIRRORS_ENV, closed_port_url())
    monkeypatch.setattr(
        "mlp.cli.common.ensure_dataset", lambda *a, **k: ensure_dataset(*a, **{**k, "retries": 0})
    )
    code, out, err = train_main(TRAIN, capsys)
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
    code, _, err = train_main([*TRAIN, "--no-download"], capsys)
    assert code == 1 and sum(Handler.hits.values()) == 0
    assert err.startswith("mlp-train: error: mnist not found (looked in ")
    assert err.endswith("(downloading is off: --no-download)\n")


def test_sigterm_during_a_download_leaves_no_temporary_file(server, tmp_path):
    """A SIGTERM left a 1.36 GB temporary file in the cache; now the download stops as on
    Ctrl-C, with one line, and nothing is left."""
    cache = tmp_path / "xdg"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XDG_CACHE_HOME": str(cache),
        "MLP_DATASET_MIRRORS": f"{server}/drip/",
    }
    env.pop("MLP_DATA_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlp.cli.download", "kmnist", "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    folder = cache / "mlp" / "kmnist"
    deadline = time.monotonic() + 60
    while not (folder.exists() and any(folder.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)  # the temporary file is there: the download is under way
    assert any(folder.iterdir())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err == "python -m mlp.cli.download: stopped by SIGTERM\n"
    assert list(folder.iterdir()) == []
