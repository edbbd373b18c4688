"""PyTorch CUDA tensors in and out of a model on the GPU, with no copy through the host.

A tensor on the model's GPU is adopted in place (``CupyBackend._adopt``: the CuPy array's data
pointer is the tensor's), ``forward``'s CuPy result goes back to PyTorch through DLPack sharing
its memory, and the answers are those of the same data as NumPy arrays, on the GPU and on the
CPU. Skips without a GPU (a failure under ``MLP_REQUIRE_GPU=1``), and where this Python's
PyTorch is missing or has no CUDA. The CPU side: ``tests/mlp/test_interop.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlp import MLP
from tests.helpers import backend_or_skip

pytestmark = pytest.mark.cuda

FEATURES = 12


@pytest.fixture
def gpu():
    """The CUDA backend and PyTorch, which must see the same GPU."""
    backend = backend_or_skip("cuda")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(f"this PyTorch ({torch.__version__}) has no CUDA")
    return backend, torch


def data(rows: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, FEATURES)).astype(np.float32)
    y = (X[:, :3] @ np.array([1.0, -1.0, 0.5]) > 0).astype(np.int64) + 2 * (X[:, 3] > 0)
    return X, y, rng.uniform(0.5, 2.0, rows).astype(np.float32)


def on(torch, backend, array):
    return torch.from_numpy(array).to(f"cuda:{backend.index}")


def test_a_cuda_tensor_is_adopted_in_place(gpu):
    backend, torch = gpu
    model = MLP([FEATURES, 8, 4], device=backend)
    for dtype in (torch.float32, torch.uint8):
        t = (torch.rand(64, FEATURES, device=f"cuda:{backend.index}") * 255).to(dtype)
        adopted = backend.adopt(t)
        assert backend.is_array(adopted) and adopted.data.ptr == t.data_ptr()
        X, _ = model.device_inputs(t)  # what fit and predict compute with
        assert X.data.ptr == t.data_ptr() and X.dtype == adopted.dtype
    strided = torch.rand(FEATURES, 64, device=f"cuda:{backend.index}").T
    X, _ = model.device_inputs(strided)
    assert X.data.ptr == strided.data_ptr()
    assert X.strides == tuple(s * strided.element_size() for s in strided.stride())


def test_forward_goes_back_to_torch_sharing_its_memory(gpu):
    backend, torch = gpu
    model = MLP([FEATURES, 8, 4], device=backend)
    x = torch.rand(50, FEATURES, device=f"cuda:{backend.index}")
    out = model.forward(x)
    assert backend.is_array(out)
    back = torch.from_dlpack(out)
    assert back.is_cuda and back.data_ptr() == out.data.ptr and tuple(back.shape) == (50, 4)
    again = model.forward(x)
    assert again.data.ptr != out.data.ptr  # a fresh array per call, the caller's own


def tensors_and_arrays(torch, backend):
    """Training and validation data as NumPy arrays, and as tensors on the model's GPU (the
    validation inputs strided)."""
    X, y, w = data()
    X_val, y_val, w_val = data(150, seed=1)
    arrays = {"X": X, "y": y, "w": w, "X_val": X_val, "y_val": y_val, "w_val": w_val}
    tensors = {name: on(torch, backend, a) for name, a in arrays.items()}
    tensors["X_val"] = on(torch, backend, X_val.T.copy()).T
    return tensors, arrays


def run(device, given, epochs):
    """A seeded model on ``device`` trained ``epochs`` on ``given``, and what it answers."""
    model = MLP([FEATURES, 16, 4], device=device, seed=2)
    history = model.fit(
        given["X"], given["y"], epochs=epochs, batch_size=64, sample_weight=given["w"],
        validation_data=(given["X_val"], given["y_val"], given["w_val"]),
    )  # fmt: skip
    loss, grads = model.loss_and_gradients(given["X"], given["y"], given["w"])
    return {
        "history": history,
        "params": model.state_dict(),
        "forward": model.backend.to_numpy(model.forward(given["X_val"])),
        "proba": model.predict_proba(given["X_val"]),
        "evaluate": model.evaluate(given["X_val"], given["y_val"], given["w_val"]),
        "loss": loss,
        "grads": grads,
    }


def test_tensors_on_the_gpu_give_what_numpy_arrays_give(gpu):
    backend, torch = gpu
    tensors, arrays = tensors_and_arrays(torch, backend)
    adopted, uploaded = run(backend, tensors, epochs=3), run(backend, arrays, epochs=3)
    for ra, rb in zip(adopted["history"], uploaded["history"], strict=True):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-6)  # summed with atomics
        assert ra["val_loss"] == pytest.approx(rb["val_loss"], rel=1e-6)
    for name in ("params", "grads"):
        for key, value in uploaded[name].items():
            np.testing.assert_allclose(adopted[name][key], value, rtol=1e-6, atol=1e-7)
    for name in ("forward", "proba"):
        np.testing.assert_allclose(adopted[name], uploaded[name], rtol=1e-6, atol=1e-7)
    assert adopted["loss"] == pytest.approx(uploaded["loss"], rel=1e-6)
    assert adopted["evaluate"]["loss"] == pytest.approx(uploaded["evaluate"]["loss"], rel=1e-6)


def test_tensors_on_the_gpu_give_what_the_cpu_model_gives(gpu):
    """One epoch, as ``tests/mlp/test_parity.py`` compares the devices, with its tolerances."""
    backend, torch = gpu
    tensors, arrays = tensors_and_arrays(torch, backend)
    on_gpu, on_cpu = run(backend, tensors, epochs=1), run("cpu", arrays, epochs=1)
    assert on_gpu["history"][0]["loss"] == pytest.approx(on_cpu["history"][0]["loss"], rel=1e-4)
    val_gpu, val_cpu = on_gpu["history"][0]["val_loss"], on_cpu["history"][0]["val_loss"]
    assert val_gpu == pytest.approx(val_cpu, rel=1e-3)
    np.testing.assert_allclose(on_gpu["forward"], on_cpu["forward"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(on_gpu["proba"], on_cpu["proba"], rtol=1e-3, atol=1e-5)
    assert on_gpu["loss"] == pytest.approx(on_cpu["loss"], rel=1e-3)
    assert on_gpu["evaluate"]["loss"] == pytest.approx(on_cpu["evaluate"]["loss"], rel=1e-3)


def test_a_cpu_tensor_is_uploaded_to_a_cuda_model(gpu):
    backend, torch = gpu
    X, y, _ = data(100)
    model = MLP([FEATURES, 8, 4], device=backend)
    np.testing.assert_array_equal(model.predict(torch.from_numpy(X)), model.predict(X))
    from_tensors = model.evaluate(torch.from_numpy(X), torch.from_numpy(y))
    assert from_tensors["loss"] == pytest.approx(model.evaluate(X, y)["loss"], rel=1e-6)


def test_a_cuda_tensor_for_a_cpu_model_names_the_fix(gpu):
    backend, torch = gpu
    x = torch.rand(4, FEATURES, device=f"cuda:{backend.index}")
    with pytest.raises(TypeError) as info:
        MLP([FEATURES, 3]).predict(x)
    assert str(info.value) == (
        f"a torch.Tensor on cuda:{backend.index} cannot be used on cpu: use a model on "
        f"cuda:{backend.index} (MLP(..., device='cuda:{backend.index}')) or move it to cpu "
        "first (x.cpu())"
    )


def test_an_array_on_another_gpu_names_both(gpu):
    backend, _ = gpu
    other = backend.index + 1

    class OnAnotherGpu:  # one GPU is enough: where it lives is asked before it is read
        def __dlpack_device__(self):
            return (2, other)

        def __dlpack__(self, **kwargs):
            raise AssertionError("read before where it lives was checked")

    with pytest.raises(TypeError) as info:
        MLP([FEATURES, 3], device=backend).predict(OnAnotherGpu())
    message = str(info.value)
    assert f"on cuda:{other} cannot be used on cuda:{backend.index}" in message
    assert f"use a model on cuda:{other}" in message and "\n" not in message


def test_a_cuda_tensor_that_requires_grad_says_detach(gpu):
    backend, torch = gpu
    x = torch.rand(4, FEATURES, device=f"cuda:{backend.index}", requires_grad=True)
    with pytest.raises(TypeError, match=r"requires grad: pass x\.detach\(\)"):
        MLP([FEATURES, 3], device=backend).forward(x)
