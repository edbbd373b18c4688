"""The model: gradients against finite differences, state, inference, devices, and every
mistake in its settings or inputs refused before anything changes."""

from __future__ import annotations

import numpy as np
import pytest

from mlp import MLP, Adam
from mlp.errors import DataError, InvalidArgument
from tests.mlp.problems import blobs, numeric_gradients, small_problem

ACTS = ["relu", "sigmoid", "tanh"]


def _bad_states(good):
    missing = dict(good)
    del missing["1.bias"]
    extra = {**good, "2.weight": np.zeros((3, 3))}
    transposed = {**good, "0.weight": good["0.weight"].T.copy()}
    short_bias = {**good, "1.bias": np.zeros(2)}
    nan = {**good, "1.weight": np.full_like(good["1.weight"], np.nan)}
    renamed = {("layer" + k if k == "0.bias" else k): v for k, v in good.items()}
    return {
        "missing": missing,
        "extra": extra,
        "transposed": transposed,
        "short bias": short_bias,
        "nan": nan,
        "renamed": renamed,
    }


# ---------------------------------------------------------------------- a library user's mistakes
# ---------------------------------------------------------------------- gradients
@pytest.mark.parametrize("activation", ACTS)
def test_gradients_match_finite_differences(device, activation):
    rng = np.random.default_rng(3)
    model = MLP([6, 5, 4, 3], activation=activation, device=device, dtype="float64", seed=4)
    state = model.state_dict()
    for key in state:
        if key.endswith("bias"):  # non-zero biases, so their path is exercised too
            state[key] = rng.normal(0.0, 0.3, size=state[key].shape)
    model.load_state_dict(state)
    X, y = rng.standard_normal((7, 6)), rng.integers(0, 3, size=7)

    loss, grads = model.loss_and_gradients(X, y)
    assert isinstance(loss, float)
    assert loss == pytest.approx(model.evaluate(X, y)["loss"], rel=1e-12)
    assert set(grads) == set(state)
    numeric = numeric_gradients(model, state, X, y)
    for key in state:
        assert isinstance(grads[key], np.ndarray) and grads[key].shape == state[key].shape
        assert np.abs(grads[key]).max() > 1e-4, f"{key}: gradient is all zeros"
        np.testing.assert_allclose(grads[key], numeric[key], rtol=1e-5, atol=1e-8, err_msg=key)
    # computing gradients changed nothing
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[key])


@pytest.mark.parametrize("activation", ACTS)
def test_float32_gradients_match_float64(device, activation):
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((16, 8)), rng.integers(0, 4, size=16)
    m64 = MLP([8, 12, 4], activation=activation, device=device, dtype="float64", seed=1)
    m32 = MLP([8, 12, 4], activation=activation, device=device, dtype="float32", seed=1)
    loss64, g64 = m64.loss_and_gradients(X, y)
    loss32, g32 = m32.loss_and_gradients(X, y)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for key in g64:
        assert g32[key].dtype == np.float32
        np.testing.assert_allclose(g32[key], g64[key], rtol=1e-3, atol=1e-5, err_msg=key)


# ---------------------------------------------------------------------- state
def test_state_dict_keys_and_shapes(device):
    model = MLP([6, 5, 4, 3], device=device)
    state = model.state_dict()
    assert list(state) == ["0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias"]
    shapes = {k: v.shape for k, v in state.items()}
    assert shapes == {
        "0.weight": (6, 5),
        "0.bias": (5,),
        "1.weight": (5, 4),
        "1.bias": (4,),
        "2.weight": (4, 3),
        "2.bias": (3,),
    }
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in state.values())
    assert model.num_parameters == sum(v.size for v in state.values())
    # host copies: changing them leaves the model alone
    state["0.weight"][...] = 123.0
    assert not np.any(model.state_dict()["0.weight"] == 123.0)


def test_load_state_dict_round_trip(device):
    source = MLP([6, 5, 3], device="cpu", seed=1)
    target = MLP([6, 5, 3], device=device, seed=2)
    X = np.random.default_rng(0).standard_normal((10, 6))
    assert not np.allclose(source.predict_proba(X), target.predict_proba(X))
    target.load_state_dict(source.state_dict())
    for key, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[key], value)
    np.testing.assert_allclose(target.predict_proba(X), source.predict_proba(X), rtol=1e-5)


@pytest.mark.parametrize("case", ["missing", "extra", "transposed", "short bias", "nan", "renamed"])
def test_load_state_dict_rejects_mismatch_and_leaves_model_unchanged(device, case):
    model = MLP([6, 5, 3], device=device, seed=1)
    before = model.state_dict()
    good = {k: v + 1.0 for k, v in before.items()}  # would change every value if loaded
    with pytest.raises(ValueError):
        model.load_state_dict(_bad_states(good)[case])
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_load_state_dict_message_names_the_problem():
    model = MLP([6, 5, 3])
    good = model.state_dict()
    with pytest.raises(ValueError, match=r"1\.bias"):
        model.load_state_dict(_bad_states(good)["missing"])
    with pytest.raises(ValueError, match=r"0\.weight.*\(5, 6\).*\(6, 5\)"):
        model.load_state_dict(_bad_states(good)["transposed"])


def test_a_state_value_that_is_no_array_names_its_key():
    """A library error naming the key, not NumPy's bare one about an inhomogeneous shape."""
    model = MLP([6, 5, 3])
    ragged = {**model.state_dict(), "1.bias": [[0.0], [0.0, 1.0], [2.0]]}
    with pytest.raises(InvalidArgument, match=r"1\.bias is not an array of numbers"):
        model.load_state_dict(ragged)


# ---------------------------------------------------------------------- inference
def test_predict_and_predict_proba(device, problem):
    X = problem[0]
    model = MLP([10, 16, 4], device=device, seed=0)
    labels = model.predict(X)
    assert isinstance(labels, np.ndarray) and labels.dtype.kind in "iu"
    assert labels.shape == (len(X),)
    assert labels.min() >= 0 and labels.max() < 4
    proba = model.predict_proba(X)
    assert isinstance(proba, np.ndarray) and proba.shape == (len(X), 4)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))
    logits = model.forward(X)
    assert model.backend.is_array(logits)
    np.testing.assert_array_equal(model.backend.to_numpy(model.backend.argmax(logits)), labels)


def test_predict_with_a_single_output():
    model = MLP([3, 4, 1], activation="tanh", output_activation="sigmoid", dtype="float64")
    X = np.random.default_rng(0).standard_normal((50, 3)) * 3
    p = model.predict_proba(X)[:, 0]
    np.testing.assert_array_equal(model.predict(X), (p > 0.5).astype(int))


def test_a_binary_models_labels_are_the_argmax_of_its_probabilities(device):
    """One sigmoid output: a logit too small to move float32's sigmoid off 0.5 was class 1
    by ``predict`` (logit > 0) and class 0 by the argmax of ``predict_proba``."""
    model = MLP([1, 1], device=device)
    model.load_state_dict({"0.weight": np.ones((1, 1)), "0.bias": np.zeros(1)})
    X = np.array([[1e-9], [3e-8], [0.0], [-1e-9], [1e-3], [-1e-3]], np.float32)
    proba = model.predict_proba(X)
    assert proba[0, 1] == 0.5  # the case in point
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))
    assert model.predict(X)[[0, 2, 3, 4, 5]].tolist() == [0, 0, 0, 1, 0]


def test_evaluate_matches_loss_and_gradients(device, problem):
    X, y, _, _ = problem
    model = MLP([10, 16, 4], device=device, seed=2)
    result = model.evaluate(X, y)
    assert set(result) == {"loss", "accuracy"}
    assert all(type(v) is float for v in result.values())
    loss, _ = model.loss_and_gradients(X, y)
    assert result["loss"] == pytest.approx(loss, rel=1e-6)
    assert result["accuracy"] == pytest.approx(np.mean(model.predict(X) == y))
    # independently: mean cross-entropy of the predicted probabilities
    proba = model.predict_proba(X).astype(np.float64)
    assert result["loss"] == pytest.approx(-np.mean(np.log(proba[np.arange(len(y)), y])), rel=1e-4)


def test_evaluate_across_chunks(monkeypatch):
    """Evaluation in chunks sums to the same loss and accuracy as one pass."""
    import mlp.model

    X, y = blobs(50, seed=3)
    model = MLP([10, 6, 4], dtype="float64", seed=0)
    whole = model.evaluate(X, y)
    proba = model.predict_proba(X)
    monkeypatch.setattr(mlp.model, "EVAL_BATCH", 7)
    chunked = model.evaluate(X, y)
    assert chunked["loss"] == pytest.approx(whole["loss"], rel=1e-12)
    assert chunked["accuracy"] == whole["accuracy"]
    np.testing.assert_allclose(model.predict_proba(X), proba, rtol=1e-12)


def test_uint8_inputs_are_scaled_like_floats(device):
    rng = np.random.default_rng(4)
    X8 = rng.integers(0, 256, size=(30, 6), dtype=np.uint8)
    X8[0] = 255
    y = rng.integers(0, 3, size=30)
    Xf = X8 / 255.0
    model = MLP([6, 8, 3], device=device, dtype="float64", seed=0)
    np.testing.assert_allclose(model.predict_proba(X8), model.predict_proba(Xf), rtol=1e-12)
    r8, rf = model.evaluate(X8, y), model.evaluate(Xf, y)
    assert r8["loss"] == pytest.approx(rf["loss"], rel=1e-12)
    assert r8["accuracy"] == rf["accuracy"]
    l8, g8 = model.loss_and_gradients(X8, y)
    lf, gf = model.loss_and_gradients(Xf, y)
    assert l8 == pytest.approx(lf, rel=1e-12)
    for key in gf:
        np.testing.assert_allclose(g8[key], gf[key], rtol=1e-10, atol=1e-14)

    a = MLP([6, 8, 3], device=device, dtype="float64", seed=0)
    b = MLP([6, 8, 3], device=device, dtype="float64", seed=0)
    ha = a.fit(X8, y, epochs=2, batch_size=8)
    hb = b.fit(Xf, y, epochs=2, batch_size=8)
    for ra, rb in zip(ha, hb, strict=True):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-9)
    # a float32 model agrees to float32 precision
    m32 = MLP([6, 8, 3], device=device, seed=0)
    np.testing.assert_allclose(m32.predict_proba(X8), m32.predict_proba(Xf), rtol=1e-5)


def test_to_device_round_trip_keeps_predictions_and_optimizer_state(device, problem):
    X, y, X_test, _ = problem
    model = MLP([10, 16, 4], seed=0)
    opt = Adam(lr=1e-2)
    model.fit(X, y, epochs=1, batch_size=32, optimizer=opt, seed=3)
    params, opt_state = model.state_dict(), opt.state_dict()
    labels, proba = model.predict(X_test), model.predict_proba(X_test)

    assert model.to(device) is model
    assert model.device == ("cpu" if device == "cpu" else "cuda:0")
    assert opt.backend is model.backend
    np.testing.assert_array_equal(model.predict(X_test), labels)
    np.testing.assert_allclose(model.predict_proba(X_test), proba, rtol=1e-5, atol=1e-7)
    moved = opt.state_dict()
    assert moved["steps"] == opt_state["steps"] == 13
    for name in ("m", "v"):
        assert model.backend.is_array(opt.state[name])
        np.testing.assert_array_equal(moved[name], opt_state[name])

    model.to("cpu")
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, params[key])
    for name in ("m", "v"):
        np.testing.assert_array_equal(opt.state_dict()[name], opt_state[name])

    # and training carries on exactly as if the model had never moved
    model.fit(X, y, epochs=2, batch_size=32, optimizer=opt, seed=3, initial_epoch=1)
    never_moved = MLP([10, 16, 4], seed=0)
    never_moved.fit(X, y, epochs=2, batch_size=32, optimizer=Adam(lr=1e-2), seed=3)
    for key, value in never_moved.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[key], value, err_msg=key)


def test_inputs_from_another_device_say_how_to_move_them():
    attributes = {"__module__": "cupy._core.core", "__dlpack_device__": lambda self: (2, 0)}
    fake = type("ndarray", (), attributes)()  # a CuPy array on the first GPU, as DLPack says
    model = MLP([6, 4, 3])
    with pytest.raises(TypeError) as info:
        model.predict(fake)
    assert str(info.value) == (
        "a cupy.ndarray on cuda:0 cannot be used on cpu: use a model on cuda:0 "
        "(MLP(..., device='cuda:0')) or move it to cpu first (x.get())"
    )


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "method", ["predict", "predict_proba", "forward", "evaluate", "loss_and_gradients", "fit"]
)
def test_wrong_feature_count(method):
    model = MLP([6, 5, 3])
    X, y = np.zeros((4, 5)), np.zeros(4, dtype=int)
    args = (X, y) if method in ("evaluate", "loss_and_gradients", "fit") else (X,)
    with pytest.raises(ValueError) as info:
        getattr(model, method)(*args)
    message = str(info.value)
    assert "(4, 5)" in message and "(n, 6)" in message


@pytest.mark.parametrize(
    "X", [np.zeros(6), np.zeros((2, 3, 6)), np.zeros((0, 6))], ids=["1-D", "3-D", "empty"]
)
def test_bad_input_shapes(X):
    with pytest.raises(ValueError):
        MLP([6, 5, 3]).predict(X)


@pytest.mark.parametrize(
    "labels",
    [
        [0, 1, 3, 2],
        [0, -1, 1, 2],
        [0, 1, 2],
        [[0, 1], [1, 0], [2, 0], [0, 2]],  # a column of labels, (n, 1), is taken
        [0.0, 1.5, 2.0, 1.0],
        ["a", "b", "c", "d"],
    ],
    ids=["too-large", "negative", "count", "2-D", "fraction", "strings"],
)
@pytest.mark.parametrize("method", ["evaluate", "loss_and_gradients", "fit"])
def test_bad_labels(method, labels):
    model = MLP([6, 5, 3])
    with pytest.raises(ValueError):
        getattr(model, method)(np.zeros((4, 6)), np.asarray(labels))


def test_label_range_message():
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        MLP([6, 5, 3]).fit(np.zeros((4, 6)), np.array([0, 1, 3, 2]))


def test_float_integer_labels_are_accepted():
    model = MLP([6, 5, 3])
    X = np.random.default_rng(0).standard_normal((4, 6))
    assert model.evaluate(X, np.array([0.0, 1.0, 2.0, 1.0])) == model.evaluate(X, [0, 1, 2, 1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("method", ["predict", "evaluate", "fit"])
def test_non_finite_inputs(method, bad):
    model = MLP([6, 5, 3])
    X = np.ones((4, 6))
    X[2, 3] = bad
    args = (X, np.zeros(4, dtype=int)) if method != "predict" else (X,)
    with pytest.raises(ValueError, match="NaN or infinity"):
        getattr(model, method)(*args)


def test_non_numeric_inputs():
    with pytest.raises(ValueError):
        MLP([2, 3]).predict(np.array([["a", "b"]]))


@pytest.mark.parametrize(
    "sizes", [[6], [], [6, 0, 3], [6, -2], [6, 2.5], ["six", 3], None, [6, 5, 0]]
)
def test_bad_sizes(sizes):
    with pytest.raises(ValueError):
        MLP(sizes)


def test_sizes_no_memory_could_hold_are_refused_up_front():
    """Not NumPy's "Maximum allowed dimension exceeded" from deep inside initialisation."""
    with pytest.raises(ValueError, match=r"make 79,500,000,000,000,000,000,010 parameters: far"):
        MLP([784, 10**20, 10])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"activation": "softplus"},
        {"dtype": "float16"},
        {"dtype": "int32"},
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"init": "orthogonal"},
        {"device": "tpu"},
        {"output_activation": "exp"},
    ],
)
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError):
        MLP([6, 5, 3], **kwargs)


def test_output_activation_models_cannot_be_trained():
    model = MLP([6, 5, 3], output_activation="sigmoid")
    with pytest.raises(ValueError, match="trains raw outputs"):
        model.fit(np.zeros((4, 6)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="trains raw outputs"):
        model.evaluate(np.zeros((4, 6)), np.zeros(4, dtype=int))


def test_weights_are_checked_as_stored():
    model = MLP([6, 5, 3])
    state = model.state_dict()
    with pytest.raises(ValueError, match=r"0\.weight holds values up to 1e\+39, beyond float32"):
        model.load_state_dict({**state, "0.weight": np.full((6, 5), 1e39)})
    with pytest.raises(ValueError, match=r"0\.bias holds NaN or infinity"):
        model.load_state_dict({**state, "0.bias": np.full(5, np.nan)})
    with pytest.raises(ValueError, match="must hold real numbers"):
        model.load_state_dict({**state, "0.bias": np.zeros(5, complex)})
    with pytest.raises(TypeError, match="expected a dict of arrays"):
        model.load_state_dict(None)


def test_one_output_is_a_binary_classifier():
    """One output: a sigmoid over it, labels 0 and 1, probabilities in two columns."""
    X, y = small_problem()
    binary = (y > 0).astype(int)
    model = MLP([6, 1])
    history = model.fit(X, binary, epochs=30, batch_size=5, optimizer="adam")
    assert history[-1]["loss"] < history[0]["loss"] and "accuracy" in history[-1]
    proba = model.predict_proba(X)
    assert proba.shape == (20, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(model.predict(X), (proba[:, 1] > 0.5).astype(int))
    assert model.evaluate(X, binary)["accuracy"] == np.mean(model.predict(X) == binary)
    with pytest.raises(
        ValueError, match=r"labels must be in \[0, 1\] for a 2-class model"
    ):  # 1 output
        model.fit(X, y, epochs=1)
    assert MLP([6, 1], output_activation="sigmoid").predict_proba(X).shape == (20, 1)


@pytest.mark.parametrize("outputs", [1, 3])
def test_a_regression_with_an_output_activation_predicts_its_values(outputs):
    """A squared_error model built with ``output_activation`` predicts the activation's
    values, as its ONNX graph and mlp-predict do (it gave class labels), and has no class
    probabilities."""
    X, _ = small_problem()
    model = MLP([6, 5, outputs], loss="squared_error", output_activation="sigmoid")
    values = model.forward(X)
    np.testing.assert_array_equal(model.predict(X), values)
    with pytest.raises(InvalidArgument, match="no class probabilities"):
        model.predict_proba(X)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sizes": {6, 3}}, "layer sizes must be a list of integers"),
        ({"sizes": [True, 3]}, "layer sizes must be a list of integers"),
        ({"seed": 1.7}, "seed must be a non-negative integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"dropout": "0.1"}, "dropout probability must be a finite number"),
        ({"dtype": "float16"}, "unsupported dtype"),
        ({"dtype": None}, "unsupported dtype"),
    ],
)
def test_model_settings_that_are_mistakes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(**{"sizes": [6, 3], **kwargs})


def test_dtypes_may_be_given_as_numpy_types():
    assert MLP([6, 3], dtype=np.float64).dtype == np.float64


def test_ragged_inputs_say_so():
    with pytest.raises(ValueError, match="inputs are not a numeric table"):
        MLP([2, 3]).predict([[1.0, 2.0], [1.0]])


@pytest.mark.parametrize("loss", ["cross_entropy", "squared_error"])
@pytest.mark.parametrize("method", ["fit", "evaluate", "loss_and_gradients"])
def test_ragged_targets_say_so(method, loss):
    """As ragged inputs and sample weights do: a ``DataError``, not NumPy's own error."""
    with pytest.raises(DataError, match="targets are not numbers, one per row"):
        getattr(MLP([2, 3], loss=loss), method)(np.zeros((2, 2)), [[0, 1], [1]])


def test_moving_keeps_the_matmul_precision():
    from backends import get_backend

    model = MLP([6, 3], device=get_backend("cpu", precision="bf16"))
    assert model.to("cpu").backend.precision == "bf16"
    float32 = get_backend("cpu")
    assert model.to(float32).backend.precision == "float32"
    with pytest.raises(ValueError, match="computes matmuls in float32, not bf16"):
        get_backend(float32, precision="bf16")
    with pytest.raises(ValueError, match="unknown precision"):
        get_backend(float32, precision="junk")
    with pytest.raises(ValueError, match="unknown precision"):
        get_backend("cpu", precision="")


def test_nan_in_library_inputs():
    X = np.ones((4, 3))
    X[1, 1] = np.nan
    with pytest.raises(ValueError, match="inputs hold NaN or infinity"):
        MLP([3, 2]).fit(X, np.zeros(4, int), epochs=1)


@pytest.mark.parametrize("dtype, fits", [("float32", False), ("float64", True)])
def test_library_inputs_beyond_the_model_dtype_say_so(dtype, fits):
    """1e300 is finite as the caller's float64 but infinite as a float32 model's input: the
    message says which, where it used to call the value NaN or infinity."""
    X = np.ones((4, 3))
    X[2, 0] = -1e300
    model = MLP([3, 2], dtype=dtype)
    if fits:
        assert model.predict(X).shape == (4,)
        return
    with pytest.raises(ValueError) as info:
        model.predict(X)
    assert str(info.value) == (
        "inputs hold values up to 1e+300, beyond float32's range, which the model computes in"
    )


def test_wrong_feature_count_at_predict_names_both_shapes():
    with pytest.raises(ValueError) as info:
        MLP([784, 10]).predict(np.zeros((5, 100), np.float32))
    assert "(n, 784)" in str(info.value) and "(5, 100)" in str(info.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda X, y: MLP([4, "8", 3]),
        lambda X, y: MLP({4, 3}),
        lambda X, y: Adam(lr="x"),
        lambda X, y: MLP([4, 3]).fit(X, y, epochs="3"),
        lambda X, y: MLP([4, 3]).fit(X, y, batch_size=None),
        lambda X, y: MLP([4, 3]).fit(X, y, validation_split="0.1"),
    ],
)
def test_a_value_of_the_wrong_type_is_a_type_error_and_an_invalid_argument(call):
    """As the docs say (and scikit-learn's parameter errors are): caught as either."""
    X, y = np.ones((6, 4), np.float32), np.zeros(6, int)
    with pytest.raises(TypeError) as info:
        call(X, y)
    assert isinstance(info.value, InvalidArgument)
