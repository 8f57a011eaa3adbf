"""Instrumentation of models, NumPy and PyTorch alike: recording every leaf layer's inputs, outputs
and gradients (:mod:`~backproplab.instrument.recorder`) and the per-layer statistics that trainers
log and the doctor judges (:mod:`~backproplab.instrument.layer_stats`). Used by ``training`` and
``verify``; imports neither."""
