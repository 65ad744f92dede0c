"""The errors that retrying cannot fix: bad configuration values and bad input data.

Ray Train restarts a trial's workers after any failure and Ray Tune reruns a failed trial;
both are meant for lost workers and preempted nodes, and both would rerun a bad file or a
bad value until their budgets are spent. Code that finds bad input raises
:class:`InputError` (naming the field, file and record); a trial's ranks agree on it and
end the trial once (trainables/engine/trial.py), and the driver reports it as the trial's error
without a retry (trainables/engine/ray_entry.py). Nothing here imports anything.
"""

from __future__ import annotations


class InputError(ValueError):
    """Deterministic bad input: a configuration value or a data file that cannot work.

    ``field`` is the configuration field the bad value came from (``data.train_annotations``,
    ``pretrained_weights``, ...), when there is one: the study uses it to tell an error that
    every trial would hit (a path all arms share) from one that only some would.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self):
        # Crosses process boundaries (Ray pickles exceptions) with its field.
        return type(self), (str(self), self.field)


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the configuration names does not exist."""


class ConfigError(InputError):
    """A configuration value is unknown or out of range; the message names the field."""
