"""The README's examples run as written: scikit-learn (on the GPU where there is one), the
train-export-serve recipe, PyTorch tensors in and out."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_scikit_learn_example_runs(capsys):
    pytest.importorskip("sklearn")
    (block,) = [b for b in python_blocks() if "GridSearchCV" in b]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ConvergenceWarning in the front door is a bug too
        exec(compile(block, str(README), "exec"), {})
    printed = capsys.readouterr().out
    assert "mlpclassifier__hidden_layer_sizes" in printed and "setosa" in printed


def shell_block(marker: str) -> list[str]:
    """The commands of the README's ``sh`` block that holds ``marker``, comments dropped."""
    (block,) = [b for b in re.findall(r"```sh\n(.*?)```", README.read_text(), re.S) if marker in b]
    return [line.split("#")[0].split() for line in block.splitlines() if line.strip()]


def test_train_export_serve_and_predict_on_a_picture(tmp_path, monkeypatch, capsys):
    """The recipe as written: mlp-train, mlp-export, mlp-predict on a PNG, then the ONNX file
    run by onnxruntime against predict_proba (on a small stand-in for Fashion-MNIST)."""
    pytest.importorskip("onnxruntime")
    image = pytest.importorskip("PIL.Image")
    from mlp.data.synthetic import write_dataset

    data = write_dataset(tmp_path / "data", n_train=300, n_test=100)
    monkeypatch.setenv("MLP_DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)
    pixels = np.zeros((40, 30), np.uint8)
    pixels[10:30, 5:25] = 255
    image.fromarray(pixels).save("shoe.png")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    outputs = []
    for command in shell_block("mlp-export"):
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert Path("model.onnx").stat().st_size > 0
    top = outputs[-1].strip()
    assert top.startswith("shoe.png: ") and top.count("·") == 2  # the three likeliest names
    (block,) = [b for b in python_blocks() if "onnxruntime" in b]
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)
    assert namespace["probabilities"].shape == (100, 10)
    assert capsys.readouterr().out == "True\n"  # onnxruntime agrees with predict_proba


def test_the_pytorch_example_runs(capsys):
    pytest.importorskip("torch")
    (block,) = [b for b in python_blocks() if "from_dlpack" in b]
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)
    logits, model, x = namespace["logits"], namespace["model"], namespace["x"]
    assert tuple(logits.shape) == (512, 10) and model.epochs_trained == 2
    np.testing.assert_array_equal(logits.numpy(), model.forward(x.numpy()))
    assert "torch.Size([512, 10])" in capsys.readouterr().out
