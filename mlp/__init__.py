"""mlp: multilayer perceptrons with their own backpropagation on NumPy (CPU) or CuPy (CUDA).

>>> from mlp import MLP
>>> model = MLP([784, 512, 256, 10], device="cpu")
"""

from .errors import MLPError, TrainingDiverged
from .layers import Activation, Dropout, Layer, Linear, ReLU, Sigmoid, Tanh
from .model import MLP
from .optim import SGD, Adam, AdamW, Optimizer
from .schedules import CosineDecay, ReduceOnPlateau, StepDecay
from .stopping import EarlyStopping
from .version import VERSION as __version__

__all__ = [
    "MLP",
    "SGD",
    "Activation",
    "Adam",
    "AdamW",
    "CosineDecay",
    "Dropout",
    "EarlyStopping",
    "Layer",
    "Linear",
    "MLPError",
    "Optimizer",
    "ReLU",
    "ReduceOnPlateau",
    "Sigmoid",
    "StepDecay",
    "Tanh",
    "TrainingDiverged",
    "__version__",
]
