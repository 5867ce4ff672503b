"""Every error the user can see: one class per area, all `SnganError`, each printed by the CLI as one line.

The CLI turns `SnganError` into `error: <message>` on stderr and exit code 1, and `TrainingStopped` (a signal that
ended training after a checkpoint) into its message and exit code 143. Nothing else in the package prints errors.
This module imports nothing from the package (the bottom of the import graph).
"""

from __future__ import annotations


class SnganError(Exception):
    """A problem the user can fix; the CLI prints its one-line message and exits 1."""


class ConfigError(SnganError, ValueError):
    """A configuration problem, worded as one line for the user."""


class CheckpointError(SnganError):
    """A checkpoint that cannot be used, explained in one line."""


class DataError(SnganError):
    """A dataset that cannot be read or packed, explained in one line."""


class MetricError(SnganError):
    """An evaluation that cannot be done (bad statistics file, impossible counts), in one line."""


class InceptionWeightsError(SnganError):
    """The Inception weights are missing, unreachable or corrupt, with how to supply them."""


class FeatureNetworkError(SnganError):
    """An optional feature network (DINOv2) cannot be loaded, with where to put its files."""


class SamplingError(SnganError):
    """A sampling request the model or the file system cannot satisfy, in one line."""


class ReportError(SnganError):
    """A run directory `sngan report` cannot draw."""


class TrainingStopped(SnganError):
    """Training ended early on purpose (a signal) after saving a checkpoint."""


class TrainingDiverged(SnganError):
    """A loss or weight became NaN/inf; no checkpoint was written after that point."""


class StudyError(SnganError):
    """A study plan that cannot be run (bad plan file, changed plan over an existing study)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside training (where no checkpoint is due): the command stops, its unfinished output
    unwritten; the CLI prints one line and exits 143."""
