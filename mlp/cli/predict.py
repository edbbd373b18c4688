"""``mlp-predict``: a saved model's predictions for pictures, ``.npy`` arrays and CSV rows.

    mlp-predict --checkpoint run.npz [--top 3] [--output PREDICTIONS.csv] [--device cpu] FILE...

A picture (PNG, JPEG, …) becomes one input the way the datasets made theirs
(``mlp/data/images.py``); a ``.npy`` array holds one row of the model's inputs, a table of
rows, or 28×28 images; a CSV file holds one row of numbers per sample, taken as the model's
inputs as they are. A classifier prints each sample's most likely classes, a regression its
values; ``--output`` writes all of it to a CSV file instead. Exit status and error lines
follow ``mlp-eval``: 2 for a bad command line, 1 for a runtime failure.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .. import checks
from ..checkpoint import load_checkpoint
from ..data import IMAGE_SHAPE
from ..data.images import IMAGE_INPUTS, IMAGE_SUFFIXES, read_image, require_pillow
from ..errors import DataError
from ..files import atomic_write
from ..model import MLP
from .common import (
    OneLineParser,
    UsageError,
    add_checkpoint_argument,
    checked,
    device_spec,
    named_path,
    one_line,
    output_file,
    report_errors,
    same_file,
)

PROG = "mlp-predict"
#: How many classes a line shows by default.
DEFAULT_TOP = 3


class Samples(NamedTuple):
    """One input file's rows, as the model takes them."""

    path: Path
    rows: np.ndarray  # (n, the model's input width)
    #: whether the file holds a table (its rows are shown as ``FILE#row``) or one sample
    table: bool
    #: what the user should know of how it was read (``None``: nothing)
    note: str | None = None


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=PROG,
        description="Predict with a saved MLP: the classes (or values) of images, .npy arrays "
        "and CSV rows.",
    )
    p.add_argument(
        "files",
        nargs="+",
        type=input_file,
        metavar="FILE",
        help="a picture (" + ", ".join(IMAGE_SUFFIXES[:3]) + ", …), a .npy array of one row, "
        "rows or 28×28 images, or a .csv file of a sample per row, its numbers the model's "
        "inputs as they are (pixels scaled to 0..1, not 0..255)",
    )
    add_checkpoint_argument(p)
    p.add_argument(
        "--top",
        type=checked(checks.positive_int, "top"),
        default=DEFAULT_TOP,
        metavar="K",
        help="a classifier's K most likely classes per sample (at most all of them)",
    )
    p.add_argument(
        "--output",
        type=output_file,
        default=None,
        metavar="PREDICTIONS.csv",
        help="write the predictions (a classifier's probability of every class) to this CSV "
        "file instead of printing them",
    )
    p.add_argument("--device", type=device_spec, default="cpu", help="cpu, cuda or cuda:N")
    return p


def input_kind(path: Path) -> str | None:
    """``"image"``, ``"npy"`` or ``"csv"`` by the file's suffix; ``None`` for another."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    return {".npy": "npy", ".csv": "csv"}.get(suffix)


def input_file(text: str) -> Path:
    """A file to predict for, of a kind known by its suffix (checked before any work)."""
    path = named_path(text)
    if input_kind(path) is None:
        raise argparse.ArgumentTypeError(
            f"{text}: unknown kind of input {path.suffix or '(no suffix)'!r}: expected a "
            f"picture ({', '.join(IMAGE_SUFFIXES)}), .npy or .csv"
        )
    return path


# ---------------------------------------------------------------------------------- reading
def read_samples(path: Path, width: int, dtype: Any = np.float32) -> Samples:
    """The rows of one input file, for a model of ``width`` inputs computing in ``dtype``; a
    file that cannot give them is a ``DataError`` naming it."""
    if not path.is_file():
        raise DataError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    kind = input_kind(path)
    if kind == "image":
        if width != IMAGE_INPUTS:
            raise DataError(
                f"{path}: a picture becomes {IMAGE_INPUTS} inputs ({IMAGE_SHAPE[0]}×"
                f"{IMAGE_SHAPE[1]} pixels), but the model takes {width}: give its inputs "
                "as .npy or .csv"
            )
        return Samples(path, read_image(path).reshape(1, -1), table=False)
    notes: list[str] = []
    rows, table = read_npy(path, width) if kind == "npy" else (read_csv(path, width, notes), True)
    if rows.shape[0] == 0:
        raise DataError(f"{path}: no samples")
    problem = checks.unrepresentable(rows, dtype)
    if problem:
        raise DataError(f"{path}: holds {problem}")
    return Samples(path, rows, table, notes[0] if notes else None)


def read_npy(path: Path, width: int) -> tuple[np.ndarray, bool]:
    """A ``.npy`` file's rows: one row of ``width``, an (n, width) table, or, for a model of
    784 inputs, a 28×28 image or a stack of them. Whether it is a table comes second."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(np.lib.format.MAGIC_PREFIX))
    except OSError as exc:
        raise DataError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if magic != np.lib.format.MAGIC_PREFIX and not magic.startswith(b"PK"):
        raise DataError(f"{path}: not a .npy file (save one with numpy.save)")
    try:
        # mapped, not read: only the bytes in the file are touched, so a header declaring
        # terabytes is refused by its file's size instead of allocated
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    # a zip signature without an archive behind it; a header's negative dimension
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, OverflowError) as exc:
        raise DataError(f"{path}: not a .npy array NumPy can read ({one_line(exc)})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive under another name
        array.close()
        raise DataError(f"{path}: an .npz archive of several arrays; expected one .npy array")
    if array.dtype.kind not in "fiub":
        raise DataError(f"{path}: expected numbers, got an array of dtype {array.dtype}")
    if array.dtype.kind in "iu" and array.dtype != np.uint8:  # pixels, or inputs? unclear
        raise DataError(
            f"{path}: integers of dtype {array.dtype}: save pixels as uint8 (0..255, scaled "
            "by the model) or inputs as floats (as the model takes them)"
        )
    shape = array.shape
    if array.ndim in (1, 2) and shape[-1] == width:
        return np.array(array).reshape(-1, width), array.ndim == 2
    if width == IMAGE_INPUTS and array.ndim in (2, 3) and shape[-2:] == IMAGE_SHAPE:
        return np.array(array).reshape(-1, width), array.ndim == 3
    images = f", or ({IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]}) images" if width == IMAGE_INPUTS else ""
    raise DataError(
        f"{path}: expected a row of {width} inputs (shape ({width},) or (n, {width})"
        f"{images}), got shape {shape}"
    )


def read_csv(path: Path, width: int, notes: list[str] | None = None) -> np.ndarray:
    """A CSV file's rows of ``width`` numbers, taken as they are (floats, not pixels to
    scale); a first row of names is a header (``_header``), and blank lines are skipped
    (``_blank``: a row of empty cells is missing values, refused). An error names the line
    (from 1, as an editor counts); ``notes`` gets a line where a first row could have been
    either (``0,1``: a sample, or pandas' header of two columns)."""
    rows: list[list[float]] = []
    header_allowed = True  # until the first row that is not blank
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            for cells in reader:
                if _blank(cells):
                    continue
                may_be_header, header_allowed = header_allowed, False
                if may_be_header and _header(cells, width):
                    continue
                if may_be_header and _numbered(cells) and notes is not None:
                    notes.append(
                        f"{path}: its first row, {','.join(cells)}, is read as a sample; if it "
                        "is pandas' header (to_csv without an index), delete it"
                    )
                if len(cells) != width:
                    # another separator leaves a line one cell, or cuts it at decimal commas
                    other = any(sep in cell for cell in cells for sep in OTHER_SEPARATORS)
                    raise DataError(
                        f"{path} line {reader.line_num}: expected {width} comma-separated "
                        f"values, got {len(cells)}"
                        + (" (is the file tab- or semicolon-separated?)" if other else "")
                    )
                values = _numbers(cells)
                if isinstance(values, int):  # the column that is not a number
                    cell = cells[values]
                    got = f"{cell!r:.40}" if cell.strip() else MISSING_VALUE
                    raise DataError(
                        f"{path} line {reader.line_num}, column {values + 1}: expected a "
                        f"number, got {got}"
                    )
                rows.append(values)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file of UTF-8 (a CSV was expected)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a CSV file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return np.array(rows, dtype=np.float64).reshape(-1, width)


#: The separators a CSV of another convention uses (a spreadsheet's export, say).
OTHER_SEPARATORS = "\t;"
#: What an empty cell is said to be: pandas writes NaN so, a row of NaN as ``,,,,``.
MISSING_VALUE = "an empty cell (a missing value: fill it in or delete the row)"


def _blank(cells: list[str]) -> bool:
    """Whether a line is blank: nothing on it, or only spaces. An empty cell is a missing
    value, even alone: a one-column frame's NaN is the line ``""`` (pandas' to_csv)."""
    return not cells or (len(cells) == 1 and cells[0].isspace())


#: The fewest columns whose first row ``0, 1, …`` is taken as pandas' header: fewer are
#: likely data (``0,1`` is an XOR input).
PANDAS_HEADER_COLUMNS = 4


def _header(cells: list[str], width: int) -> bool:
    """Whether a first row names the ``width`` inputs, a cell each: names and no number
    (``pixel0, pixel1, …``), or the column numbers pandas writes for a frame without names
    (``0, 1, …``, from ``PANDAS_HEADER_COLUMNS`` columns). A first row of numbers with a
    word among them is data with a mistake, one of empty cells missing values, and one of
    another count a row of the wrong length (a tab-separated line is one cell), each said
    as such."""
    if len(cells) != width:
        return False
    if _numbered(cells) and len(cells) >= PANDAS_HEADER_COLUMNS:
        return True
    names = [cell.strip() for cell in cells]
    return any(names) and all(isinstance(_numbers([name]), int) for name in names)


def _numbered(cells: list[str]) -> bool:
    """Whether a row reads ``0, 1, …``: the column numbers pandas heads a frame with."""
    return [cell.strip() for cell in cells] == [str(column) for column in range(len(cells))]


def _numbers(cells: list[str]) -> list[float] | int:
    """The cells as numbers, as a CSV writes them (not Python's ``1_000``), or the index of
    the first that is not one."""
    values = []
    for column, cell in enumerate(cells):
        if "_" in cell:
            return column
        try:
            values.append(float(cell))
        except ValueError:
            return column
    return values


# ---------------------------------------------------------------------------------- predicting
def classifies(model: MLP) -> bool:
    """Whether the model's outputs are class probabilities (not a regression's values, nor an
    inference model's raw activations)."""
    return model.output_activation is None and model.loss_function.classifies


def predict(model: MLP, samples: Sequence[Samples]) -> list[np.ndarray]:
    """Each file's (rows, columns) of class probabilities or values: one call to the model
    for all the pixels (uint8, which it scales) and one for all other numbers."""
    results: list[np.ndarray | None] = [None] * len(samples)
    pixels = [i for i, s in enumerate(samples) if s.rows.dtype == np.uint8]
    numbers = [i for i, s in enumerate(samples) if s.rows.dtype != np.uint8]
    for group in (pixels, numbers):
        if not group:
            continue
        X = np.concatenate([samples[i].rows for i in group])
        if model.loss_function.classifies:  # probabilities, or an output_activation's values
            outputs = model.predict_proba(X)
        else:
            outputs = model.predict(X).reshape(len(X), -1)
        ends = np.cumsum([len(samples[i].rows) for i in group])[:-1]
        for i, part in zip(group, np.split(outputs, ends), strict=True):
            results[i] = part
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------------------------- output
def labels(samples: Samples) -> list[str]:
    """How each row is named: ``FILE`` for a file of one sample, ``FILE#row`` in a table."""
    if not samples.table:
        return [str(samples.path)]
    return [f"{samples.path}#{row}" for row in range(len(samples.rows))]


def top_classes(probabilities: np.ndarray, names: Sequence[str], top: int) -> str:
    """``NAME (p) · NAME2 (p2) · …``: the ``top`` most likely classes, the likeliest first
    (a tie in class order)."""
    order = np.argsort(-probabilities, kind="stable")[:top]
    return " · ".join(f"{names[c]} ({probabilities[c]:.3f})" for c in order)


def value_columns(outputs: int) -> list[str]:
    return ["prediction"] if outputs == 1 else [f"prediction_{j}" for j in range(outputs)]


def write_predictions(
    path: Path,
    samples: Sequence[Samples],
    results: Sequence[np.ndarray],
    names: Sequence[str] | None,
) -> None:
    """The predictions as CSV, atomically: ``file,row,prediction`` and a classifier's
    probability of each class (a column per class name), or ``file,row`` and a regression's
    value columns. ``row`` is the sample's index in its file, 0 for a single picture."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if names is None:
        writer.writerow(["file", "row", *value_columns(results[0].shape[1])])
    else:
        writer.writerow(["file", "row", "prediction", *names])
    for s, result in zip(samples, results, strict=True):
        for row, line in enumerate(result):
            shown = [str(v) for v in line]  # NumPy's shortest text that reads back the same
            predicted = [] if names is None else [names[int(np.argmax(line))]]
            writer.writerow([str(s.path), row, *predicted, *shown])
    atomic_write(path, lambda file: file.write(text.getvalue().encode("utf-8")))


def print_predictions(
    out: Any,
    samples: Sequence[Samples],
    results: Sequence[np.ndarray],
    names: Sequence[str] | None,
    top: int,
) -> None:
    """A line per sample: ``FILE#row: NAME (p) · …`` for a classifier, else its values."""
    for s, result in zip(samples, results, strict=True):
        for label, line in zip(labels(s), result, strict=True):
            if names is None:
                shown = ", ".join(f"{v:.6g}" for v in line)
            else:
                shown = top_classes(line, names, top)
            print(f"{label}: {shown}", file=out)
    out.flush()


def check_files(args: argparse.Namespace) -> None:
    """``--output`` must not replace the checkpoint or an input (a CSV of inputs, say)."""
    if args.output is None:
        return
    for path in (args.checkpoint, *args.files):
        if same_file(path, args.output):
            raise UsageError(f"--output {args.output} would replace the input {path}")


def run(args: argparse.Namespace, out: Any = None, err: Any = None) -> list[np.ndarray]:
    """Load the checkpoint on the device, read every file, predict, print or write."""
    out = sys.stdout if out is None else out
    check_files(args)
    if any(input_kind(path) == "image" for path in args.files):
        require_pillow()  # missing, it is one line before any work
    checkpoint = load_checkpoint(args.checkpoint)
    model = MLP.from_checkpoint(checkpoint, args.device)
    samples = [read_samples(path, model.sizes[0], model.dtype) for path in args.files]
    for note in (s.note for s in samples if s.note):
        print(f"{PROG}: note: {note}", file=sys.stderr if err is None else err, flush=True)
    results = predict(model, samples)
    names = None
    if classifies(model):
        classes = results[0].shape[1]
        names = checkpoint.class_names or [str(c) for c in range(classes)]
    if args.output is None:
        print_predictions(out, samples, results, names, args.top)
    else:
        write_predictions(args.output, samples, results, names)
        rows = sum(len(s.rows) for s in samples)
        print(f"predictions: {args.output} ({rows} samples)", file=out, flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return report_errors(PROG, lambda: run(args), out_of_memory="try another --device")


if __name__ == "__main__":
    sys.exit(main())
