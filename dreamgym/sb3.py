"""Kept so ``from dreamgym.sb3 import DreamVecEnv`` still works: the adapter lives in :mod:`dreamgym.agents.sb3`,
beside the SB3 training code."""

from dreamgym.agents.sb3 import DreamVecEnv

__all__ = ["DreamVecEnv"]
