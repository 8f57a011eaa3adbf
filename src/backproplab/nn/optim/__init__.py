"""Optimizers and learning-rate schedules with torch.optim's exact update rules."""

from backproplab.nn.optim.adam import Adam
from backproplab.nn.optim.lr_scheduler import LambdaLR, ScheduleFactor, StepLR
from backproplab.nn.optim.optimizer import Optimizer
from backproplab.nn.optim.sgd import SGD

__all__ = ["SGD", "Adam", "LambdaLR", "Optimizer", "ScheduleFactor", "StepLR"]
