"""The examples are top-to-bottom scripts whose flags come from a ``@dataclass Args`` (issue 15, item 7)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from dreamgym.argtypes import dataclass_parser, field_docs, parse_cli

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_parses_its_args(path, monkeypatch):
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # (where inspect finds Args' source)
    spec.loader.exec_module(module)  # definitions only: the script itself runs under __main__
    Args = module.Args
    assert vars(dataclass_parser(Args).parse_args([])) == asdict(Args())
    docs = field_docs(Args)
    assert set(docs) == set(asdict(Args())), "every field has the string under it that --help shows"


@dataclass
class _Args:
    rounds: int = 1
    """rounds"""
    tau: float | None = None
    """a temperature"""
    warm: list[int] = field(default_factory=lambda: [3, 4])
    """warm rounds"""
    ship: bool = False
    """ship it"""
    mode: str = field(default="a", metadata={"choices": ("a", "b")})
    """a mode"""


def test_parse_cli_types_each_field():
    args = parse_cli(_Args, ["--rounds", "3", "--tau", "1.5", "--warm", "1", "2", "--ship", "--mode", "b"])
    assert args == _Args(rounds=3, tau=1.5, warm=[1, 2], ship=True, mode="b")
    assert parse_cli(_Args, []) == _Args()
    assert "a temperature" in dataclass_parser(_Args).format_help()
    with pytest.raises(SystemExit):
        parse_cli(_Args, ["--mode", "c"])
