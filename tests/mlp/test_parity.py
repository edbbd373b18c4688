"""CPU/GPU parity: the same seed gives the same model, the same step and the same training.

Every test here needs CUDA (they skip without it; ``MLP_REQUIRE_GPU=1`` makes that a
failure). Each backend op of the CUDA backend is checked against the float64 reference in
``test_backend_ops`` already (the ``backend`` fixture runs it on CuPy); these tests check
that whole models agree across devices."""

from __future__ import annotations

import numpy as np
import pytest

from mlp import MLP, SGD, Adam, AdamW
from mlp.data.synthetic import make_images

pytestmark = pytest.mark.cuda


ACTS = ["relu", "sigmoid", "tanh"]


@pytest.fixture
def gpu(cuda_backend):
    """The CUDA backend at its default precision: true float32 matmuls."""
    assert cuda_backend.precision == "float32"
    return cuda_backend


def blobs(n, classes=4, features=20, seed=0):
    centres = np.random.default_rng(100).normal(0.0, 2.0, size=(classes, features))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    return centres[y] + rng.normal(0.0, 1.0, size=(n, features)), y


def pair(gpu, sizes, **kwargs):
    """The same model (same seed) on the CPU and on the GPU."""
    return MLP(sizes, device="cpu", **kwargs), MLP(sizes, device=gpu, **kwargs)


def assert_states_close(a, b, rtol, atol):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        np.testing.assert_allclose(sb[key], sa[key], rtol=rtol, atol=atol, err_msg=key)


@pytest.mark.parametrize("activation", ACTS)
def test_same_seed_same_model_and_forward(gpu, activation):
    cpu, cuda = pair(gpu, [20, 64, 32, 5], activation=activation, seed=3)
    assert cuda.device.startswith("cuda")
    for key, value in cpu.state_dict().items():  # initial weights are drawn on the host
        np.testing.assert_array_equal(cuda.state_dict()[key], value, err_msg=key)
    X = np.random.default_rng(1).standard_normal((300, 20)).astype(np.float32)
    out_cpu = cpu.backend.to_numpy(cpu.forward(X))
    out_gpu = cuda.backend.to_numpy(cuda.forward(X))
    assert cuda.backend.is_array(cuda.forward(X))
    np.testing.assert_allclose(out_gpu, out_cpu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cuda.predict_proba(X), cpu.predict_proba(X), rtol=1e-5, atol=1e-6)
    agree = np.mean(cuda.predict(X) == cpu.predict(X))
    assert agree >= 0.99  # only near-ties may differ


def test_uint8_inputs_same_forward(gpu):
    images, labels = make_images(200, seed=4)
    X = images.reshape(len(images), -1)
    cpu, cuda = pair(gpu, [784, 32, 10], seed=0)
    np.testing.assert_allclose(cuda.predict_proba(X), cpu.predict_proba(X), rtol=1e-5, atol=1e-6)
    r_cpu, r_gpu = cpu.evaluate(X, labels), cuda.evaluate(X, labels)
    assert r_gpu["loss"] == pytest.approx(r_cpu["loss"], rel=1e-5)
    assert r_gpu["accuracy"] == pytest.approx(r_cpu["accuracy"], abs=2 / len(labels))


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradients_agree(gpu, activation, dtype):
    X, y = blobs(128)
    cpu, cuda = pair(gpu, [20, 32, 16, 4], activation=activation, dtype=dtype, seed=2)
    loss_cpu, g_cpu = cpu.loss_and_gradients(X, y)
    loss_gpu, g_gpu = cuda.loss_and_gradients(X, y)
    rtol, atol = (1e-4, 1e-6) if dtype == "float32" else (1e-10, 1e-12)
    assert loss_gpu == pytest.approx(loss_cpu, rel=rtol)
    for key in g_cpu:
        np.testing.assert_allclose(g_gpu[key], g_cpu[key], rtol=rtol, atol=atol, err_msg=key)


# Adam's first step is lr * g / (|g| + eps), about lr * sign(g): where float32 rounding
# flips the sign of a gradient within ~1e-8 of zero the two devices would step apart by
# 2 * lr. In float64 that cannot happen, so Adam's single-step parity runs in float64.
@pytest.mark.parametrize(
    ("make_optimizer", "dtype"),
    [
        (lambda: Adam(lr=1e-3), "float64"),
        (lambda: AdamW(lr=1e-3, weight_decay=0.1), "float64"),
        (lambda: SGD(lr=0.1, momentum=0.9), "float32"),
        (lambda: SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3), "float32"),
        (lambda: SGD(lr=0.1, momentum=0.9), "float64"),
    ],
    ids=["adam-f64", "adamw-f64", "momentum-f32", "nesterov-wd-f32", "momentum-f64"],
)
def test_one_optimizer_step_agrees(gpu, make_optimizer, dtype):
    X, y = blobs(256)
    cpu, cuda = pair(gpu, [20, 32, 16, 4], dtype=dtype, seed=1)
    before = cpu.state_dict()
    for model in (cpu, cuda):  # one batch holding every row: exactly one step
        model.fit(X, y, epochs=1, batch_size=len(X), optimizer=make_optimizer(), shuffle=False)
        assert model.optimizer.steps == 1
    moved = cpu.state_dict()
    assert any(not np.array_equal(moved[k], before[k]) for k in before)
    assert_states_close(cpu, cuda, rtol=1e-4, atol=1e-6)
    for name in cpu.optimizer.state:
        np.testing.assert_allclose(
            cuda.optimizer.state_dict()[name],
            cpu.optimizer.state_dict()[name],
            rtol=1e-4,
            atol=1e-6,
            err_msg=name,
        )


@pytest.mark.parametrize("inputs", ["float", "uint8"])
def test_first_epoch_loss_agrees(gpu, inputs):
    if inputs == "float":
        X, y = blobs(512)
        X = X.astype(np.float32)
        sizes = [20, 32, 4]
    else:
        images, y = make_images(512, seed=5)
        X = images.reshape(len(images), -1)
        sizes = [784, 32, 10]
    histories = []
    for device in ("cpu", gpu):
        model = MLP(sizes, device=device, seed=0)
        histories.append(
            model.fit(
                X,
                y,
                epochs=1,
                batch_size=32,
                optimizer=Adam(lr=1e-3),
                seed=0,
                validation_data=(X, y),
            )
        )
    (cpu,), (cuda,) = histories
    assert cuda["loss"] == pytest.approx(cpu["loss"], rel=1e-4)
    assert cuda["accuracy"] == pytest.approx(cpu["accuracy"], abs=3 / len(y))
    assert cuda["val_loss"] == pytest.approx(cpu["val_loss"], rel=1e-3)


def test_to_cuda_and_back(gpu):
    X, y = blobs(200)
    model = MLP([20, 16, 4], seed=0)
    opt = Adam(lr=1e-2)
    model.fit(X, y, epochs=1, batch_size=50, optimizer=opt)
    params, proba, state = model.state_dict(), model.predict_proba(X), opt.state_dict()
    model.to(gpu)
    assert model.device.startswith("cuda") and gpu.is_array(model.params)
    assert all(gpu.is_array(v) for v in opt.state.values())
    np.testing.assert_allclose(model.predict_proba(X), proba, rtol=1e-5, atol=1e-6)
    model.fit(X, y, epochs=2, batch_size=50, optimizer=opt, initial_epoch=1)  # trains on the GPU
    assert opt.steps == state["steps"] + 4
    model.to("cpu")
    assert isinstance(model.params, np.ndarray)
    assert any(not np.array_equal(model.state_dict()[k], params[k]) for k in params)


@pytest.mark.cuda
def test_bf16_first_epoch_cpu_and_gpu_agree(make_backend):
    images, labels = make_images(512, seed=5)
    X = images.reshape(len(images), -1)
    histories = []
    for kind in ("cpu", "cuda"):
        model = MLP([784, 32, 10], device=make_backend(kind, "bf16"), seed=0)
        histories.append(
            model.fit(X, labels, epochs=1, batch_size=32, optimizer=Adam(lr=1e-3), seed=0)
        )
    (cpu,), (cuda,) = histories
    assert cuda["loss"] == pytest.approx(cpu["loss"], rel=2e-3)
