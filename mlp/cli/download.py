"""``python -m mlp.cli.download DATASET``: fetch a dataset into the user cache (``make data``
falls back on it where Debian's package is not an option); prints the folder."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..data import DATASETS, ensure_dataset
from .common import OneLineParser, report_errors

PROG = "python -m mlp.cli.download"


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(
        prog=PROG, description="Fetch a dataset into the user cache (SHA-256 checked)."
    )
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    def fetch() -> None:
        print(ensure_dataset(args.dataset, progress=not args.quiet and sys.stderr.isatty()))

    return report_errors(PROG, fetch)


if __name__ == "__main__":
    sys.exit(main())
