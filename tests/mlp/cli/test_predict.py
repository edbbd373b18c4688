"""``mlp-predict``: a saved model's predictions for pictures, ``.npy`` arrays and CSV rows,
printed or written as CSV, and every file it cannot use as one line."""

from __future__ import annotations

import csv
import os
import re
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from mlp import MLP
from mlp.cli import predict
from mlp.data.synthetic import make_images
from mlp.errors import DataError
from tests.helpers import assert_one_line, one_line, run, run_module

NAMES = [f"class {c}" for c in range(10)]
#: ``NAME (p)``, the parts of a classifier's line
SHOWN_CLASS = re.compile(r"^(.+) \((\d\.\d{3})\)$")


@pytest.fixture(scope="module")
def pictures() -> np.ndarray:
    """Twelve 28×28 uint8 pictures as the datasets hold them (light bands on dark noise)."""
    return make_images(12, seed=7)[0]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A 784-16-10 classifier trained for an epoch on synthetic pictures, its classes named."""
    X, y = make_images(256, seed=1)
    model = MLP([784, 16, 10], seed=0)
    model.fit(X.reshape(-1, 784), y, epochs=1, batch_size=64)
    path = model.save(tmp_path_factory.mktemp("classifier") / "run.npz", classes=NAMES)
    return model, path


def predict_lines(capsys, *argv):
    code, out, err = run(predict.main, argv, capsys)
    assert code == 0 and err == "", err
    return out.splitlines()


def parsed(line: str) -> tuple[str, list[str], list[float]]:
    """A classifier's line: its label, the classes shown and their probabilities."""
    label, shown = line.split(": ", 1)
    parts = [SHOWN_CLASS.match(part).groups() for part in shown.split(" · ")]
    return label, [name for name, _ in parts], [float(p) for _, p in parts]


def read_csv(path) -> list[list[str]]:
    with open(path, newline="") as file:
        return list(csv.reader(file))


def write_csv(path, rows, header=None):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def inputs(tmp_path, pictures):
    """Each kind of input, and the rows the model should get from it (labels in order)."""
    Image.fromarray(pictures[0]).save(tmp_path / "light.png")
    Image.fromarray(255 - pictures[0]).save(tmp_path / "dark.png")  # dark on light
    np.save(tmp_path / "stack.npy", pictures[1:4])  # (3, 28, 28) uint8
    np.save(tmp_path / "one.npy", pictures[4].reshape(784))  # one uint8 row
    np.save(tmp_path / "picture.npy", pictures[7])  # one (28, 28) picture
    floats = pictures[5:7].reshape(2, 784) / 255
    np.save(tmp_path / "rows.npy", floats)  # (2, 784) float64
    header = [f"pixel{i}" for i in range(784)]
    write_csv(tmp_path / "rows.csv", [[repr(float(v)) for v in row] for row in floats], header)
    files = ["light.png", "dark.png", "stack.npy", "one.npy", "picture.npy", "rows.npy", "rows.csv"]
    labels = [
        "light.png",
        "dark.png",
        "stack.npy#0",
        "stack.npy#1",
        "stack.npy#2",
        "one.npy",
        "picture.npy",
        "rows.npy#0",
        "rows.npy#1",
        "rows.csv#0",
        "rows.csv#1",
    ]
    pixels = pictures[[0, 0, 1, 2, 3, 4, 7]].reshape(7, 784) / 255
    expected_rows = np.concatenate([pixels, floats, floats])
    return [tmp_path / f for f in files], [str(tmp_path / label) for label in labels], expected_rows


# ---------------------------------------------------------------------------------- classifier
def test_each_kind_of_input_gets_the_models_probabilities(classifier, inputs, tmp_path, capsys):
    model, checkpoint = classifier
    files, labels, rows = inputs
    expected = model.predict_proba(rows)
    lines = predict_lines(capsys, "--checkpoint", checkpoint, *files)
    assert len(lines) == len(labels)
    for line, label, probabilities in zip(lines, labels, expected, strict=True):
        shown_label, names, shown = parsed(line)
        assert shown_label == label
        assert names == [NAMES[c] for c in np.argsort(-probabilities)[:3]]
        np.testing.assert_allclose(shown, np.sort(probabilities)[::-1][:3], atol=6e-4)


def test_the_output_file_holds_every_probability(classifier, inputs, tmp_path, capsys):
    model, checkpoint = classifier
    files, labels, rows = inputs
    target = tmp_path / "predictions.csv"
    target.write_text("an older file\n")
    lines = predict_lines(capsys, "--checkpoint", checkpoint, "--output", target, *files)
    assert lines == [f"predictions: {target} (11 samples)"]
    table = read_csv(target)
    assert table[0] == ["file", "row", "prediction", *NAMES]
    expected = model.predict_proba(rows)
    files_and_rows = [(label.split("#")[0], label.partition("#")[2] or "0") for label in labels]
    assert [tuple(line[:2]) for line in table[1:]] == files_and_rows
    assert [line[2] for line in table[1:]] == [NAMES[c] for c in expected.argmax(axis=1)]
    np.testing.assert_allclose(
        np.array([line[3:] for line in table[1:]], float), expected, atol=1e-6
    )
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("top, shown", [(1, 1), (3, 3), (10, 10), (50, 10)])
def test_top_k_classes_likeliest_first(classifier, pictures, tmp_path, capsys, top, shown):
    model, checkpoint = classifier
    np.save(tmp_path / "x.npy", pictures[:4])
    expected = model.predict_proba(pictures[:4].reshape(4, 784))
    lines = predict_lines(capsys, "--checkpoint", checkpoint, "--top", top, tmp_path / "x.npy")
    for line, probabilities in zip(lines, expected, strict=True):
        _, names, values = parsed(line)
        assert names == [NAMES[c] for c in np.argsort(-probabilities)[:shown]]
        assert values == sorted(values, reverse=True)
        if shown == 10:
            assert abs(sum(values) - 1) < 0.006


def test_without_class_names_the_labels_are_numbers(pictures, tmp_path, capsys):
    checkpoint = MLP([784, 8, 4], seed=3).save(tmp_path / "plain.npz")
    one = MLP([784, 8, 1], seed=3).save(tmp_path / "binary.npz")  # one sigmoid: two classes
    np.save(tmp_path / "x.npy", pictures[:2])
    X = pictures[:2].reshape(2, 784)
    for path, classes in [(checkpoint, 4), (one, 2)]:
        expected = MLP.load(path).predict_proba(X)
        lines = predict_lines(capsys, "--checkpoint", path, "--top", 9, tmp_path / "x.npy")
        for line, probabilities in zip(lines, expected, strict=True):
            _, names, _ = parsed(line)
            assert names == [str(c) for c in np.argsort(-probabilities)]
            assert len(names) == classes
        predict_lines(
            capsys, "--checkpoint", path, "--output", tmp_path / "p.csv", tmp_path / "x.npy"
        )
        assert read_csv(tmp_path / "p.csv")[0] == ["file", "row", "prediction"] + [
            str(c) for c in range(classes)
        ]


# ---------------------------------------------------------------------------------- regression
def test_a_regression_prints_and_writes_its_values(pictures, tmp_path, capsys):
    X = pictures.reshape(-1, 784)
    targets = np.stack([X.mean(axis=1) / 255, X[:, :100].mean(axis=1) / 255], axis=1)
    model = MLP([784, 8, 2], seed=0, loss="squared_error")
    model.fit(X, targets, epochs=2, batch_size=4)
    checkpoint = model.save(tmp_path / "regression.npz")
    np.save(tmp_path / "x.npy", pictures[:3])
    expected = model.predict(X[:3])
    lines = predict_lines(capsys, "--checkpoint", checkpoint, tmp_path / "x.npy")
    assert lines == [
        f"{tmp_path / 'x.npy'}#{i}: {values[0]:.6g}, {values[1]:.6g}"
        for i, values in enumerate(expected)
    ]
    out = tmp_path / "values.csv"
    predict_lines(capsys, "--checkpoint", checkpoint, "--output", out, tmp_path / "x.npy")
    table = read_csv(out)
    assert table[0] == ["file", "row", "prediction_0", "prediction_1"]
    assert [line[1] for line in table[1:]] == ["0", "1", "2"]
    np.testing.assert_allclose(
        np.array([line[2:] for line in table[1:]], float), expected, rtol=1e-6
    )

    single = MLP([784, 4, 1], seed=0, loss="squared_error").save(tmp_path / "single.npz")
    predict_lines(capsys, "--checkpoint", single, "--output", out, tmp_path / "x.npy")
    assert read_csv(out)[0] == ["file", "row", "prediction"]

    # with an output activation, its values (they were refused as class probabilities)
    squashed = MLP([784, 4, 1], seed=0, loss="squared_error", output_activation="sigmoid")
    lines = predict_lines(
        capsys, "--checkpoint", squashed.save(tmp_path / "s.npz"), tmp_path / "x.npy"
    )
    assert lines == [
        f"{tmp_path / 'x.npy'}#{i}: {value:.6g}"
        for i, value in enumerate(squashed.predict(X[:3])[:, 0])
    ]


# ---------------------------------------------------------------------------------- bad input
def text_named_png(folder):
    (folder / "notes.png").write_text("not a picture\n")
    return folder / "notes.png", f"{folder / 'notes.png'}: not an image that Pillow can read"


def truncated_png(folder):
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64), dtype=np.uint8)
    path = folder / "cut.png"
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[:2000])
    return path, f"{path}: cannot read the image: image file is truncated"


def csv_short_row(folder):
    path = write_csv(folder / "short.csv", [[0.5] * 784, [0.5] * 784, [0.5] * 5])
    return path, f"{path} line 3: expected 784 comma-separated values, got 5"


def csv_word_in_a_row(folder):
    path = write_csv(folder / "word.csv", [[0.5] * 784, ["0.5", "x", *["1"] * 782]], ["a"] * 784)
    return path, f"{path} line 3, column 2: expected a number, got 'x'"


def csv_row_of_missing_values(folder):
    path = write_csv(folder / "nan.csv", [[0.5] * 784, [""] * 784, [0.5] * 784])
    return path, f"{path} line 2, column 1: expected a number, got {predict.MISSING_VALUE}"


def npy_wrong_width(folder):
    np.save(folder / "wide.npy", np.zeros((2, 100), np.float32))
    return folder / "wide.npy", (
        f"{folder / 'wide.npy'}: expected a row of 784 inputs (shape (784,) or (n, 784), or "
        "(28, 28) images), got shape (2, 100)"
    )


def npy_declaring_terabytes(folder):
    path = folder / "bomb.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 784), np.uint8))
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, {**header, "shape": (10**9, 784)})
        file.write(bytes(784))
    return path, f"{path}: not a .npy array NumPy can read (mmap length is greater than file size)"


def npy_declaring_a_negative_size(folder):
    path = folder / "negative.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 784), np.float32))
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, {**header, "shape": (-1, 784)})
    return path, f"{path}: not a .npy array NumPy can read (memory mapped length must be positive)"


def npy_with_a_zip_signature_alone(folder):
    path = folder / "zip.npy"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    return path, f"{path}: not a .npy array NumPy can read (File is not a zip file)"


def npy_of_text(folder):
    np.save(folder / "words.npy", np.array(["a"] * 784))
    return (
        folder / "words.npy",
        f"{folder / 'words.npy'}: expected numbers, got an array of dtype <U1",
    )


def npy_with_nan(folder):
    np.save(folder / "nan.npy", np.full(784, np.nan))
    return folder / "nan.npy", f"{folder / 'nan.npy'}: holds NaN or infinity"


def npy_beyond_float32(folder):
    np.save(folder / "huge.npy", np.full(784, 1e300))  # finite as float64, not as the model's
    return (
        folder / "huge.npy",
        f"{folder / 'huge.npy'}: holds values up to 1e+300, beyond float32's range, which the "
        "model computes in",
    )


def a_pipe(folder):
    os.mkfifo(folder / "pipe.npy")  # opened, it would wait for a writer for ever
    return folder / "pipe.npy", f"{folder / 'pipe.npy'}: not a file"


def npy_of_wide_integers(folder):
    np.save(folder / "ints.npy", np.zeros((2, 784), np.int64))  # pixels or inputs? unclear
    return (
        folder / "ints.npy",
        f"{folder / 'ints.npy'}: integers of dtype int64: save pixels as uint8 (0..255, scaled "
        "by the model) or inputs as floats (as the model takes them)",
    )


def not_npy(folder):
    (folder / "bad.npy").write_bytes(b"x")
    return folder / "bad.npy", f"{folder / 'bad.npy'}: not a .npy file (save one with numpy.save)"


def missing_file(folder):
    return folder / "gone.npy", f"{folder / 'gone.npy'}: no such file"


def bomb_png(folder):
    path = folder / "bomb.png"
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # 10 gigapixels, no data
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b""))
    return path, re.compile(re.escape(f"{path}: Image size (10000000000 pixels) exceeds limit of "))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize(
    "bad_file",
    [
        text_named_png,
        truncated_png,
        bomb_png,
        csv_short_row,
        csv_word_in_a_row,
        csv_row_of_missing_values,
        npy_wrong_width,
        npy_declaring_terabytes,
        npy_declaring_a_negative_size,
        npy_with_a_zip_signature_alone,
        npy_of_text,
        npy_with_nan,
        npy_beyond_float32,
        a_pipe,
        npy_of_wide_integers,
        not_npy,
        missing_file,
    ],
)
def test_a_file_it_cannot_use_is_one_line(classifier, pictures, tmp_path, capsys, bad_file):
    np.save(tmp_path / "good.npy", pictures[:2])
    path, message = bad_file(tmp_path)
    argv = ["--checkpoint", classifier[1], tmp_path / "good.npy", path]
    code, out, err = run(predict.main, argv, capsys)
    assert code == 1 and out == ""
    if isinstance(message, str):
        assert one_line(err, "mlp-predict") == message
    else:  # Pillow's own words after the size
        assert message.match(one_line(err, "mlp-predict"))


def test_a_picture_for_a_model_not_of_784_inputs(pictures, tmp_path, capsys):
    checkpoint = MLP([100, 4, 3], seed=0).save(tmp_path / "small.npz")
    Image.fromarray(pictures[0]).save(tmp_path / "x.png")
    code, out, err = run(predict.main, ["--checkpoint", checkpoint, tmp_path / "x.png"], capsys)
    assert code == 1 and out == ""
    assert one_line(err, "mlp-predict") == (
        f"{tmp_path / 'x.png'}: a picture becomes 784 inputs (28×28 pixels), but the model "
        "takes 100: give its inputs as .npy or .csv"
    )
    np.save(tmp_path / "x.npy", pictures[:2])  # 28×28 images are no rows of 100 either
    code, _, err = run(predict.main, ["--checkpoint", checkpoint, tmp_path / "x.npy"], capsys)
    assert code == 1
    assert one_line(err, "mlp-predict") == (
        f"{tmp_path / 'x.npy'}: expected a row of 100 inputs (shape (100,) or (n, 100)), got "
        "shape (2, 28, 28)"
    )


def test_usage_errors_before_any_work(classifier, tmp_path, capsys):
    checkpoint = classifier[1]
    cases = [
        (["--checkpoint", checkpoint, tmp_path / "notes.txt"], "argument FILE: "),
        (["--checkpoint", checkpoint], "the following arguments are required: FILE"),
        (["--checkpoint", checkpoint, "--top", "0", "x.npy"], "argument --top: "),
        (["--checkpoint", checkpoint, "--output", tmp_path / "no" / "p.csv", "x.npy"], ""),
    ]
    for argv, start in cases:
        code, out, err = run(predict.main, argv, capsys)
        assert code == 2 and out == ""
        assert one_line(err, "mlp-predict").startswith(start)
    code, _, err = run(predict.main, cases[0][0], capsys)
    assert f"{tmp_path / 'notes.txt'}: unknown kind of input '.txt': expected a picture (" in err
    rows = write_csv(tmp_path / "rows.csv", [[0] * 784])
    code, out, err = run(predict.main, ["--checkpoint", checkpoint, "--output", rows, rows], capsys)
    assert code == 2 and out == ""
    assert one_line(err, "mlp-predict") == f"--output {rows} would replace the input {rows}"
    assert read_csv(rows) == [["0"] * 784]


def test_without_pillow_a_picture_names_the_extra(
    classifier, pictures, tmp_path, capsys, monkeypatch
):
    Image.fromarray(pictures[0]).save(tmp_path / "x.png")
    np.save(tmp_path / "x.npy", pictures[:1])
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    code, out, err = run(predict.main, ["--checkpoint", classifier[1], tmp_path / "x.png"], capsys)
    assert code == 1 and out == ""
    assert err == (
        "mlp-predict: error: reading images needs PIL.Image: pip install 'mlp-backprop[images]' "
        "(or pip install pillow)\n"
    )
    assert len(predict_lines(capsys, "--checkpoint", classifier[1], tmp_path / "x.npy")) == 1


def test_as_a_module_a_usage_error_is_one_line():
    assert_one_line(run_module("mlp.cli.predict", "--top", "2"), "mlp-predict", 2)


def test_a_corrupt_exif_block_leaves_the_picture_as_stored(classifier, pictures, tmp_path, capsys):
    """Pillow fails on (or warns of) a broken EXIF block: the pixels are read all the same."""
    good = tmp_path / "good.png"
    Image.fromarray(pictures[0].reshape(28, 28)).save(good)
    png = good.read_bytes()
    end = png.rindex(b"IEND") - 4  # the IEND chunk's length field
    broken = tmp_path / "exif.png"
    broken.write_bytes(png[:end] + png_chunk(b"eXIf", b"garbage!") + png[end:])
    code, out, err = run(predict.main, ["--checkpoint", classifier[1], good, broken], capsys)
    assert code == 0 and err == ""
    first, second = out.splitlines()
    assert first.split(": ", 1)[1] == second.split(": ", 1)[1]


def test_a_csv_header_is_names_or_the_column_numbers_pandas_writes(tmp_path):
    """pandas.DataFrame(rows).to_csv(index=False) heads its columns 0, 1, …: read as a row,
    it became a sample and every row number moved by one. A first row of numbers with a
    word among them is data with a mistake: said, where it was dropped as a header."""
    read = predict.read_csv
    rows = [[0.5, 0.25, 1.0, 0.0], [1.0, 2.0, 3.0, 4.0]]
    for header in (["0", "1", "2", "3"], ["a", "b", "c", "d"], None):
        path = write_csv(tmp_path / "rows.csv", rows, header)
        np.testing.assert_array_equal(read(path, 4), rows)
    for width in range(1, predict.PANDAS_HEADER_COLUMNS):  # ``0,1``: a real first sample
        samples = [list(range(width)), [0.5] * width]
        path = write_csv(tmp_path / "few.csv", [[str(v) for v in row] for row in samples])
        np.testing.assert_array_equal(read(path, width), samples)
    typo = write_csv(tmp_path / "typo.csv", [["0.5", "abc", "1", "0"], *rows])
    notes = []
    read(write_csv(tmp_path / "four.csv", rows, ["0", "1", "2", "3"]), 4, notes)
    assert notes == []  # a header, taken as one without a word
    with pytest.raises(DataError, match=r"line 1, column 2: expected a number, got 'abc'"):
        read(typo, 4)
    python = write_csv(tmp_path / "python.csv", [*rows, ["1_000", "1", "2", "3"]])
    with pytest.raises(DataError, match=r"line 3, column 1: expected a number, got '1_000'"):
        read(python, 4)  # Python's float() reads it as 1000, no CSV writer writes it


def test_a_row_of_empty_cells_is_missing_values_not_a_blank_line(tmp_path):
    """pandas writes a row of NaN as ``,,,,`` (and a one-column NaN as ``""``): skipped as
    a blank line, the row was lost and every row after it renumbered."""

    def refused(text, width, line, column):
        path = tmp_path / "rows.csv"
        path.write_text(text)
        message = f"{path} line {line}, column {column}: expected a number, got "
        with pytest.raises(DataError, match=re.escape(message + predict.MISSING_VALUE)):
            predict.read_csv(path, width)

    refused("a,b,c,d,e\n1,2,0.5,1,0\n,,,,\n3,1,0.1,2,1\n", 5, line=3, column=1)
    refused("a,b,c,d,e\n1,2,0.5,1,0\n7,,,,\n", 5, line=3, column=2)
    refused(",,,,\n1,2,0.5,1,0\n", 5, line=1, column=1)  # no header: no names in it
    refused(" , ,\t\n1,2,3\n", 3, line=1, column=1)
    refused('a\n1.0\n""\n2.0\n', 1, line=3, column=1)
    blank = tmp_path / "blank.csv"
    blank.write_text("a,b\n\n1,2\n   \n\r\n3,4\n\n")  # blank lines, only those, skipped
    np.testing.assert_array_equal(predict.read_csv(blank, 2), [[1, 2], [3, 4]])


def test_a_file_of_another_separator_is_said_to_be_one(tmp_path):
    """A tab- or semicolon-separated line is one cell: a first one was taken as a header
    (no cell a number), so that a file of one row had "no samples", and one of more
    blamed its second line."""
    header = "\t".join("abcde")

    def refused(text, line, got, hint=" (is the file tab- or semicolon-separated?)"):
        path = tmp_path / "rows.csv"
        path.write_text(text)
        message = f"{path} line {line}: expected 5 comma-separated values, got {got}{hint}"
        with pytest.raises(DataError, match=re.escape(message) + "$"):
            predict.read_csv(path, 5)

    refused("1\t2\t3\t4\t5\n", line=1, got=1)
    refused("1;2;3;4;5\n6;7;8;9;10\n", line=1, got=1)
    refused(f"{header}\n1\t2\t3\t4\t5\n", line=1, got=1)
    refused("0,5;1,5;2,5;3,5;4,5\n", line=1, got=6)  # decimal commas
    refused("a,b,c,d,e,f\n1,2,3,4,5,6\n", line=1, got=6, hint="")  # a header counts too
    refused("1,2,3,4\n", line=1, got=4, hint="")
    one = tmp_path / "one.csv"
    one.write_text("x\n0.5\n")  # one name heads a model of one input
    np.testing.assert_array_equal(predict.read_csv(one, 1), [[0.5]])


def test_a_first_row_that_may_be_pandas_header_is_a_sample_said_so(tmp_path, capsys):
    """``0,1`` before a two-input model's rows: an XOR input, or the header pandas writes
    for two columns; read as a sample, and a note says how to drop it if it is a header."""
    checkpoint = MLP([2, 4, 2], seed=0).save(tmp_path / "xor.npz")
    rows = write_csv(tmp_path / "rows.csv", [["0", "1"], ["0.5", "0.5"]])
    code, out, err = run(predict.main, ["--checkpoint", checkpoint, rows], capsys)
    assert code == 0 and len(out.splitlines()) == 2
    assert err == (
        f"mlp-predict: note: {rows}: its first row, 0,1, is read as a sample; if it is "
        "pandas' header (to_csv without an index), delete it\n"
    )
