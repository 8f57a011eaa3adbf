"""backproplab: neural networks with hand-derived backward passes, their PyTorch twins, and the
tools that check one against the other."""

__version__ = "0.1.0"
