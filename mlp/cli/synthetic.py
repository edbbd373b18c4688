"""``python -m mlp.cli.synthetic FOLDER [N_TRAIN N_TEST]``: a learnable MNIST-shaped dataset
as plain (fast) IDX files, for machines without one (CI's fixtures, the GPU check)."""

from __future__ import annotations

import sys
from typing import Any

from .. import checks
from ..data.synthetic import write_dataset
from ..errors import InvalidArgument
from .common import OneLineParser, checked, named_path, report_errors

PROG = "python -m mlp.cli.synthetic"
#: IDX stores each dimension as an unsigned 32-bit integer.
MAX_COUNT = 2**32 - 1


def image_count(name: str, value: Any) -> int:
    count = checks.positive_int(name, value)
    if count > MAX_COUNT:
        raise InvalidArgument(f"{name} must be at most {MAX_COUNT} (IDX's limit), got {count}")
    return count


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(
        prog=PROG,
        description="Write a learnable MNIST-shaped dataset as IDX files (for offline runs).",
    )
    p.add_argument("folder", type=named_path)
    p.add_argument("n_train", type=checked(image_count, "N_TRAIN"), nargs="?", default=60_000)
    p.add_argument("n_test", type=checked(image_count, "N_TEST"), nargs="?", default=10_000)
    args = p.parse_args(argv)
    return report_errors(
        PROG,
        lambda: print(write_dataset(args.folder, args.n_train, args.n_test, gz=False)),
        out_of_memory="try smaller N_TRAIN and N_TEST",
    )


if __name__ == "__main__":
    sys.exit(main())
