"""``python -m mlp`` (mlp-train) as a user runs it: exit statuses, output lines, one-line errors."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "32", "--batch-size", "32"]


@pytest.fixture
def env(tmp_path):
    """The user's environment, minus anything that could find or fetch a real dataset."""
    environment = dict(os.environ)
    environment.pop("MLP_DATA_DIR", None)
    environment["XDG_CACHE_HOME"] = str(tmp_path / "empty-cache")
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [environment.get("PYTHONPATH")])]
    )
    return environment


def cli(*args, env, cwd):
    return subprocess.run(
        [sys.executable, "-m", "mlp", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def assert_one_line_error(result, status):
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mlp-train: error:")
    return lines[0]


def test_trains_on_a_small_dataset(idx_dataset, env, tmp_path):
    result = cli("--data-dir", idx_dataset, "--epochs", 3, *TINY, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.strip().splitlines()
    device = f"device: cpu (NumPy {np.__version__}, "  # which library ran it
    assert any(line.startswith(device) for line in lines), result.stdout
    epoch_lines = [line for line in lines if re.match(r"^epoch\s+\d+/3\b", line)]
    assert len(epoch_lines) == 3
    for i, line in enumerate(epoch_lines, start=1):
        assert re.match(
            rf"^epoch\s+{i}/3\s+train loss \d+\.\d{{4}}\s+test loss \d+\.\d{{4}}\s+"
            r"test accuracy [01]\.\d{4}",
            line,
        ), line
    match = re.fullmatch(r"test accuracy: (0\.\d{4}|1\.0000)", lines[-1])
    assert match, lines[-1]
    assert float(match.group(1)) > 0.5  # ten classes: chance is 0.1
    losses = [float(re.search(r"train loss (\d+\.\d+)", line).group(1)) for line in epoch_lines]
    assert losses[-1] < losses[0]


def test_module_entry_point_and_options(idx_dataset, env, tmp_path):
    """``python -m mlp`` is the same program; the other optimizers and activations run too."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlp",
            "--data-dir",
            str(idx_dataset),
            "--epochs",
            "1",
            "--hidden",
            "16,16",
            "--activation",
            "tanh",
            "--optimizer",
            "momentum",
            "--dropout",
            "0.1",
            "--dtype",
            "float64",
            "--seed",
            "3",
            "--weight-decay",
            "1e-4",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^test accuracy: [01]\.\d{4}$", result.stdout, re.MULTILINE)
    assert "784-16-16-10" in result.stdout


def test_help(env, tmp_path):
    result = cli("--help", env=env, cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--device", "--hidden", "--epochs", "--batch-size", "--lr", "--data-dir"):
        assert option in result.stdout
    help_text = " ".join(result.stdout.split())  # argparse wraps lines anywhere
    for default in ("512,256", "10", "128", "adam", "fashion-mnist", "float32"):
        assert f"(default: {default})" in help_text


@pytest.mark.parametrize("module", ["mlp.cli.train", "mlp.cli.evaluate", "bench.cli"])
def test_help_shows_only_real_defaults(module):
    """No ``(default: None)``/``False``/``[...]`` noise, and no default said twice."""
    parser = importlib.import_module(module).build_parser()
    help_text = " ".join(parser.format_help().split())
    assert "(default: None)" not in help_text
    assert "(default: False)" not in help_text
    assert "(default: [" not in help_text
    assert "(default: {" not in help_text
    assert "(default: " in help_text
    assert not re.search(r"\(default: [^)]*\) \(default:", help_text)


def test_hidden_default_is_parsed():
    from mlp.cli.train import build_parser

    assert build_parser().parse_args([]).hidden == [512, 256]


@pytest.mark.parametrize(
    "args",
    [
        ["--epochs", "0"],
        ["--epochs", "-3"],
        ["--epochs", "two"],
        ["--batch-size", "-1"],
        ["--batch-size", "0"],
        ["--hidden", "512,,x"],
        ["--hidden", "512,-3"],
        ["--hidden", "abc"],
        ["--activation", "foo"],
        ["--device", "tpu"],
        ["--device", "cuda:x"],
        ["--lr", "abc"],
        ["--lr", "0"],
        ["--lr", "-0.1"],
        ["--lr", "nan"],
        ["--lr", "inf"],
        ["--dropout", "1"],
        ["--dropout", "-0.5"],
        ["--optimizer", "rmsprop"],
        ["--dataset", "cifar10"],
        ["--dtype", "float16"],
        ["--weight-decay", "-1"],
        ["--no-such-option"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_values_exit_2_with_one_line(args, idx_dataset, env, tmp_path):
    result = cli("--data-dir", idx_dataset, "--epochs", 1, *TINY, *args, env=env, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip()
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "test accuracy" not in result.stdout  # nothing was trained


@pytest.mark.parametrize("dataset", ["kmnist", "mnist"])
def test_missing_dataset_exits_1_with_one_line(dataset, env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli(
        "--dataset",
        dataset,
        "--data-dir",
        empty,
        "--no-download",
        "--epochs",
        1,
        env=env,
        cwd=tmp_path,
    )
    line = assert_one_line_error(result, 1)
    assert line == (
        f"mlp-train: error: {empty}: no {dataset} here or in {empty / dataset} (all four of "
        "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
        "t10k-labels-idx1-ubyte[.gz]): put them there, or leave --data-dir out to search the "
        "usual places (and to download)"
    )
    assert result.stdout == ""


def test_missing_dataset_without_data_dir(env, tmp_path):
    result = cli("--dataset", "kmnist", "--no-download", "--epochs", 1, env=env, cwd=tmp_path)
    line = assert_one_line_error(result, 1)
    assert "kmnist not found" in line and "MLP_DATA_DIR" in line
    assert str(tmp_path / "empty-cache") in line  # the user cache it looked in


def test_corrupt_dataset_exits_1(idx_dataset, env, tmp_path):
    target = idx_dataset / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-10])
    result = cli("--data-dir", idx_dataset, "--epochs", 1, *TINY, env=env, cwd=tmp_path)
    line = assert_one_line_error(result, 1)
    assert "t10k-labels-idx1-ubyte.gz" in line


@pytest.mark.skipif(
    importlib.util.find_spec("cupy") is not None,
    reason="CuPy is installed here: the missing-CuPy message cannot appear",
)
def test_cuda_without_cupy_names_the_extra(idx_dataset, env, tmp_path):
    result = cli(
        "--device", "cuda", "--data-dir", idx_dataset, "--epochs", 1, *TINY, env=env, cwd=tmp_path
    )
    line = assert_one_line_error(result, 1)
    assert "cuda12" in line and "cuda13" in line
