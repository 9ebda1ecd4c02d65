"""Errors about what the user gave: a config value, a data file, a checkpoint, a reward's output.

Each message says what is wrong and how to fix it. The `rlgf` command prints it in one line, without a
traceback (set RLGF_TRACEBACK=1 to see one). Each class also derives from the builtin error a caller
would catch (`ValueError`, `FloatingPointError`), so `except ValueError` keeps working.
"""

from __future__ import annotations

TRACEBACK_VARIABLE = "RLGF_TRACEBACK"


class UserInputError(Exception):
    """Base of the errors whose cause and fix lie in the user's input, not in rlgf_pl."""


class ConfigError(UserInputError, ValueError):
    """A setting is invalid, or settings contradict each other or the models."""


class DataError(UserInputError, ValueError):
    """A task file, split or reward output is unusable."""


class CheckpointError(UserInputError, ValueError):
    """A file is not a checkpoint this run can load, or does not match the run's config."""


class NonFiniteError(UserInputError, FloatingPointError):
    """Training produced NaN or inf (a loss term, a gradient, an advantage, a weight); the run stops before
    any checkpoint is written."""


class ModelLoadError(UserInputError, OSError):
    """A model or tokenizer named in the config cannot be loaded."""


class GuideServerError(UserInputError, ConnectionError):
    """A guide behind an API cannot be reached, or keeps failing after its retries."""


class GuideResponseError(UserInputError, ValueError):
    """A guide's server answered with something that is not an OpenAI-style completion."""


class RolloutServerError(UserInputError, ConnectionError):
    """The server that generates the learner's rollouts could not be reached, or answered with an error."""


class WeightSyncError(RolloutServerError):
    """The rollout server did not take the learner's new weights (or could not be reached to send them)."""


class StaleWeightsError(UserInputError, RuntimeError):
    """A rollout came back generated with weights other than the learner's current ones."""
