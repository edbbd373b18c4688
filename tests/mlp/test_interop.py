"""Arrays of other libraries in, and results back out, on the CPU: PyTorch tensors (CPU).

Every entry point takes a tensor as it takes the same NumPy array, and gives exactly the same
answers: inputs of every dtype the model keeps or converts, strided ones, targets, sample
weights and validation data. An input of the model's dtype is used in place (the backend
adopts its memory, ``Backend.adopt``); ``forward``'s result goes back to PyTorch through
DLPack, sharing its memory. Tensors that cannot be used say why in one line. The same on a
GPU: ``tests/backends/cuda/test_interop.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlp import MLP
from tests.mlp.problems import blobs

torch = pytest.importorskip("torch")

FEATURES = 10


def features(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = blobs(rows, features=FEATURES, seed=seed)
    return X, y


#: Inputs as tensors, each made from the float64 features: (tensor, whether it is strided).
TENSORS = {
    "float32": lambda X: torch.tensor(X, dtype=torch.float32),
    "float64": lambda X: torch.tensor(X, dtype=torch.float64),
    "uint8": lambda X: torch.tensor(np.clip(X * 20 + 128, 0, 255).astype(np.uint8)),
    "sliced": lambda X: torch.tensor(np.repeat(X, 2, axis=1), dtype=torch.float32)[:, ::2],
    "transposed": lambda X: torch.tensor(X.T.copy(), dtype=torch.float32).T,
}


def as_numpy(t) -> np.ndarray:
    """The same values as a NumPy array of its own (C order, not sharing the tensor)."""
    return t.numpy().copy(order="C")


@pytest.mark.parametrize("kind", list(TENSORS))
def test_tensors_give_what_the_same_numpy_arrays_give(kind):
    X, y = features(300, seed=1)
    X_val, y_val = features(100, seed=2)
    rng = np.random.default_rng(3)
    w, w_val = rng.uniform(0.5, 2.0, 300), rng.uniform(0.5, 2.0, 100)
    tensors = {
        "X": TENSORS[kind](X),
        "y": torch.from_numpy(y),
        "w": torch.tensor(w, dtype=torch.float32),
        "X_val": TENSORS[kind](X_val),
        "y_val": torch.from_numpy(y_val),
        "w_val": torch.tensor(w_val, dtype=torch.float64),
    }
    if kind in ("sliced", "transposed"):
        assert not tensors["X"].is_contiguous()  # the case this parameter is here for
    arrays = {name: as_numpy(t) for name, t in tensors.items()}
    outcomes = []
    for data in (tensors, arrays):
        model = MLP([FEATURES, 16, 4], seed=0)
        history = model.fit(
            data["X"], data["y"], epochs=2, batch_size=64, sample_weight=data["w"],
            validation_data=(data["X_val"], data["y_val"], data["w_val"]),
        )  # fmt: skip
        loss, grads = model.loss_and_gradients(data["X"][:50], data["y"][:50], data["w"][:50])
        outcomes.append(
            {
                "history": [{k: v for k, v in r.items() if k != "seconds"} for r in history],
                "state": model.state_dict(),
                "forward": model.forward(data["X_val"]),
                "proba": model.predict_proba(data["X_val"]),
                "labels": model.predict(data["X_val"]),
                "evaluate": model.evaluate(data["X_val"], data["y_val"], data["w_val"]),
                "loss": loss,
                "grads": grads,
            }
        )
    from_tensors, from_arrays = outcomes
    assert from_tensors["history"] == from_arrays["history"]
    assert from_tensors["evaluate"] == from_arrays["evaluate"]
    assert from_tensors["loss"] == from_arrays["loss"]
    for name in ("state", "grads"):
        for key, value in from_arrays[name].items():
            np.testing.assert_array_equal(from_tensors[name][key], value, err_msg=key)
    for name in ("forward", "proba", "labels"):
        np.testing.assert_array_equal(from_tensors[name], from_arrays[name], err_msg=name)


def test_regression_targets_as_tensors():
    X, _ = features(120, seed=4)
    targets = np.stack([X[:, 0] - X[:, 1], X[:, 2]], axis=1)
    results = []
    for X_in, y_in in ((torch.tensor(X), torch.tensor(targets)), (X, targets)):
        model = MLP([FEATURES, 8, 2], loss="squared_error", seed=1)
        model.fit(X_in, y_in, epochs=2, batch_size=32)
        results.append((model.predict(X_in), model.evaluate(X_in, y_in)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


# ---------------------------------------------------------------------- no copy in
@pytest.mark.parametrize(("model_dtype", "tensor_dtype"), [
    ("float32", torch.float32), ("float64", torch.float64), ("float32", torch.uint8),
])  # fmt: skip
def test_inputs_of_a_kept_dtype_are_used_in_place(model_dtype, tensor_dtype):
    t = (torch.rand(40, FEATURES) * 255).to(tensor_dtype)
    model = MLP([FEATURES, 4, 3], dtype=model_dtype)
    adopted = model.backend.adopt(t)
    assert isinstance(adopted, np.ndarray) and np.shares_memory(adopted, t.numpy())
    X, scale = model.device_inputs(t)  # what fit, predict and evaluate compute with
    assert X.ctypes.data == t.data_ptr() and X.dtype == adopted.dtype
    assert scale == (1 / 255 if tensor_dtype == torch.uint8 else 1.0)
    t[0, 0] = 7  # the same memory, not a copy of it
    assert X[0, 0] == 7


def test_a_strided_tensor_is_used_in_place_with_its_strides():
    t = torch.rand(FEATURES, 30).T  # (30, FEATURES), column-major
    X, _ = MLP([FEATURES, 4, 3]).device_inputs(t)
    assert X.ctypes.data == t.data_ptr()
    assert X.strides == tuple(s * t.element_size() for s in t.stride())


def test_another_dtype_is_converted_a_copy():
    t = torch.rand(20, FEATURES, dtype=torch.float64)
    X, _ = MLP([FEATURES, 4, 3]).device_inputs(t)
    assert X.dtype == np.float32 and not np.shares_memory(X, t.numpy())
    np.testing.assert_array_equal(X, t.numpy().astype(np.float32))


def test_a_bfloat16_tensor_which_numpy_lacks_says_pass_float32():
    with pytest.raises(TypeError, match=r"torch.bfloat16 has no NumPy form .*x\.float\(\)"):
        MLP([FEATURES, 4, 3]).predict(torch.rand(5, FEATURES, dtype=torch.bfloat16))


def test_labels_and_weights_are_read_on_the_host_in_place():
    backend = MLP([FEATURES, 3]).backend
    for t in (torch.arange(10), torch.rand(10, dtype=torch.float64)):
        assert np.shares_memory(backend.adopt_on_host(t), t.numpy())


def test_the_model_still_checks_adopted_inputs():
    model = MLP([FEATURES, 4, 3])
    with pytest.raises(ValueError, match=r"expected inputs of shape \(n, 10\)"):
        model.predict(torch.rand(5, FEATURES + 1))
    bad = torch.rand(5, FEATURES)
    bad[2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.predict(bad)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        model.fit(torch.rand(5, FEATURES), torch.tensor([0, 1, 2, 3, 0]), epochs=1)


# ---------------------------------------------------------------------- no copy out
def test_forward_goes_back_to_torch_sharing_its_memory():
    model = MLP([FEATURES, 8, 3])
    x = torch.rand(25, FEATURES)
    out = model.forward(x)
    assert isinstance(out, np.ndarray) and out.shape == (25, 3)
    back = torch.from_dlpack(out)
    assert back.data_ptr() == out.ctypes.data and back.shape == (25, 3)
    back[0, 0] = 42.0
    assert out[0, 0] == 42.0
    again = model.forward(x)  # a fresh array per call: the caller's stays as it is
    assert not np.shares_memory(again, out) and out[0, 0] == 42.0
    np.testing.assert_array_equal(again[1:], out[1:])
    assert isinstance(model.predict_proba(x), np.ndarray)


# ---------------------------------------------------------------------- refused, in one line
class ElsewhereTensor:
    """Claims to live on a device (``__dlpack_device__``); its memory must never be read."""

    __module__ = "torch"  # the hint names PyTorch's own move

    def __init__(self, device_type: int, index: int = 0) -> None:
        self.place = (device_type, index)

    def __dlpack_device__(self):
        return self.place

    def __dlpack__(self, **kwargs):
        raise AssertionError("read before where it lives was checked")

    def __array__(self, *args, **kwargs):
        raise AssertionError("read before where it lives was checked")


def one_line(info) -> str:
    text = str(info.value)
    assert "\n" not in text
    return text


def calls(model, value):
    """Every place a caller's array enters the model (of four classes), with ``value`` in
    it; the other arguments are good."""
    X, y = features(20, seed=5)
    w = np.ones(20)
    return {
        "predict X": lambda: model.predict(value),
        "forward X": lambda: model.forward(value),
        "fit y": lambda: model.fit(X, value, epochs=1),
        "fit sample_weight": lambda: model.fit(X, y, epochs=1, sample_weight=value),
        "validation X": lambda: model.fit(X, y, epochs=1, validation_data=(value, y)),
        "evaluate y": lambda: model.evaluate(X, value, w),
        "loss_and_gradients sample_weight": lambda: model.loss_and_gradients(X, y, value),
    }


@pytest.mark.parametrize("place", list(calls(None, None)))
def test_a_cuda_tensor_for_a_cpu_model_names_the_fix(place):
    model = MLP([FEATURES, 4, 4])
    with pytest.raises(TypeError) as info:
        calls(model, ElsewhereTensor(2, 1))[place]()
    assert one_line(info) == (
        "a torch.ElsewhereTensor on cuda:1 cannot be used on cpu: use a model on cuda:1 "
        "(MLP(..., device='cuda:1')) or move it to cpu first (x.cpu())"
    )
    assert model.epochs_trained == 0  # refused before any work


def test_a_tensor_on_another_kind_of_device_says_where_models_run():
    with pytest.raises(TypeError) as info:
        MLP([FEATURES, 3]).predict(ElsewhereTensor(8))  # kDLMetal
    assert "on metal:0 cannot be used on cpu (models compute on the CPU or CUDA GPUs)" in (
        one_line(info)
    )


def test_an_object_with_only_the_cuda_array_interface_is_refused():
    gpu_only = type("DeviceArray", (), {"__cuda_array_interface__": {"shape": (2, FEATURES)}})()
    with pytest.raises(TypeError) as info:
        MLP([FEATURES, 3]).predict(gpu_only)
    assert "on cuda cannot be used on cpu: use a model on cuda (MLP(..., device='cuda'))" in (
        one_line(info)
    )


@pytest.mark.parametrize("place", list(calls(None, None)))
def test_a_tensor_that_requires_grad_says_detach(place):
    model = MLP([FEATURES, 4, 4])
    value = torch.rand(20, FEATURES) if place.endswith("X") else torch.ones(20)
    value.requires_grad_(True)
    with pytest.raises(TypeError) as info:
        calls(model, value)[place]()
    assert one_line(info).startswith("a torch.Tensor that requires grad: pass x.detach()")
    assert model.epochs_trained == 0


# ---------------------------------------------------------------------- host objects, as before
def test_numpy_arrays_pass_through_as_they_are():
    x = np.random.default_rng(0).standard_normal((5, FEATURES))
    assert MLP([FEATURES, 3]).backend.adopt(x) is x


def test_objects_with_only_array_or_a_buffer_still_work():
    class OnlyArray:
        def __init__(self, values: np.ndarray) -> None:
            self.values = values

        def __array__(self, dtype=None, copy=None):
            return self.values

    X, y = features(40, seed=6)
    X = X.astype(np.float32)
    model = MLP([FEATURES, 8, 4])
    expected = model.predict_proba(X)
    buffer = memoryview(X)
    assert not hasattr(buffer, "__dlpack__")
    assert np.shares_memory(model.backend.adopt(buffer), X)
    for host_object in (OnlyArray(X), buffer, X.tolist()):
        np.testing.assert_array_equal(model.predict_proba(host_object), expected)
    assert model.evaluate(OnlyArray(X), OnlyArray(y)) == model.evaluate(X, y)


def test_a_state_dict_of_torch_tensors_loads_as_inputs_do():
    """Tensors load; one that requires grad, or of a dtype NumPy lacks, is refused with the
    words an input gets (they raised torch's own RuntimeError and TypeError)."""
    model = MLP([3, 2], seed=1)
    state = {key: torch.tensor(value) for key, value in MLP([3, 2], seed=2).state_dict().items()}
    model.load_state_dict(state)
    np.testing.assert_array_equal(model.state_dict()["0.weight"], state["0.weight"].numpy())
    with pytest.raises(TypeError, match=r"requires grad: pass x\.detach\(\)"):
        model.load_state_dict({k: v.clone().requires_grad_() for k, v in state.items()})
    with pytest.raises(TypeError, match=r"pass it as float32"):
        model.load_state_dict({k: v.to(torch.bfloat16) for k, v in state.items()})
