"""mlp: multilayer perceptrons with their own backpropagation on NumPy (CPU) or CuPy (CUDA).

>>> from mlp import MLP
>>> model = MLP([784, 512, 256, 10], device="cpu")
"""

from .layers import Activation, Dropout, Layer, Linear, ReLU, Sigmoid, Tanh
from .model import MLP, TrainingDiverged
from .optim import SGD, Adam, AdamW, Optimizer

__all__ = [
    "MLP",
    "SGD",
    "Activation",
    "Adam",
    "AdamW",
    "Dropout",
    "Layer",
    "Linear",
    "Optimizer",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "TrainingDiverged",
]
__version__ = "0.1.0"
