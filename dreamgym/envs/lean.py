"""Old import path of the MDN-RNN backend's numpy step, now :mod:`dreamgym.models.lean`."""

from dreamgym.models.lean import NOISE_BLOCK, LeanDream, termination_uniform

__all__ = ["NOISE_BLOCK", "LeanDream", "termination_uniform"]
