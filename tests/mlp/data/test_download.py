"""The real download code (pooch underneath) against a loopback HTTP server that serves good,
corrupted, truncated, missing (404), stalled and flaky files: only verified files ever land
in the cache, and a failure names what happened and what to do."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

import mlp.data.datasets
from mlp.data import DatasetNotFound, write_idx
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
from tests.mirror import DIGESTS, FILE_BYTES, Handler, closed_port_url, contents


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


def test_a_file_said_to_be_gzip_encoded_is_saved_as_sent(cache, server):
    """A server that labels a .gz ``Content-Encoding: gzip`` (by its name) sends the file
    itself: it is the file, not something to unpack, that must match its pin."""
    fetch(cache, "labelled", server=server)
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


def test_a_url_requests_cannot_fetch_is_not_retried(tmp_path, monkeypatch):
    """A file:// mirror fails at once (it was retried after 1 s and 2 s), and the way out
    names the folder the download was for, not the user cache."""
    waits = []
    monkeypatch.setattr("mlp.data.download.time.sleep", waits.append)
    with pytest.raises(DownloadError) as info:
        fetch_dataset("mnist", tmp_path / "here", mirrors=["file:///nowhere/"], retries=2)
    assert waits == [] and "InvalidSchema" in str(info.value)
    assert f"in {tmp_path / 'here'}, pass --data-dir" in str(info.value)


def test_no_download_is_respected(cache, server):
    with pytest.raises(FileNotFoundError, match=r"kmnist not found .*--no-download"):
        ensure_dataset("kmnist", download=False, mirrors=[f"{server}/good/"])
    assert sum(Handler.hits.values()) == 0


def test_without_pooch_the_error_says_how_to_get_it(cache, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pooch", None)
    with pytest.raises(DownloadError, match="pip install pooch"):
        fetch_files(DIGESTS, ["http://127.0.0.1:9/"], cache)


def test_write_idx_files_match_served_bytes(tmp_path):
    """The server's files are ordinary IDX files: mlp.data reads them."""
    from mlp.data import read_idx

    name = "train-labels-idx1-ubyte.gz"
    (tmp_path / name).write_bytes(FILE_BYTES[name])
    labels = read_idx(tmp_path / name)
    write_idx(tmp_path / "again.gz", labels)
    assert read_idx(tmp_path / "again.gz").tolist() == labels.tolist()


# ----------------------------------------------------------------------------- limits
NAME = "train-labels-idx1-ubyte.gz"


def test_a_mirror_that_drips_is_stopped_at_the_deadline(cache, server):
    """A byte every 0.2 s never trips a read timeout; the deadline for the whole file does."""
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"too slow: not done within MLP_DOWNLOAD_TIMEOUT"):
        fetch_files({NAME: DIGESTS[NAME]}, [f"{server}/drip/"], cache, retries=0, deadline=1.0)
    assert time.monotonic() - started < 10
    assert contents(cache) == []  # the temporary file is gone too


def test_the_deadline_comes_from_the_environment(cache, server, monkeypatch):
    monkeypatch.setenv("MLP_DOWNLOAD_TIMEOUT", "1")
    with pytest.raises(DownloadError, match="too slow"):
        fetch_files({NAME: DIGESTS[NAME]}, [f"{server}/drip/"], cache, retries=0)
    for bad in ("0", "-3", "soon", "nan", "inf"):
        monkeypatch.setenv("MLP_DOWNLOAD_TIMEOUT", bad)
        with pytest.raises(ValueError, match="MLP_DOWNLOAD_TIMEOUT must be a positive number"):
            fetch_files({NAME: DIGESTS[NAME]}, [f"{server}/good/"], cache, retries=0)


def test_an_endless_body_stops_at_the_pinned_size(cache, server):
    """No length announced, zeros for ever: the download stops past the file's size."""
    sizes = {NAME: len(FILE_BYTES[NAME])}
    with pytest.raises(DownloadError, match="sent more than the file's pinned size"):
        fetch_files({NAME: DIGESTS[NAME]}, [f"{server}/endless/"], cache, retries=0, sizes=sizes)
    assert contents(cache) == []


def test_a_body_announced_larger_than_the_file_is_not_read(cache, server):
    sizes = {NAME: len(FILE_BYTES[NAME])}
    with pytest.raises(DownloadError, match=r"it announces 1,073,741,824 bytes"):
        fetch_files({NAME: DIGESTS[NAME]}, [f"{server}/oversized/"], cache, sizes=sizes)
    assert contents(cache) == []


def test_the_registry_pins_each_files_size():
    from mlp.data.download import pinned_sizes

    for dataset in REGISTRY:
        sizes = pinned_sizes(dataset)
        assert sorted(sizes) == sorted(FILES) and all(n > 1000 for n in sizes.values())
    assert pinned_sizes("fashion-mnist")["train-images-idx3-ubyte.gz"] == 26_421_880


# ----------------------------------------------------------------------------- the cache
def test_a_missing_home_is_never_created(tmp_path, monkeypatch, server):
    """HOME=/nonexistent made a failed download create /nonexistent/.cache/mlp/…"""
    home = tmp_path / "no-such-home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    with pytest.raises(DownloadError, match=r"the home folder .*no-such-home does not exist"):
        fetch_dataset("mnist", mirrors=[f"{server}/good/"])
    assert not home.exists()
    said = []  # nor is a download announced that cannot start
    monkeypatch.setattr(mlp.data.datasets, "SYSTEM_DIRS", (tmp_path / "system",))
    monkeypatch.delenv("MLP_DATA_DIR", raising=False)
    with pytest.raises(DownloadError, match="does not exist"):
        ensure_dataset("mnist", mirrors=[f"{server}/good/"], announce=said.append)
    assert said == [] and not home.exists()


def test_a_user_with_no_home_to_find_is_told_what_to_set(tmp_path, monkeypatch, server):
    """No $HOME and no passwd entry (a container's arbitrary user): Path.home() raises, and
    the search and the download went down with it, a traceback."""
    from pathlib import Path

    import mlp.data.datasets

    def nowhere():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(nowhere))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("MLP_DATA_DIR", raising=False)
    monkeypatch.setattr(mlp.data.datasets, "SYSTEM_DIRS", (tmp_path / "system",))
    with pytest.raises(DatasetNotFound, match=r"looked in /nonexistent/\.cache/mlp/mnist"):
        mlp.data.datasets.find_dataset("mnist")
    with pytest.raises(
        DownloadError, match=r"the home folder /nonexistent does not exist; set XDG"
    ):
        fetch_dataset("mnist", mirrors=[f"{server}/good/"])


def test_a_relative_cache_home_is_ignored(tmp_path, monkeypatch):
    """The XDG specification: a relative XDG_CACHE_HOME is invalid and must be ignored."""
    from mlp.data import user_cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert user_cache_dir("mnist") == tmp_path / ".cache" / "mlp" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir("mnist") == tmp_path / "xdg" / "mlp" / "mnist"
