"""Bad input never costs a traceback: one line naming the file or value, exit status 2 for a
bad command line and 1 for a runtime failure (data, device, checkpoint, diverged run)."""

from __future__ import annotations

import gzip
import os
import re
import resource
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from mlp import MLP
from mlp.checkpoint import load_checkpoint
from mlp.cli import evaluate, train
from mlp.data import SPLITS, write_idx
from mlp.data.synthetic import make_images, write_dataset

ROOT = Path(__file__).resolve().parents[1]
TRAIN_IMAGES, TRAIN_LABELS = SPLITS["train"]
TEST_IMAGES, TEST_LABELS = SPLITS["test"]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("good") / "data", n_train=300, n_test=100)


@pytest.fixture
def data(good, tmp_path) -> Path:
    """A private copy of the good dataset, for a test to break."""
    return Path(shutil.copytree(good, tmp_path / "data"))


def run(main, argv, capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str, prog: str = "mlp-train") -> str:
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"{prog}: error: ")
    return err[len(f"{prog}: error: ") : -1]


def train_on(data, *extra) -> list[str]:
    return ["--data-dir", data, "--no-download", "--hidden", "16", "--epochs", "1", *extra]


def gz(path: Path, raw: bytes) -> None:
    path.write_bytes(gzip.compress(raw, mtime=0))


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
        f"{data / TEST_LABELS}.gz: labels go up to 12, but the training labels make 10 classes "
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
            "{file}: labels go up to 2.14748e+09, but they are class indices 0 to K-1, one "
            "output unit each, with K at most 65536",
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
    assert one_line(err) == f"{data / TRAIN_IMAGES}: the train images contain NaN or infinity"


def test_nan_in_library_inputs():
    X = np.ones((4, 3))
    X[1, 1] = np.nan
    with pytest.raises(ValueError, match="inputs contain NaN or infinity"):
        MLP([3, 2]).fit(X, np.zeros(4, int), epochs=1)


def test_wrong_feature_count_at_predict_names_both_shapes():
    with pytest.raises(ValueError) as info:
        MLP([784, 10]).predict(np.zeros((5, 100), np.float32))
    assert "(n, 784)" in str(info.value) and "(5, 100)" in str(info.value)


# ----------------------------------------------------------------------------- the command line
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


def fake_cupy(count):
    def get_device_count():
        if isinstance(count, Exception):
            raise count
        return count

    runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


@pytest.mark.parametrize(
    ("cupy", "device", "message"),
    [
        (
            None,
            "cuda",
            "CuPy is not installed: install the extra that matches your CUDA "
            "version, pip install 'mlp[cuda12]' or 'mlp[cuda13]' (or use --device cpu)",
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


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture
def checkpoint(data, tmp_path, capsys) -> Path:
    path = tmp_path / "run.npz"
    assert run(train.main, train_on(data, "--save", path), capsys)[0] == 0
    return path


def test_resume_from_a_missing_checkpoint(data, tmp_path, capsys):
    code, _, err = run(train.main, train_on(data, "--resume", tmp_path / "nope.npz"), capsys)
    assert code == 1
    assert one_line(err) == f"{tmp_path / 'nope.npz'}: no such checkpoint file"


def test_resume_from_a_truncated_checkpoint(data, checkpoint, capsys):
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    code, _, err = run(train.main, train_on(data, "--resume", checkpoint), capsys)
    assert code == 1
    assert one_line(err).startswith(f"{checkpoint}: truncated or corrupt checkpoint (")


def test_resume_with_another_architecture(data, checkpoint, capsys):
    argv = train_on(data, "--resume", checkpoint, "--epochs", "2")
    argv[argv.index("16")] = "24"
    code, _, err = run(train.main, argv, capsys)
    assert code == 1
    assert one_line(err) == (
        f"{checkpoint}: does not match this model: sizes [784, 16, 10] in the file but "
        "[784, 24, 10] here"
    )


def test_resume_with_another_seed_or_optimizer(data, checkpoint, capsys):
    code, _, err = run(train.main, train_on(data, "--resume", checkpoint, "--seed", "5"), capsys)
    assert code == 1
    assert one_line(err) == f"{checkpoint}: is another run: --seed 0 in the file but 5 here"
    argv = train_on(data, "--resume", checkpoint, "--epochs", "2", "--optimizer", "sgd")
    code, _, err = run(train.main, argv, capsys)
    assert code == 1
    assert (
        one_line(err) == f"{checkpoint}: does not match this model: optimizer Adam in the "
        "file but SGD here"
    )


@pytest.mark.parametrize(
    ("saved", "resumed", "difference"),
    [("sgd", "momentum", "without momentum in the file but with"), ("momentum", "sgd", "with")],
)
def test_resume_sgd_with_and_without_momentum(data, tmp_path, capsys, saved, resumed, difference):
    """The same class, other state: refused (it was a KeyError, or momentum silently lost)."""
    path = tmp_path / f"{saved}.npz"
    assert run(train.main, train_on(data, "--optimizer", saved, "--save", path), capsys)[0] == 0
    argv = train_on(data, "--optimizer", resumed, "--resume", path, "--epochs", "2")
    code, _, err = run(train.main, argv, capsys)
    assert code == 1
    assert one_line(err).startswith(
        f"{path}: does not match this model: optimizer SGD {difference}"
    )


def test_resume_past_the_total_is_a_usage_error(data, tmp_path, capsys):
    path = tmp_path / "run3.npz"
    assert run(train.main, train_on(data, "--save", path, "--epochs", "3"), capsys)[0] == 0
    code, _, err = run(train.main, train_on(data, "--resume", path, "--epochs", "2"), capsys)
    assert code == 2
    assert one_line(err) == (
        f"{path} already holds 3 epochs, more than --epochs 2 (--epochs is the total, as "
        "when it started)"
    )


def test_eval_errors(data, checkpoint, tmp_path, capsys):
    code, _, err = run(evaluate.main, [], capsys)
    assert code == 2
    assert one_line(err, "mlp-eval").startswith(
        "the following arguments are required: --checkpoint"
    )
    code, _, err = run(evaluate.main, ["--checkpoint", tmp_path / "nope.npz"], capsys)
    assert code == 1
    assert one_line(err, "mlp-eval") == f"{tmp_path / 'nope.npz'}: no such checkpoint file"

    small = write_dataset(tmp_path / "small", n_train=50, n_test=20, side=10)
    code, _, err = run(evaluate.main, ["--checkpoint", checkpoint, "--data-dir", small], capsys)
    assert code == 1
    assert one_line(err, "mlp-eval") == (
        "expected inputs of shape (n, 784), got (20, 100): the model's first layer takes 784 "
        "features"
    )
    twelve = write_dataset(tmp_path / "twelve", n_train=50, n_test=60, classes=12)
    code, _, err = run(evaluate.main, ["--checkpoint", checkpoint, "--data-dir", twelve], capsys)
    assert code == 1
    assert one_line(err, "mlp-eval") == (
        f"{twelve / TEST_LABELS}.gz: labels go up to 11, but the model has 10 outputs "
        "(labels 0 to 9)"
    )


def test_eval_on_an_unusable_device(data, checkpoint, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    argv = ["--checkpoint", checkpoint, "--data-dir", data, "--device", "cuda"]
    code, out, err = run(evaluate.main, argv, capsys)
    assert code == 1 and out == ""
    assert "pip install 'mlp[cuda12]'" in one_line(err, "mlp-eval")


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


@pytest.mark.parametrize("name", ["curves.xyz", "curves"])
def test_plot_format_is_checked_before_training(data, tmp_path, capsys, name):
    pytest.importorskip("matplotlib")
    code, out, err = run(train.main, train_on(data, "--plot", tmp_path / name), capsys)
    assert code == 2 and out == ""  # nothing trained
    line = one_line(err)
    assert line.startswith(f"--plot {tmp_path / name}: the suffix names the image format")
    assert ".png" in line and ".svg" in line


def test_a_failed_plot_write_keeps_the_old_plot(data, tmp_path, capsys, monkeypatch):
    """The disk fills up while the new plot is written: the old one stays whole, and the
    line names the file."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    plot = tmp_path / "curves.png"
    plot.write_bytes(b"the previous run's plot")

    def disk_full(self, file, **kwargs):
        file.write(b"half a png")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", disk_full)
    code, _, err = run(train.main, train_on(data, "--plot", plot), capsys)
    assert code == 1
    assert one_line(err) == f"cannot write {plot}: No space left on device"
    assert plot.read_bytes() == b"the previous run's plot"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "data"]  # no temp file


def test_a_run_that_fails_before_its_first_epoch_keeps_an_earlier_log(data, tmp_path, capsys):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"epoch": 1}\n')
    argv = train_on(data, "--optimizer", "sgd", "--lr", "1e30", "--log", log)
    code, _, err = run(train.main, argv, capsys)
    assert code == 1 and "training diverged" in one_line(err)
    assert log.read_text() == '{"epoch": 1}\n'


# ----------------------------------------------------------------------------- memory
OUT_OF_MEMORY_HINT = "; a smaller --hidden or --batch-size needs less"


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


# ----------------------------------------------------------------------------- real processes
def test_eval_of_overflowing_weights_prints_no_numpy_warnings(data, checkpoint, tmp_path):
    """Finite but huge weights overflow: the loss says so (nan or inf), with no warnings."""
    model = MLP.load(checkpoint)
    model.load_state_dict({k: v * np.float32(1e30) for k, v in model.state_dict().items()})
    huge = model.save(tmp_path / "huge.npz")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlp.cli.evaluate",
            "--checkpoint",
            str(huge),
            "--data-dir",
            str(data),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0 and result.stderr == ""
    assert re.search(r"^test loss: (nan|inf)$", result.stdout, re.MULTILINE), result.stdout


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
