"""Exception types of dreamgym, in one place.

Every message says what was expected, what was given and how to fix it. The classes also derive
from the built-in exception a Gymnasium user would catch (``ValueError``, ``FileNotFoundError``),
so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class DreamgymError(Exception):
    """Base class of every error raised by dreamgym."""


class ConfigError(DreamgymError, ValueError):
    """A configuration, keyword argument or space that dreamgym cannot use."""


class CheckpointError(DreamgymError, ValueError):
    """A checkpoint that is missing, incomplete, corrupt or does not match its config."""


class DatasetError(DreamgymError, ValueError):
    """An episode dataset that is empty, corrupt or does not match the model."""


class InvalidActionError(DreamgymError, ValueError):
    """An action of the wrong shape, type or value (NaN, out of a Discrete range)."""


class NumericalError(DreamgymError, FloatingPointError):
    """A dream produced NaN or inf: raised at once instead of dreaming on silently."""


class HubError(DreamgymError, OSError):
    """The Hugging Face Hub could not be reached, or refused a push or pull (offline, no login, no access)."""
