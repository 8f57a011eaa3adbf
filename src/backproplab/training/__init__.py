"""Trainers, run directories, metrics and plots shared by the NumPy and PyTorch models."""
