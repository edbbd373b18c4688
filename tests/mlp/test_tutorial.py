"""The seed tutorial's own example on every backend: z = W·x + b, a sigmoid, forward(X, W1, ...)."""

from __future__ import annotations

import numpy as np

from mlp import MLP


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def forward(X, W1, b1, W2, b2):
    """The tutorial's plain NumPy formula."""
    return sigmoid(sigmoid(X @ W1 + b1) @ W2 + b2)


def test_tutorial_forward_matches_plain_numpy(device):
    rng = np.random.default_rng(42)
    X = rng.standard_normal((5, 3))
    W1, b1 = rng.standard_normal((3, 4)), rng.standard_normal(4)
    W2, b2 = rng.standard_normal((4, 1)), rng.standard_normal(1)

    model = MLP(
        [3, 4, 1], activation="sigmoid", output_activation="sigmoid", device=device, dtype="float64"
    )
    model.load_state_dict({"0.weight": W1, "0.bias": b1, "1.weight": W2, "1.bias": b2})
    out = model.forward(X)

    assert model.backend.is_array(out)
    np.testing.assert_allclose(model.backend.to_numpy(out), forward(X, W1, b1, W2, b2), rtol=1e-12)
    np.testing.assert_allclose(model.predict_proba(X), forward(X, W1, b1, W2, b2), rtol=1e-12)
