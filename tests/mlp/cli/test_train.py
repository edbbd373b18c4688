"""``mlp-train`` as a user runs it: it trains, its options and their errors (exit status 2), a
dataset, device or memory that fails (exit status 1), each as one line; divergence."""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from mlp.checkpoint import load_checkpoint
from mlp.cli import train
from mlp.data import SPLITS, write_idx
from mlp.data.synthetic import make_images
from mlp.errors import CannotWrite
from mlp.model import MLP
from tests.helpers import ROOT, one_line, run, train_on

TINY = ["--hidden", "32", "--batch-size", "32"]


@pytest.fixture
def env(tmp_path):
    """The user's environment, minus anything that could find or fetch a real dataset."""
    environment = dict(os.environ)
    environment.pop("MLP_DATA_DIR", None)
    environment["XDG_CACHE_HOME"] = str(tmp_path / "empty-cache")
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [environment.get("PYTHONPATH")])]
    )
    return environment


def mlp_train(*args, env, cwd):
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


TRAIN_IMAGES, TRAIN_LABELS = SPLITS["train"]


TEST_IMAGES, TEST_LABELS = SPLITS["test"]


def gz(path: Path, raw: bytes) -> None:
    path.write_bytes(gzip.compress(raw, mtime=0))


def fake_cupy(count):
    def get_device_count():
        if isinstance(count, Exception):
            raise count
        return count

    runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


# ----------------------------------------------------------------------------- memory
OUT_OF_MEMORY_HINT = "; a smaller --hidden or --batch-size needs less"


def test_trains_on_a_small_dataset(idx_dataset, env, tmp_path):
    result = mlp_train("--data-dir", idx_dataset, "--epochs", 3, *TINY, env=env, cwd=tmp_path)
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
    result = mlp_train("--help", env=env, cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--device", "--hidden", "--epochs", "--batch-size", "--lr", "--data-dir"):
        assert option in result.stdout
    help_text = " ".join(result.stdout.split())  # argparse wraps lines anywhere
    for default in ("512,256", "10", "128", "adam", "fashion-mnist", "float32"):
        assert f"(default: {default}, or the resumed checkpoint's)" in help_text


def test_defaults_fill_what_a_fresh_run_leaves_out():
    from mlp.cli.train import build_parser, resumed_checkpoint

    args = build_parser().parse_args(["--epochs", "3"])
    assert args.hidden is None  # not given: a resumed run would take its checkpoint's
    assert resumed_checkpoint(args) is None
    assert (args.hidden, args.epochs, args.optimizer, args.dataset) == (
        [512, 256],
        3,
        "adam",
        "fashion-mnist",
    )


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
        ["--seed", str(2**63)],  # it trained, and saved what nothing could read back
        ["--no-such-option"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_values_exit_2_with_one_line(args, idx_dataset, env, tmp_path):
    result = mlp_train(
        "--data-dir", idx_dataset, "--epochs", 1, *TINY, *args, env=env, cwd=tmp_path
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip()
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "test accuracy" not in result.stdout  # nothing was trained


@pytest.mark.parametrize("dataset", ["kmnist", "mnist"])
def test_missing_dataset_exits_1_with_one_line(dataset, env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = mlp_train(
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
    result = mlp_train("--dataset", "kmnist", "--no-download", "--epochs", 1, env=env, cwd=tmp_path)
    line = assert_one_line_error(result, 1)
    assert "kmnist not found" in line and "MLP_DATA_DIR" in line
    assert str(tmp_path / "empty-cache") in line  # the user cache it looked in


def test_corrupt_dataset_exits_1(idx_dataset, env, tmp_path):
    target = idx_dataset / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-10])
    result = mlp_train("--data-dir", idx_dataset, "--epochs", 1, *TINY, env=env, cwd=tmp_path)
    line = assert_one_line_error(result, 1)
    assert "t10k-labels-idx1-ubyte.gz" in line


@pytest.mark.skipif(
    importlib.util.find_spec("cupy") is not None,
    reason="CuPy is installed here: the missing-CuPy message cannot appear",
)
def test_cuda_without_cupy_names_the_extra(idx_dataset, env, tmp_path):
    result = mlp_train(
        "--device", "cuda", "--data-dir", idx_dataset, "--epochs", 1, *TINY, env=env, cwd=tmp_path
    )
    line = assert_one_line_error(result, 1)
    assert "cuda12" in line and "cuda13" in line


# ----------------------------------------------------------------------------- divergence
def test_divergence_names_the_epoch_and_keeps_the_last_good_checkpoint(tmp_path, base, capsys):
    saved = tmp_path / "run.npz"
    sgd = ["--optimizer", "sgd"]
    assert run(train.main, [*base, *sgd, "--epochs", "1", "--save", saved], capsys)[0] == 0
    good = saved.read_bytes()
    code, _, err = run(
        train.main, [*base, *sgd, "--lr", "1e30", "--epochs", "3", "--resume", saved], capsys
    )
    assert code == 1
    assert err.startswith("mlp-train: error: training diverged: the loss became ")
    assert "in epoch 2; lower the learning rate" in err
    assert err.endswith(f"{saved} holds epoch 1: continue with --resume {saved}\n")
    assert err.count("\n") == 1
    assert saved.read_bytes() == good  # the NaN epoch never overwrote it
    assert load_checkpoint(saved).epoch == 1


def test_a_resume_saving_into_its_own_file_by_another_name_names_the_epoch_kept(
    tmp_path, base, capsys
):
    """--resume run.npz --save through a link to it: stopped in its first epoch, the run
    said nothing was saved, where the file held epoch 1."""
    saved, link = tmp_path / "run.npz", tmp_path / "link.npz"
    sgd = ["--optimizer", "sgd"]
    assert run(train.main, [*base, *sgd, "--epochs", "1", "--save", saved], capsys)[0] == 0
    link.symlink_to(saved)
    argv = [*base, *sgd, "--lr", "1e30", "--epochs", "3", "--resume", saved, "--save", link]
    code, _, err = run(train.main, argv, capsys)
    assert code == 1 and "in epoch 2" in err
    assert err.endswith(f"{link} holds epoch 1: continue with --resume {link}\n")


def test_a_resume_into_another_file_stopped_before_saving_names_the_one_kept(
    tmp_path, base, capsys
):
    """--resume run.npz --save other.npz, diverged in its first epoch: 'nothing was saved to
    other.npz' alone left out that run.npz still holds the run."""
    saved, other = tmp_path / "run.npz", tmp_path / "other.npz"
    sgd = ["--optimizer", "sgd"]
    assert run(train.main, [*base, *sgd, "--epochs", "1", "--save", saved], capsys)[0] == 0
    argv = [*base, *sgd, "--lr", "1e30", "--epochs", "3", "--resume", saved, "--save", other]
    code, _, err = run(train.main, argv, capsys)
    assert code == 1 and "in epoch 2" in err
    assert err.endswith(
        f"no epoch finished, so nothing was saved to {other}; {saved} still holds epoch 1: "
        "run the same command again\n"
    )


def test_a_stop_outside_the_epochs_names_the_epoch_kept(tmp_path, base, capsys, monkeypatch):
    """Ctrl-C in the last evaluation, or while a resume reads its data: the line names what
    the file holds (it said "nothing saved" where the file held the run)."""
    saved = tmp_path / "run.npz"
    sgd = ["--optimizer", "sgd", "--save", saved]

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(MLP, "evaluate", stop)  # the test set's, once the epochs are done
        code, _, err = run(train.main, [*base, *sgd, "--epochs", "2"], capsys)
    assert code == 130 and err.endswith(f"{saved} holds epoch 2: continue with --resume {saved}\n")
    monkeypatch.setattr(train, "read_dataset", stop)
    code, _, err = run(train.main, [*base, *sgd, "--epochs", "3", "--resume", saved], capsys)
    assert code == 130 and err.endswith(
        f"{saved} still holds epoch 2: run the same command again\n"
    )
    code, _, err = run(train.main, [*base, "--epochs", "3"], capsys)
    assert code == 130 and err.endswith("interrupted; nothing saved\n")


def test_divergence_in_the_first_epoch(tmp_path, base, capsys):
    saved = tmp_path / "run.npz"
    argv = [*base, "--optimizer", "sgd", "--lr", "1e30", "--epochs", "2", "--save", saved]
    code, _, err = run(train.main, argv, capsys)
    assert code == 1 and "in epoch 1" in err
    assert err.endswith(f"no epoch finished, so nothing was saved to {saved}\n")
    assert not saved.exists()


# ----------------------------------------------------------------------------- the data files
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda d: gz(d / f"{TRAIN_IMAGES}.gz", b"\x01\x02\x08\x03" + bytes(64)),
            "{file}: not an IDX file (bad magic number)",
        ),
        (
            lambda d: gz(d / f"{TRAIN_IMAGES}.gz", b"\x00\x00\x42\x03" + bytes(64)),
            "{file}: not an IDX file (unknown type byte 0x42)",
        ),
        (
            lambda d: gz(
                d / f"{TRAIN_IMAGES}.gz",
                gzip.decompress((d / f"{TRAIN_IMAGES}.gz").read_bytes())[:5000],
            ),
            "{file}: holds 4984 bytes of data but its header (300, 28, 28) needs 235200 "
            "(truncated or corrupt file)",
        ),
        (
            lambda d: (d / f"{TRAIN_IMAGES}.gz").write_bytes(
                (d / f"{TRAIN_IMAGES}.gz").read_bytes()[:3000]
            ),
            "{file}: cannot read (Compressed file ended before the end-of-stream marker was "
            "reached)",
        ),
        (
            lambda d: (d / f"{TRAIN_IMAGES}.gz").write_bytes(b"\x1f\x8b" + bytes(40)),
            "{file}: cannot read (",
        ),
    ],
    ids=["wrong magic", "unknown type", "truncated data", "truncated gzip", "broken gzip"],
)
def test_broken_idx_file_names_it(data, capsys, damage, message):
    damage(data)
    code, out, err = run(train.main, train_on(data), capsys)
    assert code == 1 and out == ""
    assert one_line(err).startswith(message.format(file=data / f"{TRAIN_IMAGES}.gz"))


def test_image_and_label_counts_differ(data, capsys):
    _, labels = make_images(299)
    write_idx(data / f"{TRAIN_LABELS}.gz", labels)
    code, _, err = run(train.main, train_on(data), capsys)
    assert code == 1
    assert one_line(err) == f"{data}: 300 train images but 299 labels"


def test_labels_out_of_range_for_the_output_layer(data, capsys):
    labels = make_images(100, seed=1)[1]
    labels[7] = 12
    write_idx(data / f"{TEST_LABELS}.gz", labels)
    code, _, err = run(train.main, train_on(data), capsys)
    assert code == 1
    assert one_line(err) == (
        f"{data / TEST_LABELS}.gz: labels go up to 12, but fashion-mnist has 10 classes "
        "(labels 0 to 9)"
    )


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([0, -1, 2] * 100, np.int8), "{file}: labels must be 0 or more, got -1"),
        (
            np.array([0, 1.5, 2] * 100, np.float32),
            "{file}: labels must be whole numbers, got float32 values",
        ),
        (
            np.array([0, np.nan, 2] * 100, np.float64),
            "{file}: labels must be whole numbers, got float64 values",
        ),
        (  # an ID column, say: not an output layer of two billion units (out of memory)
            np.array([0, 2**31 - 1, 2] * 100, np.int32),
            "{file}: labels go up to 2.14748e+09, but fashion-mnist has 10 classes (labels 0 to 9)",
        ),
    ],
    ids=["negative", "fractional", "nan", "huge"],
)
def test_labels_that_are_not_class_indices(data, capsys, labels, message):
    (data / f"{TRAIN_LABELS}.gz").unlink()
    write_idx(data / TRAIN_LABELS, labels)
    code, _, err = run(train.main, train_on(data), capsys)
    assert code == 1
    assert one_line(err) == message.format(file=data / TRAIN_LABELS)


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_split_without_images(data, capsys, split):
    images_name, labels_name = SPLITS[split]
    for name in (images_name, labels_name):
        (data / f"{name}.gz").unlink()
    write_idx(data / images_name, np.zeros((0, 28, 28), np.uint8))
    write_idx(data / labels_name, np.zeros(0, np.uint8))
    code, _, err = run(train.main, train_on(data), capsys)
    assert code == 1
    assert one_line(err) == f"{data / images_name}: holds no images (its header says (0, 28, 28))"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinity_in_the_inputs(data, capsys, bad):
    images = make_images(300)[0].astype(np.float32) / 255
    images[3, 4, 5] = bad
    (data / f"{TRAIN_IMAGES}.gz").unlink()
    write_idx(data / TRAIN_IMAGES, images)  # a float IDX file (type 0x0D)
    code, _, err = run(train.main, train_on(data), capsys)
    assert code == 1
    assert one_line(err) == f"{data / TRAIN_IMAGES}: the train images hold NaN or infinity"


# ----------------------------------------------------------------------------- the command line
def test_a_link_into_a_missing_folder_is_refused_before_training(data, tmp_path, capsys):
    """--save through a dangling link: the link's folder exists, its target's does not (it
    failed after the epochs)."""
    link = tmp_path / "run.npz"
    link.symlink_to(tmp_path / "nowhere" / "x.npz")
    code, out, err = run(train.main, train_on(data, "--save", link), capsys)
    assert code == 2 and out == ""
    assert one_line(err).startswith(f"argument --save: folder '{tmp_path / 'nowhere'}' does not")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "argument --epochs: epochs must be a positive integer, got 0"),
        (["--epochs", "-3"], "argument --epochs: epochs must be a positive integer, got -3"),
        (["--epochs", "x"], "argument --epochs: epochs must be a positive integer, got 'x'"),
        (["--batch-size", "0"], "argument --batch-size: batch size must be a positive integer"),
        (["--batch-size", "-8"], "argument --batch-size: batch size must be a positive integer"),
        (
            ["--hidden", "512,,x"],
            "argument --hidden: expected comma-separated positive "
            "integers such as 512,256, got '512,,x'",
        ),
        (["--activation", "swish"], "argument --activation: invalid choice: 'swish'"),
        (["--device", "tpu"], "argument --device: unknown device 'tpu': use cpu, cuda or cuda:N"),
        (["--lr", "nan"], "argument --lr: learning rate must be a finite number, got nan"),
        (["--lr", "0"], "argument --lr: learning rate must be positive, got 0.0"),
        (["--seed", "-1"], "argument --seed: seed must be a non-negative integer, got -1"),
        (
            ["--weight-decay", "-1"],
            "argument --weight-decay: weight decay must be a non-negative number, got -1.0",
        ),
        (["--dropout", "1"], "argument --dropout: dropout probability must be in [0, 1), got 1.0"),
        (
            ["--save", "/no/such/folder/run.npz"],
            "argument --save: folder '/no/such/folder' does not exist",
        ),
        (
            ["--log", "/no/such/folder/m.jsonl"],
            "argument --log: folder '/no/such/folder' does not exist",
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_bad_values_are_one_line_and_exit_2(data, capsys, args, message):
    code, out, err = run(train.main, train_on(data, *args), capsys)
    assert code == 2 and out == ""
    line = one_line(err)
    assert line.startswith(message), line
    assert line.endswith("(see mlp-train --help)")


@pytest.mark.parametrize(
    ("cupy", "device", "message"),
    [
        (
            None,
            "cuda",
            "CuPy is not installed: install the extra that matches your CUDA "
            "version, pip install 'mlp-backprop[cuda12]' or 'mlp-backprop[cuda13]' "
            "(or use --device cpu)",
        ),
        (fake_cupy(0), "cuda", "no CUDA GPU is available here; use --device cpu"),
        (
            fake_cupy(RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")),
            "cuda",
            "no CUDA GPU is available here (cudaErrorNoDevice: no CUDA-capable device is "
            "detected); use --device cpu",
        ),
        (
            fake_cupy(1),
            "cuda:3",
            "cuda:3 does not exist: this machine has 1 GPU(s), cuda:0 to cuda:0",
        ),
    ],
    ids=["no CuPy", "no GPU", "no driver", "no such index"],
)
def test_unusable_cuda_device(data, capsys, monkeypatch, cupy, device, message):
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    code, out, err = run(train.main, train_on(data, "--device", device), capsys)
    assert code == 1 and out == ""  # refused before the data is even read
    assert one_line(err) == message


# ----------------------------------------------------------------------------- output files
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--save", "{f}", "--plot", "{f}"], "--save and --plot name the same file"),
        (["--save", "{f}", "--log", "{f}"], "--save and --log name the same file"),
        (["--log", "{f}", "--plot", "{same}"], "--log and --plot name the same file"),
        (["--resume", "{ckpt}", "--log", "{ckpt}"], "--resume and --log name the same file"),
        (
            ["--resume", "{ckpt}", "--save", "{f}", "--plot", "{ckpt}"],
            "--resume and --plot name the same file",
        ),
    ],
)
def test_outputs_naming_one_file_are_refused(data, checkpoint, tmp_path, capsys, options, message):
    """A plot over the checkpoint, or a log that the next checkpoint save replaces, would
    lose one of them: refused before training, and the files there stay as they were."""
    target = tmp_path / "out.png"
    names = {"f": target, "same": f"{tmp_path}/./out.png", "ckpt": checkpoint}
    before = checkpoint.read_bytes()
    argv = train_on(data, *(o.format(**names) for o in options))
    code, out, err = run(train.main, argv, capsys)
    assert code == 2 and out == ""
    assert one_line(err).startswith(message) and one_line(err).endswith(": give each its own")
    assert not target.exists() and checkpoint.read_bytes() == before


def test_an_output_name_the_system_refuses_is_one_line(data, tmp_path, capsys):
    name = tmp_path / ("x" * 300 + ".npz")  # longer than a file name may be
    code, _, err = run(train.main, train_on(data, "--save", name), capsys)
    assert code == 2
    assert one_line(err).endswith("File name too long (see mlp-train --help)")
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)  # not a regular file: a checkpoint is never renamed over it
    code, _, err = run(train.main, train_on(data, "--save", fifo), capsys)
    assert code == 2
    assert f"argument --save: {str(fifo)!r} is not a regular file" in one_line(err)
    assert fifo.is_fifo()


@pytest.mark.parametrize("option", ["--resume", "--data-dir"])
def test_an_empty_path_is_a_usage_error(data, capsys, option):
    code, _, err = run(train.main, [*train_on(data), option, ""], capsys)
    assert code == 2
    assert f"argument {option}: expected a path, got ''" in one_line(err)


def test_running_out_of_memory_is_one_line(data, device, tmp_path):
    """A model too big for the device: host memory capped by an address-space limit, the
    GPU's by CuPy's pool limit. One line, exit status 1, and no checkpoint file at all."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if device == "cpu":
        hidden, cap = "100000,100000", 8 << 30  # 80 GB of float64 initial weights

        def limit_memory() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    else:
        hidden, limit_memory = "8192,8192", None  # 294 MB of float32 weights
        env["CUPY_GPU_MEMORY_LIMIT"] = str(64 << 20)
    argv = train_on(data, "--device", device, "--save", tmp_path / "run.npz")
    argv[argv.index("16")] = hidden
    result = subprocess.run(
        [sys.executable, "-m", "mlp", *map(str, argv)],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=limit_memory,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("out of memory: ") and line.endswith(OUT_OF_MEMORY_HINT), line
    assert "allocat" in line.lower()  # the allocator's own words: what did not fit
    assert not (tmp_path / "run.npz").exists()


def test_out_of_memory_mid_run_says_what_was_kept(data, tmp_path, capsys, monkeypatch):
    """Memory gone after two epochs (another process took the GPU's): the line names the
    checkpoint to resume from, and that checkpoint is intact."""
    real_save = train.save_checkpoint

    def memory_gone_after_epoch_2(path, *args, epoch, **kwargs):
        real_save(path, *args, epoch=epoch, **kwargs)
        if epoch == 2:
            np.empty(2**62, np.uint8)  # NumPy's own MemoryError (a subclass, as CuPy's is)

    monkeypatch.setattr(train, "save_checkpoint", memory_gone_after_epoch_2)
    path = tmp_path / "run.npz"
    argv = train_on(data, "--epochs", "4", "--save", path)
    code, _, err = run(train.main, argv, capsys)
    assert code == 1
    line = one_line(err)
    assert line.startswith("out of memory: Unable to allocate 4.00 EiB for an array"), line
    assert line.endswith(
        f"; {path} holds epoch 2: continue with --resume {path}{OUT_OF_MEMORY_HINT}"
    )
    assert load_checkpoint(path).epoch == 2


def test_real_processes_print_one_line(data, tmp_path):
    """Through the real entry points: no warnings, no traceback, just the line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    diverge = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlp",
            *map(str, train_on(data, "--optimizer", "sgd", "--lr", "1e30")),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert diverge.returncode == 1
    line = one_line(diverge.stderr)
    assert line.startswith("training diverged: the loss became") and "in epoch 1" in line
    evaluation = subprocess.run(
        [sys.executable, "-m", "mlp.cli.evaluate", "--checkpoint", str(tmp_path / "x.npz")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert evaluation.returncode == 1 and one_line(evaluation.stderr, "mlp-eval")


# ----------------------------------------------------------------------------- one run per file
HOLDER = """
import sys, time
from pathlib import Path
from mlp.cli.locks import holding
with holding([Path(sys.argv[1])]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_run_naming_the_same_file_is_refused_with_the_holders_pid(data, tmp_path, capsys):
    """Two runs with one --save took turns replacing it (and one --log got broken lines)."""
    path = tmp_path / "run.npz"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        for option in ("--save", "--log"):
            code, out, err = run(train.main, train_on(data, option, path), capsys)
            assert code == 1 and out == ""
            assert one_line(err) == (
                f"{path} is being written by another run (PID {holder.pid}): wait for it to "
                "end, or give this run other files"
            )
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert not path.exists()  # the refused runs wrote nothing
    code, _, _ = run(train.main, train_on(data, "--save", path), capsys)  # free once it ends
    assert code == 0 and path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run.npz"]  # no lock left


def test_two_real_runs_racing_for_one_save(data, tmp_path):
    """Two processes started together with one --save: one trains, the other is refused."""
    path = tmp_path / "run.npz"
    command = [sys.executable, "-m", "mlp", *map(str, train_on(data, "--epochs", "3"))]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [
        subprocess.Popen(
            [*command, "--save", str(path)], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]  # fmt: skip
    results = [(p.wait(timeout=300), *p.communicate()) for p in runs]
    codes = sorted(code for code, _, _ in results)
    if codes == [0, 0]:
        pytest.skip("the first run ended before the second began (machine too fast)")
    assert codes == [0, 1]
    (refused,) = [err for code, _, err in results if code == 1]
    assert "is being written by another run (PID " in one_line(refused)
    assert load_checkpoint(path).epoch == 3


# ----------------------------------------------------------------------------- signals
@pytest.mark.parametrize(("name", "status"), [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_and_sighup_stop_a_run_as_ctrl_c_does(data, tmp_path, name, status):
    """They used to end the run silently; now one line says what the checkpoint holds, and no
    temporary file is left."""
    path = tmp_path / "run.npz"
    argv = train_on(data, "--epochs", "200", "--batch-size", "4", "--save", path, "--quiet")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlp", *map(str, argv)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(getattr(signal, name))
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == status, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    epoch = load_checkpoint(path).epoch
    assert err == (
        f"mlp-train: stopped by {name}; {path} holds epoch {epoch}: continue with --resume {path}\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run.npz"]


def test_ctrl_c_during_a_save_names_the_epoch_on_disk(data, tmp_path, capsys, monkeypatch):
    """Ctrl-C while epoch 2 was being written said the file held epoch 2; it held epoch 1."""
    real_save = train.save_checkpoint

    def interrupted_while_saving_epoch_2(path, *args, epoch, **kwargs):
        if epoch == 2:
            raise KeyboardInterrupt  # before the rename: the file still holds epoch 1
        real_save(path, *args, epoch=epoch, **kwargs)

    monkeypatch.setattr(train, "save_checkpoint", interrupted_while_saving_epoch_2)
    path = tmp_path / "run.npz"
    code, _, err = run(train.main, train_on(data, "--epochs", "3", "--save", path), capsys)
    assert code == 130
    assert err == f"mlp-train: interrupted; {path} holds epoch 1: continue with --resume {path}\n"
    assert load_checkpoint(path).epoch == 1


# ----------------------------------------------------------------------------- the run's files
def test_outputs_may_not_name_the_datasets_own_files(data, capsys):
    image_file = data / f"{TRAIN_IMAGES}.gz"
    before = image_file.read_bytes()
    for option in ("--save", "--log"):  # (--plot refuses a .gz name for its format)
        code, out, err = run(train.main, train_on(data, option, image_file), capsys)
        assert code == 2 and "epoch" not in out
        assert one_line(err) == (
            f"{option} {image_file} is one of the dataset's own files: write the run's files "
            "elsewhere"
        )
    assert image_file.read_bytes() == before


def test_a_full_disk_under_the_log_names_it_and_what_was_kept(data, tmp_path, capsys, monkeypatch):
    from mlp.cli import reporting

    real_write = reporting.MetricsLog.write

    def disk_full_at_epoch_2(self, record):
        if record["epoch"] == 2:
            raise reporting.cannot_write(self.path, OSError(28, "No space left on device"))
        real_write(self, record)

    monkeypatch.setattr(reporting.MetricsLog, "write", disk_full_at_epoch_2)
    path, log = tmp_path / "run.npz", tmp_path / "metrics.jsonl"
    argv = train_on(data, "--epochs", "3", "--save", path, "--log", log)
    code, _, err = run(train.main, argv, capsys)
    assert code == 1
    assert one_line(err) == (
        f"cannot write {log}: No space left on device; {path} holds epoch 2: continue with "
        f"--resume {path}"
    )


def test_float_images_beyond_float32_name_their_file(data, capsys):
    """A float64 IDX holding 1e300 trained into 'inputs contain NaN or infinity', no file."""
    images = make_images(300)[0].astype(np.float64) / 255
    images[3, 4, 5] = 1e300
    (data / f"{TRAIN_IMAGES}.gz").unlink()
    write_idx(data / TRAIN_IMAGES, images)
    code, _, err = run(train.main, train_on(data), capsys)
    assert code == 1
    assert one_line(err) == (
        f"{data / TRAIN_IMAGES}: the train images hold values up to 1e+300, beyond float32's "
        "range, which the model computes in (use --dtype float64, or scale them)"
    )


def test_a_named_dataset_knows_its_classes(data, capsys):
    """--dataset mnist with labels up to 13 trained a 14-output model without a word."""
    labels = make_images(300, seed=0)[1]
    labels[5] = 13
    write_idx(data / f"{TRAIN_LABELS}.gz", labels)
    code, _, err = run(train.main, train_on(data, "--dataset", "mnist"), capsys)
    assert code == 1
    assert one_line(err) == (
        f"{data / TRAIN_LABELS}.gz: labels go up to 13, but mnist has 10 classes (labels 0 to 9)"
    )


def test_a_lock_file_planted_as_a_link_is_never_followed(tmp_path):
    from mlp.cli.locks import holding, lock_name

    victim = tmp_path / "victim.txt"
    victim.write_text("kept\n")
    (tmp_path / lock_name("run.npz")).symlink_to(victim)
    with pytest.raises(CannotWrite), holding([tmp_path / "run.npz"]):
        pass
    assert victim.read_text() == "kept\n"


def test_long_names_get_locks_of_their_own(tmp_path):
    from mlp.cli.locks import holding, lock_name

    a, b = "a" * 240 + "-one.npz", "a" * 240 + "-two.npz"
    assert lock_name(a) != lock_name(b) and len(lock_name(a).encode()) <= 255
    with holding([tmp_path / a]), holding([tmp_path / b]):  # neither blocks the other
        pass


def test_validation_split_schedule_and_early_stopping(base, tmp_path, capsys):
    """--validation-split watches held-out training images (the epoch line says val),
    --lr-schedule sets each epoch's rate (kept in the log), --early-stopping stops."""
    log = tmp_path / "log.jsonl"
    argv = [*base, "--epochs", "30", "--validation-split", "0.2", "--lr-schedule", "step",
            "--early-stopping", "1", "--lr", "0.5", "--optimizer", "sgd",
            "--log", str(log)]  # fmt: skip
    code, out, err = run(train.main, argv, capsys)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert 1 < len(lines) < 30 and "val loss" in lines[0] and "test loss" not in out
    assert ": 480 train + 120 held out to validate / 200 test images" in out  # of 600
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(r["lr"] == pytest.approx(0.5) for r in records[:10])
    assert out.splitlines()[-1].startswith("test accuracy: ")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--validation-split", "1.5", "validation split must be in [0, 1)"),
        ("--validation-split", "0.999", "--validation-split 0.999 of the 600 training images"),
        ("--lr-schedule", "linear", "invalid choice: 'linear'"),
        ("--early-stopping", "0", "early stopping patience must be a positive"),
    ],
)
def test_bad_training_options_are_one_line(base, capsys, option, value, message):
    code, _, err = run(train.main, [*base, option, value], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("options", "note"),
    [
        (["--early-stopping", "2"], "note: --early-stopping watches the test loss without"),
        (
            ["--early-stopping", "2", "--lr-schedule", "plateau"],
            "note: --early-stopping and --lr-schedule plateau watch the test loss without",
        ),
        (["--early-stopping", "2", "--validation-split", "0.2"], None),
        (["--lr-schedule", "step"], None),
    ],
)
def test_watching_the_test_set_is_said(base, capsys, options, note):
    """Without --validation-split, the weights early stopping ends with are chosen on the
    test set that the final accuracy is then measured on."""
    code, out, _ = run(train.main, [*base, "--epochs", "1", *options], capsys)
    assert code == 0
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    if note is None:
        assert notes == []
    else:
        assert len(notes) == 1 and notes[0].startswith(note)


def test_early_stopping_saves_the_best_epochs_weights(base, tmp_path, capsys):
    """The checkpoint holds what the run ended with, the best epoch's weights, so mlp-eval,
    mlp-export and mlp-predict serve the model the run reported."""
    from mlp import MLP
    from mlp.data import load_dataset

    saved, log = tmp_path / "run.npz", tmp_path / "log.jsonl"
    argv = [*base, "--epochs", "30", "--early-stopping", "1", "--lr", "0.5",
            "--optimizer", "sgd", "--save", str(saved), "--log", str(log), "--quiet"]  # fmt: skip
    code, _, err = run(train.main, argv, capsys)
    assert code == 0, err
    records = [json.loads(line) for line in log.read_text().splitlines()]
    best = min(records, key=lambda r: r["test_loss"])
    assert best is not records[-1]  # it stopped after a worse epoch
    data = load_dataset("fashion-mnist", base[base.index("--data-dir") + 1])
    stored = MLP.load(saved).evaluate(data.X_test, data.y_test)  # the test set was watched
    assert stored["loss"] == pytest.approx(best["test_loss"], rel=1e-6)
