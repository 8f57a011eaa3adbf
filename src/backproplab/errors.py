"""User-facing errors.

Every error a user can cause (bad flags, missing data, wrong shapes, labels out of range,
non-finite values) is a :class:`BackproplabError`. The CLI prints it as one line and exits
with code 2; library users can catch it, or the builtin class it also derives from.
"""

from __future__ import annotations


class BackproplabError(Exception):
    """Base class of the errors caused by user input, reported as one line by the CLI."""


class ShapeError(BackproplabError, ValueError):
    """An array has the wrong shape, dtype or number of dimensions."""


class DataError(BackproplabError, ValueError):
    """A data set, file or label is missing, corrupt or out of range."""


class ConfigError(BackproplabError, ValueError):
    """A flag or configuration value is invalid."""


class NonFiniteError(BackproplabError, FloatingPointError):
    """A loss, input or gradient is NaN or infinite."""


class CheckpointError(BackproplabError, ValueError):
    """A checkpoint is corrupt or does not match the model being resumed."""


class DiskFullError(BackproplabError, OSError):
    """A write failed because the file system is full (ENOSPC) or over quota (EDQUOT).

    ``errno`` and ``filename`` are set as on any OSError; ``str()`` is the one-line message.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RunDirInUseError(ConfigError):
    """The run directory is claimed by another run that is still going."""


class StateDictKeyError(BackproplabError, KeyError):
    """``load_state_dict`` got a state dict with missing or unexpected keys.

    ``str()`` is the plain message (a bare ``KeyError`` would print its repr, with quotes).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
