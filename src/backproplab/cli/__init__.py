"""Command-line interface: ``backproplab`` and ``python -m backproplab``."""
