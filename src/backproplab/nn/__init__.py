"""The NumPy engine: modules with hand-derived backward passes that mirror ``torch.nn``.

This package never imports torch.
"""

from backproplab.nn import init, optim
from backproplab.nn.activations import ELU, ReLU, Tanh
from backproplab.nn.batchnorm import BatchNorm1d, BatchNorm2d
from backproplab.nn.conv import Conv2d
from backproplab.nn.convnet import ConvNet, PreActBlock
from backproplab.nn.dropout import Dropout
from backproplab.nn.flatten import Flatten
from backproplab.nn.grad_mode import is_grad_enabled, no_grad
from backproplab.nn.layernorm import LayerNorm
from backproplab.nn.linear import Linear
from backproplab.nn.losses import CrossEntropy, SoftmaxCrossEntropy
from backproplab.nn.mlp import MLP
from backproplab.nn.module import Module, Sequential
from backproplab.nn.parameter import Parameter
from backproplab.nn.pooling import AdaptiveAvgPool2d, GlobalAvgPool2d, MaxPool2d
from backproplab.nn.residual import Residual
from backproplab.nn.serialization import load_npz, load_safetensors, save_npz, save_safetensors
from backproplab.nn.softmax import Softmax

__all__ = [
    "ELU",
    "MLP",
    "AdaptiveAvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "ConvNet",
    "CrossEntropy",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2d",
    "LayerNorm",
    "Linear",
    "MaxPool2d",
    "Module",
    "Parameter",
    "PreActBlock",
    "ReLU",
    "Residual",
    "Sequential",
    "Softmax",
    "SoftmaxCrossEntropy",
    "Tanh",
    "init",
    "is_grad_enabled",
    "load_npz",
    "load_safetensors",
    "no_grad",
    "optim",
    "save_npz",
    "save_safetensors",
]
