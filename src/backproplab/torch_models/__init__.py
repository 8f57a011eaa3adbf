"""PyTorch models: the twins of the NumPy engine's models and the practical's ConvNet."""

from backproplab.torch_models.convnet import ConvNet, PreActBlock
from backproplab.torch_models.layernorm import AutogradLayerNorm, LayerNorm, LayerNormFunction
from backproplab.torch_models.mlp import TorchMLP

__all__ = ["AutogradLayerNorm", "ConvNet", "LayerNorm", "LayerNormFunction", "PreActBlock", "TorchMLP"]
