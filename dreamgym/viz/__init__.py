"""See the dream: videos (dream alone or beside reality), human play, training plots.

Everything here is optional tooling on top of the envs; heavy dependencies (Pillow, imageio,
matplotlib) are imported only by the function that needs them, and a missing one raises
``gymnasium.error.DependencyNotInstalled`` with the pip command.

>>> from dreamgym.viz.video import rollout_frames, write_video  # doctest: +SKIP
>>> frames = rollout_frames("Dream-CarRacing-v0", model="runs/cr", side_by_side=True)  # doctest: +SKIP
>>> write_video(frames, "cr.gif", fps=30)  # doctest: +SKIP
"""

from __future__ import annotations
