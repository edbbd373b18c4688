"""Verified downloads of MNIST, Fashion-MNIST and KMNIST into the user cache, through pooch.

pooch (the downloader SciPy and scikit-image use) streams each file into a temporary file
in the cache folder, checks its SHA-256 against the pinned digest, and only then renames it
into place; a failed or mismatched download is deleted (on any exception, a SIGTERM that the
commands turn into one included). This module adds the registry (official mirrors, pinned
digests and sizes), the limits pooch lacks (an overall deadline per file, not only per read,
and the pinned size as the most a file may send: ``BoundedDownloader``), the retry policy,
mirror fallback, and errors that say what to do offline. pooch, requests and tqdm are
imported only when a download actually happens, so ``import mlp`` needs none of them.

Digests and sizes are those of the files the official mirrors serve (the digests torchvision
and TensorFlow Datasets pin). Debian's ``dataset-fashion-mnist`` recompresses the files, so
its ``.gz`` files differ; they are found locally and never downloaded.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DatasetNotFound, DownloadError, InvalidArgument
from .datasets import DATASETS, SPLITS, find_dataset, usable_cache_dir, user_cache_dir

#: Environment variable: comma-separated base URLs used instead of the official mirrors
#: (``{dataset}`` in a URL is replaced by the dataset's name). Digests are still checked.
MIRRORS_ENV = "MLP_DATASET_MIRRORS"
#: Environment variable: the seconds a file's download may take in all (every read counted).
DEADLINE_ENV = "MLP_DOWNLOAD_TIMEOUT"
#: The deadline without it: Fashion-MNIST's 26 MB file at 50 kB/s.
DEFAULT_DEADLINE = 600.0
USER_AGENT = "mlp-dataset-download"
#: Each request's headers: the files come as stored, never re-encoded on the way.
HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}

FILES = tuple(f"{stem}.gz" for stems in SPLITS.values() for stem in stems)

#: dataset → (official mirrors in order of preference, SHA-256 of each file as sha256sum prints)
REGISTRY: dict[str, tuple[tuple[str, ...], str]] = {
    "mnist": (
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror
            "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's mirror
            "http://yann.lecun.com/exdb/mnist/",  # the original site
        ),
        """
        440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609  train-images-idx3-ubyte.gz
        3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c  train-labels-idx1-ubyte.gz
        8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6  t10k-images-idx3-ubyte.gz
        f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6  t10k-labels-idx1-ubyte.gz
        """,
    ),
    "fashion-mnist": (
        (
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # Zalando's mirror
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        """
        3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84  train-images-idx3-ubyte.gz
        a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845  train-labels-idx1-ubyte.gz
        346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073  t10k-images-idx3-ubyte.gz
        67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5  t10k-labels-idx1-ubyte.gz
        """,
    ),
    "kmnist": (
        ("https://codh.rois.ac.jp/kmnist/dataset/kmnist/",),  # CODH, the dataset's home
        """
        51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4  train-images-idx3-ubyte.gz
        e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17  train-labels-idx1-ubyte.gz
        edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5  t10k-images-idx3-ubyte.gz
        20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c  t10k-labels-idx1-ubyte.gz
        """,
    ),
}


def pinned_digests(dataset: str) -> dict[str, str]:
    """File name → SHA-256 for ``dataset``, from the registry's sha256sum-style text."""
    lines = REGISTRY[dataset][1].split("\n")
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


#: Each file's size in bytes, in ``FILES`` order: the most a mirror may send of it.
SIZES = {
    "mnist": (9_912_422, 28_881, 1_648_877, 4_542),
    "fashion-mnist": (26_421_880, 29_515, 4_422_102, 5_148),
    "kmnist": (18_165_135, 29_497, 3_041_136, 5_120),
}


def pinned_sizes(dataset: str) -> dict[str, int]:
    """File name → its size in bytes, the most a mirror may send of it."""
    return dict(zip(FILES, SIZES[dataset], strict=True))


def deadline_from_environment() -> float:
    """``$MLP_DOWNLOAD_TIMEOUT`` as seconds (positive), else ``DEFAULT_DEADLINE``."""
    text = os.environ.get(DEADLINE_ENV, "").strip()
    if not text:
        return DEFAULT_DEADLINE
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise InvalidArgument(f"{DEADLINE_ENV} must be a positive number of seconds, got {text!r}")
    return seconds


class DownloadTooLarge(Exception):
    """A mirror sends more than the file's pinned size (an endless or a wrong body)."""


class DownloadTooSlow(Exception):
    """A file's download went past its deadline (a mirror that drips bytes, say)."""


class BoundedDownloader:
    """pooch's downloader protocol, ``downloader(url, output_file, pooch)``, with the two
    limits pooch's ``HTTPDownloader`` lacks: a deadline for the whole file (its timeout
    bounds each read alone, so a byte every few seconds never ends), and a size the file may
    not pass (an endless body would fill the disk). Streams with requests, pooch's own
    dependency; a bar on stderr where ``progress``."""

    def __init__(
        self,
        timeout: float,
        deadline: float,
        max_bytes: int | None = None,
        progress: bool = False,
    ) -> None:
        self.timeout, self.deadline, self.max_bytes = timeout, deadline, max_bytes
        self.progress = progress

    def __call__(self, url: str, output_file: Any, pooch: Any = None) -> None:
        import requests

        started = time.monotonic()
        with requests.get(url, stream=True, timeout=self.timeout, headers=HEADERS) as response:
            response.raise_for_status()
            declared = response.headers.get("Content-Length", "")
            total = int(declared) if declared.isdigit() else self.max_bytes
            if self.max_bytes is not None and total is not None and total > self.max_bytes:
                raise DownloadTooLarge(f"it announces {total:,} bytes")
            received = 0
            with open(output_file, "wb") as out, self._bar(total) as bar:
                for chunk in _as_it_arrives(response):
                    received += len(chunk)
                    if self.max_bytes is not None and received > self.max_bytes:
                        raise DownloadTooLarge(f"more than {self.max_bytes:,} bytes came")
                    if time.monotonic() - started > self.deadline:
                        raise DownloadTooSlow(f"{received:,} bytes in {self.deadline:g} s")
                    out.write(chunk)
                    bar.update(len(chunk))

    def _bar(self, total: int | None) -> Any:
        if not self.progress:
            return _NoBar()
        from tqdm import tqdm

        return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr)


def _as_it_arrives(response: Any) -> Iterator[bytes]:
    """The body in the pieces it arrives in, as sent (a server that labels a ``.gz`` as
    gzip-encoded sends the file itself, which must match its pin, not its contents): a read
    of a fixed size would wait (within the per-read timeout) until that much came, so a
    dripping mirror would never meet the deadline's check. urllib3 2's ``read1`` returns
    what is there; older, fixed pieces."""
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:
        yield from response.raw.stream(1 << 16, decode_content=False)
        return
    while chunk := read1(1 << 16, decode_content=False):
        yield chunk


class _NoBar:
    """A progress bar that shows nothing."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, count: int) -> None:
        pass


def mirrors_for(dataset: str, mirrors: Sequence[str] | None = None) -> list[str]:
    """Base URLs to try, in order: ``mirrors`` if given, else ``$MLP_DATASET_MIRRORS`` if set
    (an in-house or air-gapped mirror: the official ones are then not contacted), else the
    official mirrors. Whatever the source, every file must match its pinned SHA-256."""
    configured = [u.strip() for u in os.environ.get(MIRRORS_ENV, "").split(",") if u.strip()]
    urls = list(mirrors) if mirrors else configured or list(REGISTRY[dataset][0])
    return [u.replace("{dataset}", dataset).rstrip("/") + "/" for u in urls]


def fetch_files(
    files: Mapping[str, str],
    mirrors: Sequence[str],
    folder: str | os.PathLike,
    progress: bool = False,
    retries: int = 2,
    timeout: float = 60.0,
    log: logging.Logger | None = None,
    sizes: Mapping[str, int] | None = None,
    deadline: float | None = None,
) -> Path:
    """Download each ``name → sha256`` in ``files`` into ``folder``, first mirror that works.

    A file already there with the right digest is kept; anything else is fetched again.
    pooch streams, verifies and renames each file; the retry policy is ours, because pooch
    retries every error alike: a failure that may pass (timeout, dropped connection, 5xx,
    digest mismatch) is retried ``retries`` times after 1 s, 2 s, 4 s…, while one that
    will not (404 and other 4xx, unknown host, a file too slow or too large) moves on to the
    next mirror at once. ``timeout`` bounds each read; ``deadline`` (default:
    ``$MLP_DOWNLOAD_TIMEOUT``, else 600 s) each file's whole download; ``sizes`` says how
    many bytes each file may take at most. Only verified files ever appear under their own
    name in ``folder``.
    """
    pooch = _import_pooch()
    folder = Path(folder)
    deadline = deadline_from_environment() if deadline is None else deadline
    for name, digest in files.items():
        downloader = BoundedDownloader(
            timeout, deadline, (sizes or {}).get(name), progress=progress and _has_tqdm()
        )
        failures = []
        for base in mirrors:
            fetcher = pooch.create(path=folder, base_url=base, registry={name: f"sha256:{digest}"})
            error = _fetch_with_retries(pooch, fetcher, name, downloader, retries, log)
            if error is None:
                break
            failures.append(f"{base}{name}: {error}")
        else:
            raise DownloadError("; ".join(failures))
    return folder


def _fetch_with_retries(
    pooch: Any, fetcher: Any, name: str, downloader: Any, retries: int, log: Any
) -> str | None:
    """``None`` once the file is there and verified, else why the last attempt failed."""
    for attempt in range(1 + max(0, retries)):
        if attempt:
            time.sleep(min(2 ** (attempt - 1), 10))
        try:
            with _quiet_pooch(pooch):
                if log is not None and not (fetcher.abspath / name).is_file():
                    log.info("downloading %s", fetcher.get_url(name))
                fetcher.fetch(name, downloader=downloader)
            return None
        except Exception as exc:  # requests' errors, digest mismatches, OSError
            reason = _describe(exc)
            if _permanent(exc):
                return reason
    return reason


def _permanent(exc: BaseException) -> bool:
    """Errors that retrying the same URL will not fix."""
    if isinstance(exc, (DownloadTooLarge, DownloadTooSlow)):
        return True  # the same mirror again would cost the same deadline, or disk
    from requests.exceptions import InvalidSchema, InvalidURL, MissingSchema  # pooch's own

    if isinstance(exc, (InvalidSchema, InvalidURL, MissingSchema)):
        return True  # requests' answer to a URL it cannot fetch (file://, no scheme)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return 400 <= status < 500 and status not in (408, 429)
    text = str(exc)
    return any(
        s in text
        for s in (
            "Name or service not known",
            "Failed to resolve",
            "nodename nor servname",
            "No address associated",
        )
    )


def fetch_dataset(
    dataset: str,
    folder: str | os.PathLike | None = None,
    mirrors: Sequence[str] | None = None,
    progress: bool = False,
    retries: int = 2,
    timeout: float = 60.0,
) -> Path:
    """Download ``dataset``'s four files (verified) into ``folder`` (default: the user cache)."""
    if dataset not in REGISTRY:
        raise InvalidArgument(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    folder = Path(folder) if folder is not None else usable_cache_dir(dataset)
    try:
        return fetch_files(
            pinned_digests(dataset),
            mirrors_for(dataset, mirrors),
            folder,
            progress=progress,
            retries=retries,
            timeout=timeout,
            log=_stderr_logger() if progress else None,
            sizes=pinned_sizes(dataset),
        )
    except DownloadError as exc:
        raise DownloadError(
            f"could not download {dataset} ({exc}); {manual_options(dataset, folder)}"
        ) from None


def ensure_dataset(
    dataset: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = False,
    mirrors: Sequence[str] | None = None,
    retries: int = 2,
    timeout: float = 60.0,
    announce: Callable[[str], Any] | None = None,
) -> Path:
    """The folder holding ``dataset``: found locally, else downloaded into the user cache
    (never when ``data_dir`` names a folder: that folder is the user's answer, right or not).

    ``announce`` gets one line before a download starts (a download can take a while).
    """
    try:
        return find_dataset(dataset, data_dir)
    except DatasetNotFound as exc:
        if data_dir is not None:
            raise
        if not download:
            raise DatasetNotFound(f"{exc} (downloading is off: --no-download)") from None
    folder = usable_cache_dir(dataset)  # no announcement of a download that cannot start
    if announce is not None:
        announce(
            f"{dataset} is not on this machine: downloading it into {folder} (SHA-256 checked)"
        )
    return fetch_dataset(
        dataset, folder, mirrors=mirrors, progress=progress, retries=retries, timeout=timeout
    )


def manual_options(dataset: str, folder: str | os.PathLike | None = None) -> str:
    """What a user can do without a network: the sentence every offline error ends with
    (``folder``: where the download went, by default the user cache)."""
    debian = (
        ", or `sudo apt install dataset-fashion-mnist` (Debian/Ubuntu)"
        if dataset == "fashion-mnist"
        else ""
    )
    return (
        f"to install it by hand, put {', '.join(FILES)} in "
        f"{user_cache_dir(dataset) if folder is None else folder}, "
        f"pass --data-dir, or set MLP_DATA_DIR{debian}"
    )


def _import_pooch():
    try:
        import pooch
    except ImportError:
        raise DownloadError(
            "downloading datasets needs pooch: pip install pooch (or install mlp with pip)"
        ) from None
    return pooch


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _quiet_pooch(pooch: Any) -> Iterator[None]:
    """pooch logs each download and retry at INFO; our own messages are enough."""
    logger = pooch.get_logger()  # its own Logger instance, not registered with logging
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _stderr_logger() -> logging.Logger:
    log = logging.getLogger("mlp.download")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def _describe(exc: BaseException) -> str:
    """One short phrase for a failed download."""
    if isinstance(exc, DownloadTooLarge):
        return f"sent more than the file's pinned size ({exc}; discarded)"
    if isinstance(exc, DownloadTooSlow):
        return f"too slow: not done within {DEADLINE_ENV} ({exc}; discarded)"
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code}"
    text = " ".join(str(exc).split())
    if "hash" in text.lower() and "match" in text.lower():
        return "SHA-256 mismatch (corrupt or tampered file, discarded)"
    name = type(exc).__name__
    if "Timeout" in name or "timed out" in text:
        return "timed out"
    if "ChunkedEncoding" in name or "IncompleteRead" in text or "ProtocolError" in name:
        return "connection dropped mid-file (truncated, discarded)"
    if "ConnectionError" in name or "ConnectTimeout" in name:
        return "cannot connect (offline?)"
    return f"{name}: {text}"[:200]
