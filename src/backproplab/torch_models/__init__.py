"""PyTorch models: the twins of the NumPy engine's models and the practical's ConvNet."""

from backproplab.torch_models.mlp import TorchMLP

__all__ = ["TorchMLP"]
