"""The peers and the extras that install them: ``python -m bench.extras [bench options]``
prints the extras a ``python -m bench`` run with those options needs (``bench,bench-torch``).

``make bench`` asks this module, before anything is installed, so that it installs only the
peers the run will time: it must run on the system Python, so it uses the standard library
alone. ``bench.cli`` takes its peers and their parsing from here, so the two never disagree.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable, Sequence

#: PyTorch as a speed-minded user runs it, beside its eager loop (``bench/torch_peers.py``):
#: fused Adam, ``torch.compile`` (max-autotune, reduce-overhead) and a captured CUDA graph.
TORCH_VARIANTS = ("torch-fused", "torch-compile", "torch-compile-ro", "torch-graph")
#: Every PyTorch row: its eager loop and the variants.
TORCH_ROWS = ("torch", *TORCH_VARIANTS)
#: The other implementations timed beside ours, in the order their rows run.
PEERS = (*TORCH_ROWS, "sklearn")
#: What every run needs: the chart, BLAS thread and memory info (pyproject.toml).
BASE_EXTRA = "bench"
#: The extra that installs each peer, its import name and its distribution's name.
PEER_EXTRAS = {"torch": "bench-torch", "sklearn": "bench-sklearn"}
PEER_MODULES = {"torch": "torch", "sklearn": "sklearn"}
PEER_PACKAGES = {"torch": "torch", "sklearn": "scikit-learn"}
for _variant in TORCH_VARIANTS:  # every PyTorch row needs PyTorch, and nothing else
    PEER_EXTRAS[_variant], PEER_MODULES[_variant], PEER_PACKAGES[_variant] = (
        "bench-torch",
        "torch",
        "torch",
    )


def choices(
    kind: str, allowed: Sequence[str], allow_none: bool = False
) -> Callable[[str], list[str]]:
    """An argparse type for a comma-separated subset of ``allowed`` (``none``: the empty one)."""

    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if allow_none and items in ([], ["none"]):
            return []
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {kind} {', '.join(bad) or repr(text)}: choose from {', '.join(allowed)}"
                + (" or none" if allow_none else "")
            )
        return list(dict.fromkeys(items))

    return parse


parse_peers = choices("peer", PEERS, allow_none=True)


def peers_value(argv: Sequence[str]) -> str | None:
    """The text of the last ``--peers`` in ``argv``, as argparse reads it (``--peers X``,
    ``--peers=X``, an abbreviation such as ``--peer X``); ``None`` when there is none."""
    value = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        name, eq, text = arg.partition("=")
        if len(name) < 4 or not "--peers".startswith(name):  # "--pe" is the shortest prefix
            continue
        if eq:
            value = text
        elif i + 1 < len(argv):
            value = argv[i + 1]
    return value


def run_peers(argv: Sequence[str]) -> list[str] | None:
    """The peers a run with these options times: all by default; ``None`` for a ``--peers``
    that ``python -m bench`` will refuse (it says why, so nothing more is worth installing)."""
    value = peers_value(argv)
    if value is None:
        return list(PEERS)
    try:
        return parse_peers(value)
    except argparse.ArgumentTypeError:
        return None


def extras_for(peers: Sequence[str]) -> list[str]:
    """The base extra and each peer's, in ``PEERS`` order: one install (and stamp) per set."""
    return list(dict.fromkeys([BASE_EXTRA, *(PEER_EXTRAS[p] for p in PEERS if p in peers)]))


def installed(peer: str) -> bool:
    return importlib.util.find_spec(PEER_MODULES[peer]) is not None


def missing_reason(peer: str) -> str:
    """Why a peer cannot run, and the command that fixes it."""
    return (
        f"{PEER_PACKAGES[peer]} is not installed "
        f"(pip install -e '.[{PEER_EXTRAS[peer]}]', or make bench)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Print the extras, comma-separated, for ``make``'s ``pip install -e '.[…]'``."""
    peers = run_peers(sys.argv[1:] if argv is None else argv)
    print(",".join(extras_for(peers or [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
