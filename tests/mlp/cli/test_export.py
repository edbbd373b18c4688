"""``mlp-export``: a saved run as an ONNX file that onnxruntime runs to the model's own
probabilities, and its bad input as one line."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import onnxruntime as ort

import mlp.extras
from mlp import MLP
from mlp.cli import export
from mlp.data import CLASS_NAMES, load_dataset
from mlp.export import IR_VERSION, OPSET
from tests.helpers import assert_one_line, one_line, run, run_module

PROG = "mlp-export"


def run_onnx(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"input": X})
    return output


def metadata(path):
    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}


def test_export_writes_a_graph_that_gives_the_models_probabilities(
    data, checkpoint, tmp_path, capsys
):
    target = tmp_path / "model.onnx"
    code, out, err = run(export.main, ["--checkpoint", checkpoint, "--onnx", target], capsys)
    assert code == 0 and err == ""
    size = target.stat().st_size
    model = MLP.load(checkpoint)
    assert out == (
        f"wrote {target} ({size:,} bytes, ONNX opset {OPSET}, IR version {IR_VERSION}): "
        f"{model} from {checkpoint}, float32 'input' -> 'probabilities'\n"
    )
    images = load_dataset("fashion-mnist", data).X_test  # uint8, as the library reads them
    got = run_onnx(target, images.astype(np.float32) / 255)
    np.testing.assert_allclose(got, model.predict_proba(images), atol=1e-5)
    assert json.loads(metadata(target)["classes"]) == list(CLASS_NAMES["fashion-mnist"])
    loaded = onnx.load(str(target))
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.ir_version == IR_VERSION
    assert [o.version for o in loaded.opset_import] == [OPSET]


def test_export_with_uint8_input(data, checkpoint, tmp_path, capsys):
    target = tmp_path / "pixels.onnx"
    argv = ["--checkpoint", checkpoint, "--onnx", target, "--uint8-input"]
    code, out, err = run(export.main, argv, capsys)
    assert code == 0 and err == "" and "uint8 'input' -> 'probabilities'" in out
    images = load_dataset("fashion-mnist", data).X_test
    model = MLP.load(checkpoint)
    np.testing.assert_allclose(run_onnx(target, images), model.predict_proba(images), atol=1e-5)


def test_export_of_a_regression_has_predictions_and_no_classes(tmp_path, capsys):
    saved = MLP([6, 8, 2], loss="squared_error", seed=3).save(tmp_path / "regression.npz")
    target = tmp_path / "regression.onnx"
    code, out, err = run(export.main, ["--checkpoint", saved, "--onnx", target], capsys)
    assert code == 0 and err == "" and out.endswith("float32 'input' -> 'predictions'\n")
    X = np.random.default_rng(0).normal(size=(9, 6)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(target, X), MLP.load(saved).predict(X), atol=1e-5)
    assert "classes" not in metadata(target)


def test_export_keeps_the_class_names_saved_with_the_model(tmp_path, capsys):
    saved = MLP([6, 3]).save(tmp_path / "named.npz", classes=["red", "green", "blue"])
    target = tmp_path / "named.onnx"
    assert run(export.main, ["--checkpoint", saved, "--onnx", target], capsys)[0] == 0
    assert json.loads(metadata(target)["classes"]) == ["red", "green", "blue"]


# ----------------------------------------------------------------------------- bad input
def test_missing_options_are_a_usage_error(capsys):
    code, _, err = run(export.main, [], capsys)
    assert code == 2
    assert one_line(err, PROG).startswith(
        "the following arguments are required: --checkpoint, --onnx"
    )


def test_a_folder_as_the_onnx_file_is_a_usage_error(checkpoint, tmp_path, capsys):
    code, out, err = run(export.main, ["--checkpoint", checkpoint, "--onnx", tmp_path], capsys)
    assert code == 2 and out == ""
    assert one_line(err, PROG) == (
        f"argument --onnx: expected a file name, got {str(tmp_path)!r} (see {PROG} --help)"
    )


def test_a_missing_folder_is_a_usage_error(checkpoint, tmp_path, capsys):
    target = tmp_path / "missing" / "model.onnx"
    code, _, err = run(export.main, ["--checkpoint", checkpoint, "--onnx", target], capsys)
    assert code == 2
    assert one_line(err, PROG) == (
        f"argument --onnx: folder {str(target.parent)!r} does not exist (see {PROG} --help)"
    )


def test_a_read_only_folder_is_a_usage_error(checkpoint, tmp_path, capsys, monkeypatch):
    """As root a chmod stops nothing, so the folder's refusal is simulated."""
    from mlp.cli import common

    folder = tmp_path / "read-only"
    folder.mkdir()
    real_access = common.os.access
    monkeypatch.setattr(
        common.os, "access", lambda path, mode: str(path) != str(folder) and real_access(path, mode)
    )
    argv = ["--checkpoint", checkpoint, "--onnx", folder / "model.onnx"]
    code, _, err = run(export.main, argv, capsys)
    assert code == 2
    assert one_line(err, PROG) == (
        f"argument --onnx: folder {str(folder)!r} is not writable (see {PROG} --help)"
    )
    assert list(folder.iterdir()) == []


def test_writing_over_the_checkpoint_is_refused(checkpoint, capsys):
    kept = checkpoint.read_bytes()
    code, _, err = run(export.main, ["--checkpoint", checkpoint, "--onnx", checkpoint], capsys)
    assert code == 2
    assert one_line(err, PROG) == f"--onnx {checkpoint} would replace the checkpoint it exports"
    assert checkpoint.read_bytes() == kept


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    argv = ["--checkpoint", tmp_path / "nope.npz", "--onnx", tmp_path / "model.onnx"]
    code, _, err = run(export.main, argv, capsys)
    assert code == 1
    assert one_line(err, PROG) == f"{tmp_path / 'nope.npz'}: no such checkpoint file"
    assert not (tmp_path / "model.onnx").exists()


def test_a_corrupt_checkpoint_is_one_line(checkpoint, tmp_path, capsys):
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    target = tmp_path / "model.onnx"
    code, out, err = run(export.main, ["--checkpoint", checkpoint, "--onnx", target], capsys)
    assert code == 1 and out == ""
    assert one_line(err, PROG).startswith(f"{checkpoint}: truncated or corrupt checkpoint (")
    assert not target.exists()


def test_without_onnx_the_error_names_the_extra(checkpoint, tmp_path, capsys, monkeypatch):
    real_import = mlp.extras.importlib.import_module

    def without_onnx(name, *args, **kwargs):
        if name == "onnx":
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(mlp.extras.importlib, "import_module", without_onnx)
    target = tmp_path / "model.onnx"
    code, _, err = run(export.main, ["--checkpoint", checkpoint, "--onnx", target], capsys)
    assert code == 1
    assert one_line(err, PROG) == (
        "ONNX export needs onnx: pip install 'mlp-backprop[onnx]' (or pip install onnx)"
    )
    assert not target.exists()


def test_the_module_runs_as_a_command(tmp_path):
    """As a user runs it: a process, one error line, no traceback."""
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    done = run_module("mlp.cli.export", "--checkpoint", str(bad), "--onnx", str(tmp_path / "m"))
    line = assert_one_line(done, PROG, 1)
    assert re.match(rf"{PROG}: error: {re.escape(str(bad))}: ", line)
    assert not (tmp_path / "m").exists()
