"""``mlp-export``: a saved model as an ONNX file, to run with onnxruntime and the like.

    mlp-export --checkpoint run.npz --onnx model.onnx [--uint8-input]

The graph outputs what ``predict_proba`` gives (a regression: ``predict``), its class names
those the checkpoint knows (``mlp/export.py`` says what the file holds). Exit status and
error lines follow ``mlp-eval``: 2 for a bad command line, 1 for a runtime failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import load_checkpoint
from ..export import IR_VERSION, OPSET, output_name
from ..model import MLP
from .common import (
    OneLineParser,
    UsageError,
    add_checkpoint_argument,
    output_file,
    report_errors,
    same_file,
)

PROG = "mlp-export"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=PROG,
        description=f"Export a saved MLP as an ONNX graph (opset {OPSET}, IR version "
        f"{IR_VERSION}).",
    )
    add_checkpoint_argument(p)
    p.add_argument(
        "--onnx",
        type=output_file,
        required=True,
        metavar="MODEL.onnx",
        help="the ONNX file to write (replaced whole if it exists)",
    )
    p.add_argument(
        "--uint8-input",
        action="store_true",
        help="the graph takes uint8 pixels and scales them by 1/255 itself (default: floats "
        "already in 0..1)",
    )
    return p


def run(args: argparse.Namespace, out: Any = None) -> Path:
    """Load the checkpoint on the CPU, write its ONNX graph, say what was written."""
    out = sys.stdout if out is None else out
    if same_file(args.onnx, args.checkpoint):
        raise UsageError(f"--onnx {args.onnx} would replace the checkpoint it exports")
    checkpoint = load_checkpoint(args.checkpoint)
    model = MLP.from_checkpoint(checkpoint, "cpu")
    path = model.to_onnx(args.onnx, checkpoint.class_names, uint8_input=args.uint8_input)
    size = path.stat().st_size
    inputs = "uint8" if args.uint8_input else model.dtype.name
    print(
        f"wrote {path} ({size:,} bytes, ONNX opset {OPSET}, IR version {IR_VERSION}): "
        f"{model} from {args.checkpoint}, {inputs} 'input' -> '{output_name(model)}'",
        file=out,
        flush=True,
    )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return report_errors(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
