"""ONNX export: every kind of model, run by onnxruntime, gives what ``predict_proba`` (a
regression: ``predict``) gives; the file's metadata, opset and IR version; bad paths and a
missing onnx as one clear error."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import mlp.extras
import mlp.files
from mlp import MLP
from mlp.errors import CannotWrite, InvalidArgument, MissingExtra
from mlp.export import IR_VERSION, OPSET, to_onnx
from tests.helpers import ROOT
from tests.mlp.problems import blobs

#: A few epochs are enough to compare a graph with the model: they need not converge.
QUICK_FIT = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def run_onnx(path, X):
    """The exported graph's one output for ``X``, computed by onnxruntime on the CPU."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"input": X})
    return output


def trained(sizes, X, y, epochs=3, **settings):
    model = MLP(sizes, seed=1, **settings)
    model.fit(X, y, epochs=epochs, batch_size=32)
    return model


@pytest.fixture(scope="module")
def data():
    X, y = blobs(200, seed=1)
    return X.astype(np.float32), y


def output_info(path):
    (output,) = onnx.load(str(path)).graph.output
    dims = output.type.tensor_type.shape.dim
    return (
        output.name,
        output.type.tensor_type.elem_type,
        [d.dim_param or d.dim_value for d in dims],
    )


# ----------------------------------------------------------------------------- the graph's values
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_multiclass_probabilities_match_predict_proba(activation, data, tmp_path):
    X, y = data
    model = trained([10, 16, 12, 4], X, y, activation=activation)
    path = model.to_onnx(tmp_path / "model.onnx")
    assert path == tmp_path / "model.onnx"
    expected = model.predict_proba(X)
    got = run_onnx(path, X)
    assert got.dtype == np.float32 and got.shape == (200, 4)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)  # a softmax, not logits
    np.testing.assert_allclose(run_onnx(path, X[:1]), expected[:1], atol=1e-5)  # any batch
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count("Gemm") == 3 and ops[-1] == "Softmax"
    assert ops.count({"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}[activation]) == 2
    assert output_info(path) == ("probabilities", onnx.TensorProto.FLOAT, ["batch", 4])


def test_binary_model_gives_two_columns_as_predict_proba(tmp_path):
    X, y = blobs(200, classes=2, seed=3)
    X = X.astype(np.float32)
    model = trained([10, 8, 1], X, y)
    got = run_onnx(model.to_onnx(tmp_path / "binary.onnx"), X)
    assert got.shape == (200, 2)
    np.testing.assert_allclose(got, model.predict_proba(X), atol=1e-5)
    assert (got.argmax(axis=1) == model.predict(X)).all()


@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_outputs_match_predict(outputs, tmp_path):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(150, 6)).astype(np.float32)
    targets = X[:, :outputs] * 2.0 - X[:, -outputs:]
    model = trained([6, 16, outputs], X, targets, loss="squared_error")
    path = model.to_onnx(tmp_path / "regression.onnx")
    got = run_onnx(path, X)
    assert got.shape == (150, outputs)  # a column per output, one output too
    np.testing.assert_allclose(got, model.predict(X), atol=1e-5)
    assert output_info(path) == ("predictions", onnx.TensorProto.FLOAT, ["batch", outputs])
    assert [node.op_type for node in onnx.load(str(path)).graph.node] == ["Gemm", "Relu", "Gemm"]


def test_dropout_is_left_out_as_at_inference(data, tmp_path):
    X, y = data
    model = trained([10, 16, 16, 4], X, y, dropout=0.5)
    path = model.to_onnx(tmp_path / "dropout.onnx")
    np.testing.assert_allclose(run_onnx(path, X), model.predict_proba(X), atol=1e-5)
    assert "Dropout" not in {node.op_type for node in onnx.load(str(path)).graph.node}


def test_float64_model_exports_as_double(data, tmp_path):
    X, y = data
    model = trained([10, 16, 4], X.astype(np.float64), y, dtype="float64")
    path = model.to_onnx(tmp_path / "double.onnx")
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert {t.data_type for t in graph.initializer} == {onnx.TensorProto.DOUBLE}
    got = run_onnx(path, X.astype(np.float64))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, model.predict_proba(X), rtol=0, atol=1e-12)


@pytest.mark.parametrize("output_activation", ["sigmoid", "tanh"])
def test_output_activation_model_gives_that_activation(output_activation, data, tmp_path):
    X, y = data
    source = trained([10, 16, 4], X, y)
    model = MLP([10, 16, 4], seed=1, output_activation=output_activation)
    model.load_state_dict(source.state_dict())
    got = run_onnx(model.to_onnx(tmp_path / "inference.onnx"), X)
    expected = model.predict_proba(X)  # the activation's values: no softmax
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got.sum(axis=1), 1.0)


def test_model_without_hidden_layers(data, tmp_path):
    X, y = data
    model = trained([10, 4], X, y)
    path = model.to_onnx(tmp_path / "linear.onnx")
    np.testing.assert_allclose(run_onnx(path, X), model.predict_proba(X), atol=1e-5)


def test_uint8_input_is_scaled_in_the_graph(tmp_path):
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(64, 12), dtype=np.uint8)
    model = MLP([12, 8, 3], seed=2)
    model.fit(pixels, rng.integers(0, 3, 64), epochs=2)
    path = to_onnx(model, tmp_path / "pixels.onnx", uint8_input=True)
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    np.testing.assert_allclose(run_onnx(path, pixels), model.predict_proba(pixels), atol=1e-5)
    # the float graph takes the pixels as the library scales them
    floats = to_onnx(model, tmp_path / "floats.onnx")
    scaled = pixels.astype(np.float32) / 255
    np.testing.assert_allclose(run_onnx(floats, scaled), model.predict_proba(pixels), atol=1e-5)
    with pytest.raises(InvalidArgument, match="uint8_input must be True or False, got 1"):
        to_onnx(model, tmp_path / "bad.onnx", uint8_input=1)


# ----------------------------------------------------------------------------- the file
def test_file_passes_the_checker_with_pinned_versions_and_metadata(data, tmp_path):
    X, y = data
    model = trained([10, 16, 4], X, y)
    names = ["north", "east", "south", "west"]
    path = model.to_onnx(tmp_path / "model.onnx", classes=names)
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.ir_version == IR_VERSION == 8
    assert [(o.domain, o.version) for o in loaded.opset_import] == [("", OPSET)] and OPSET == 17
    assert (loaded.producer_name, loaded.producer_version) == ("mlp-backprop", mlp.__version__)
    metadata = {prop.key: prop.value for prop in loaded.metadata_props}
    assert json.loads(metadata["classes"]) == names
    assert metadata["task"] == "classification"
    assert json.loads(metadata["config"]) == model.config()
    (graph_input,) = loaded.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "input" and [d.dim_param or d.dim_value for d in dims] == [
        "batch",
        10,
    ]


def test_without_class_names_the_metadata_has_none(data, tmp_path):
    model = MLP([10, 4])
    loaded = onnx.load(str(model.to_onnx(tmp_path / "model.onnx")))
    metadata = {prop.key: prop.value for prop in loaded.metadata_props}
    assert "classes" not in metadata and metadata["task"] == "classification"
    regression = MLP([10, 2], loss="squared_error")
    loaded = onnx.load(str(regression.to_onnx(tmp_path / "regression.onnx")))
    assert {p.key: p.value for p in loaded.metadata_props}["task"] == "regression"


def test_an_existing_file_is_replaced_whole(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old" * 100_000)
    model = MLP([10, 4])
    model.to_onnx(path)
    assert onnx.load(str(path)).graph.input[0].name == "input"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary left


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("sizes", "loss", "classes", "message"),
    [
        ([10, 4], "cross_entropy", ["a", "b"], "expected 4 class names, one per class, got 2"),
        ([10, 1], "cross_entropy", ["a"], "expected 2 class names, one per class, got 1"),
        ([10, 2], "squared_error", ["a", "b"], "a regression model has no classes to name"),
        ([10, 2], "cross_entropy", "ab", "class names must be a list of texts, got 'ab'"),
        ([10, 2], "cross_entropy", ["a", 2], "a class name must be a text, got 2"),
        (
            [10, 2],
            "cross_entropy",
            ["a", "b\nc"],
            "a class name must be one printable line of text, got 'b\\nc'",
        ),
    ],
)
def test_bad_class_names_are_refused_before_writing(sizes, loss, classes, message, tmp_path):
    with pytest.raises(InvalidArgument) as exc:
        MLP(sizes, loss=loss).to_onnx(tmp_path / "model.onnx", classes=classes)
    assert str(exc.value) == message
    assert isinstance(exc.value, TypeError) == ("a text" in message or "texts" in message)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_is_one_clear_error(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(CannotWrite) as exc:
        MLP([10, 4]).to_onnx(folder)
    assert str(exc.value) == f"cannot write {folder}: Is a directory"
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_a_missing_folder_is_one_clear_error(tmp_path):
    path = tmp_path / "missing" / "model.onnx"
    with pytest.raises(CannotWrite) as exc:
        MLP([10, 4]).to_onnx(path)
    assert str(exc.value) == f"cannot write {path}: No such file or directory"


def test_a_read_only_folder_is_one_clear_error(tmp_path, monkeypatch):
    """As root a chmod stops nothing, so the file system's refusal is simulated."""
    real_open = mlp.files.os.open

    def refuse(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(mlp.files.os, "open", refuse)
    path = tmp_path / "model.onnx"
    with pytest.raises(CannotWrite) as exc:
        MLP([10, 4]).to_onnx(path)
    assert str(exc.value) == f"cannot write {path}: Permission denied"
    assert "\n" not in str(exc.value)


def test_a_model_too_large_for_one_file_is_refused(tmp_path, monkeypatch):
    import mlp.export

    monkeypatch.setattr(mlp.export, "MAX_BYTES", 100)
    with pytest.raises(InvalidArgument, match="too large for one ONNX file"):
        MLP([10, 4]).to_onnx(tmp_path / "model.onnx")  # 44 float32 parameters: 176 bytes
    assert list(tmp_path.iterdir()) == []


def test_without_onnx_the_error_names_the_extra(tmp_path, monkeypatch):
    real_import = mlp.extras.importlib.import_module

    def without_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(mlp.extras.importlib, "import_module", without_onnx)
    with pytest.raises(MissingExtra) as exc:
        MLP([10, 4]).to_onnx(tmp_path / "model.onnx")
    assert "ONNX export needs onnx: pip install 'mlp-backprop[onnx]'" in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_importing_the_library_never_imports_onnx():
    code = "import sys, mlp, mlp.export, mlp.model; print('onnx' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# ----------------------------------------------------------------------------- scikit-learn
@QUICK_FIT
def test_sklearn_classifier_exports_its_classes(tmp_path):
    from mlp.sklearn import MLPClassifier

    X, y = blobs(200, classes=3, seed=6)
    labels = np.array(["cat", "dog", "eel"])[y]
    estimator = MLPClassifier((16,), max_iter=5, random_state=0).fit(X, labels)
    path = estimator.to_onnx(tmp_path / "classifier.onnx")
    got = run_onnx(path, X.astype(np.float32))
    np.testing.assert_allclose(got, estimator.predict_proba(X), atol=1e-5)
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(metadata["classes"]) == ["cat", "dog", "eel"]


@QUICK_FIT
def test_sklearn_binary_classifier_with_number_labels(tmp_path):
    from mlp.sklearn import MLPClassifier

    X, y = blobs(200, classes=2, seed=7)
    estimator = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, y * 10 + 3)
    path = estimator.to_onnx(tmp_path / "binary.onnx")
    np.testing.assert_allclose(
        run_onnx(path, X.astype(np.float32)), estimator.predict_proba(X), atol=1e-5
    )
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(metadata["classes"]) == ["3", "13"]


@QUICK_FIT
@pytest.mark.parametrize("targets", [1, 2])
def test_sklearn_regressor_exports_its_predictions(targets, tmp_path):
    from mlp.sklearn import MLPRegressor

    rng = np.random.default_rng(8)
    X = rng.normal(size=(120, 5))
    y = X[:, :targets] - X[:, -targets:] * 0.5
    estimator = MLPRegressor((16,), max_iter=5, random_state=0).fit(
        X, y[:, 0] if targets == 1 else y
    )
    got = run_onnx(estimator.to_onnx(tmp_path / "regressor.onnx"), X.astype(np.float32))
    np.testing.assert_allclose(got, estimator.predict(X).reshape(-1, targets), atol=1e-5)


def test_an_unfitted_estimator_cannot_export(tmp_path):
    from sklearn.exceptions import NotFittedError

    from mlp.sklearn import MLPClassifier

    with pytest.raises(NotFittedError):
        MLPClassifier().to_onnx(tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []
