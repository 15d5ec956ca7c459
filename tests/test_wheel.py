"""The shipped dreams load from an installed wheel, not only from the source tree."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHECK = """
import gymnasium as gym, dreamgym
from dreamgym.evaluate import agent_info, evaluate_dream
from dreamgym.models.resolve import pretrained_path
from dreamgym.ship import shipped_agent
assert dreamgym.__file__.startswith({site!r}), dreamgym.__file__
for name, dream in (("pendulum", "Dream-Pendulum-v0"), ("carracing", "Dream-CarRacing-v0"),
                    ("doom-takecover", "Dream-DoomTakeCover-v0")):
    env = gym.make(dream)
    _, info = env.reset(seed=0)
    assert info["model_source"]["path"].startswith({site!r}), info
    agent = shipped_agent(pretrained_path(name))  # controller/ or agent/ (an SB3 zip)
    assert agent is not None and evaluate_dream(agent_info(agent), 2, max_steps=5).shape == (2,)
print("ok")
"""


@pytest.mark.slow
def test_shipped_models_load_from_an_installed_wheel(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("dreamgym-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for folder in sorted(p for p in (ROOT / "pretrained").iterdir() if p.is_dir() and not p.name.endswith(".tmp")):
        for f in folder.rglob("*"):
            if f.is_file():
                assert f"dreamgym/pretrained/{f.relative_to(ROOT / 'pretrained').as_posix()}" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what pip install puts in site-packages
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "SDL_VIDEODRIVER": "dummy"}
    run = subprocess.run([sys.executable, "-c", CHECK.format(site=str(site))], capture_output=True, text=True,
                         cwd=tmp_path, env=env)  # cwd outside the checkout: no source tree to fall back on
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-2000:]
