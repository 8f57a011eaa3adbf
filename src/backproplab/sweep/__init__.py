"""``backproplab sweep``: hyperparameter searches of the trainers, run on Ray Tune.

One idea per module:

* :mod:`~backproplab.sweep.spec`: the TOML sweep file (trainer, fixed flags, a search space per flag,
  samples, metric, early stopping) and its checks; no Ray needed;
* :mod:`~backproplab.sweep.space`: the search space as Ray Tune search spaces, sampled into the
  sweep's trials;
* :mod:`~backproplab.sweep.plan`: the trials' flags, each checked by the trainer's own config before
  any trial starts, kept in ``sweep.json``;
* :mod:`~backproplab.sweep.sweep_dir`: the sweep directory, claimed by one sweep at a time;
* :mod:`~backproplab.sweep.trial`: one trial, run in a Ray worker as an ordinary run directory;
* :mod:`~backproplab.sweep.runner`: Ray (embedded or ``--address``), the Tuner, ASHA, progress;
* :mod:`~backproplab.sweep.progress`: the progress line;
* :mod:`~backproplab.sweep.report`: the results table, ``results.csv``, the picture and the choice.

Only the ``sweep`` command imports this package's Ray modules; the rest of backproplab never
imports Ray.
"""
