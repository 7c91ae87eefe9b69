"""nnkernels.nn: PyTorch-named modules with explicit backward (no autograd tape).

``y = model(x)`` runs forward (keeping what backward needs in training mode);
``model.backward(grad_y)`` accumulates parameter gradients into ``p.grad``
and returns the gradient with respect to the input.
"""

from . import init
from ._flat import FlatBuffer, flatten_parameters
from .activation import ELU, GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Softplus, Tanh
from .container import MLP, Sequential
from .layers import BatchNorm1d, Dropout, Flatten, Identity, Linear
from .loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss,
                   NLLLoss)
from .module import Module
from .parameter import Parameter

__all__ = [
    "Module", "Parameter", "Linear", "Identity", "Flatten", "Dropout", "BatchNorm1d", "Sequential",
    "MLP", "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "GELU", "SiLU", "Softplus", "Softmax",
    "LogSoftmax", "CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss", "HuberLoss", "BCELoss",
    "BCEWithLogitsLoss", "KLDivLoss", "init", "flatten_parameters", "FlatBuffer",
]
