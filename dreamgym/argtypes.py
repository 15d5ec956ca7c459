"""Typed ``argparse`` values for the ``dreamgym`` command, defined once and shared by every subcommand.

Each is a ``type=`` callable: it returns the parsed value or raises ``argparse.ArgumentTypeError``, which
argparse prints as ``dreamgym CMD: error: argument --flag: <message>`` (exit 2). argparse names the flag;
each message says what was expected, what was given, and an example that works.

>>> positive_int("3")
3
>>> json_object('{"lr": 0.1}')
{'lr': 0.1}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Any, TypeVar

MAX_INT = 2**63 - 1  # torch and numpy hold counts and seeds in int64
_C = TypeVar("_C")
MAX_SCALE = 16  # a 64x64 frame enlarged 16 times is 1024 px: past a screen, and video frames are held in memory


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after each flag's help, except where X says nothing: None (the help then
    says in words what happens without the flag) and the False of an on/off switch."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _int(text: str, lowest: int, example: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = None
    if value is None or not lowest <= value <= MAX_INT:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {lowest}, got {text!r}; e.g. {example}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (steps, episodes, sizes, batch sizes)."""
    return _int(text, 1, "10")


def nonneg_int(text: str) -> int:
    """A whole number >= 0 (seeds; 0 meaning "off" or "never")."""
    return _int(text, 0, "0")


def _float(text: str, positive: bool) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
        raise argparse.ArgumentTypeError(
            f"expected a finite number {'> 0' if positive else '>= 0'}, got {text!r}; e.g. {'0.1' if positive else '0'}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, sigma0, frame rates)."""
    return _float(text, positive=True)


def nonneg_float(text: str) -> float:
    """A finite number >= 0 (noise; 0 meaning none)."""
    return _float(text, positive=False)


def finite_float(text: str) -> float:
    """Any finite number (a penalty reward may be negative)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}; e.g. -100")
    return value


def temperature(text: str) -> float:
    """The dream's tau: a finite number in ``[0, MAX_TEMPERATURE]`` (what the envs accept)."""
    from dreamgym.models.world_model import MAX_TEMPERATURE

    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= MAX_TEMPERATURE):
        raise argparse.ArgumentTypeError(f"expected a number in [0, {MAX_TEMPERATURE:g}] (0 = deterministic, "
                                         f"1 = as trained), got {text!r}; e.g. 1.0")
    return value


def scale(text: str) -> int:
    """An enlargement factor in ``[1, MAX_SCALE]``."""
    value = _int(text, 1, "4")
    if value > MAX_SCALE:
        raise argparse.ArgumentTypeError(f"expected a whole number in [1, {MAX_SCALE}], got {text!r}; e.g. 4")
    return value


def json_object(text: str) -> dict[str, Any]:
    """A JSON object (keyword arguments), e.g. ``'{"lap_complete_percent": 0.9}'``."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({e}); "
                                         "e.g. '{\"key\": 1}' in single quotes") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}} of keyword arguments, got "
                                         f"{type(value).__name__} {text!r}; e.g. '{{\"key\": 1}}'")
    return value


def out_dir(text: str) -> str:
    """A directory to write into: absent (created later) or a directory, never an existing file."""
    if not text:
        raise argparse.ArgumentTypeError("expected a directory path, got ''; e.g. runs/my-run")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"expected a directory (new or existing), got {text!r}, which is a file; "
                                         "pass another path, e.g. runs/my-run")
    if path.is_symlink() and not path.exists():
        raise argparse.ArgumentTypeError(f"expected a directory (new or existing), got {text!r}, a link to "
                                         f"{str(path.readlink())!r}, which does not exist; create the link's target "
                                         "first, or pass another path")
    return text


def device(text: str) -> str:
    """A torch device this build can use: cpu, cuda, cuda:N or mps."""
    if text == "cpu":
        return text
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or mps, got {text!r}; e.g. cpu") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: this torch build has no CUDA GPU; pass --device cpu, "
                                             "or install a CUDA build of torch")
        if dev.index is not None and dev.index >= count:
            raise argparse.ArgumentTypeError(f"{text!r}: there are {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available here; pass --device cpu")
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or mps, got {text!r}; e.g. cpu")
    return text


def field_default(config: type, name: str) -> Any:
    """The default of the dataclass field ``config.name`` (its factory's value for a mutable default)."""
    for f in dataclasses.fields(config):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            return None
    raise AttributeError(f"{config.__name__} has no field {name!r}")


def field_choices(config: type, name: str) -> list[Any]:
    """The values the dataclass field ``config.name`` takes (its ``metadata["choices"]``)."""
    return list(next(f.metadata for f in dataclasses.fields(config) if f.name == name)["choices"])


def field_argument(parser: argparse.ArgumentParser, config: type, name: str, *flags: str, **kwargs: Any
                   ) -> argparse.Action:
    """``--name`` (or ``flags``) whose default and choices come from the dataclass field ``config.name``.

    The config dataclass stays the one place a default lives; the CLI adds only the flag's type and help.
    ``choices`` come from the field's ``metadata["choices"]``; ``kwargs`` override either.

    >>> from dreamgym.agents.cmaes import CMAESConfig
    >>> p = argparse.ArgumentParser()
    >>> field_argument(p, CMAESConfig, "dtype", help="matmul dtype").choices
    ['float32', 'bfloat16']
    """
    meta = next(f.metadata for f in dataclasses.fields(config) if f.name == name)
    kwargs.setdefault("default", field_default(config, name))
    if "choices" in meta:
        kwargs.setdefault("choices", list(meta["choices"]))
    return parser.add_argument(*(flags or ("--" + name.replace("_", "-"),)), **kwargs)


def config_from_args(config: type[_C], args: argparse.Namespace, **overrides: Any) -> _C:
    """A ``config`` built from the parsed flags named like its fields (the others keep their defaults)."""
    names = {f.name for f in dataclasses.fields(config)} - set(overrides)
    return config(**{n: getattr(args, n) for n in names if hasattr(args, n)}, **overrides)


def field_docs(config: type) -> dict[str, str]:
    """The string under each field of a dataclass (CleanRL's ``Args`` style), read from its source."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(config)))
    except (OSError, TypeError):
        return {}
    body, docs = tree.body[0].body, {}  # type: ignore[attr-defined]
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


class _ScriptFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """A script's docstring as written, and each flag's default."""


def dataclass_parser(config: type, description: str | None = None) -> argparse.ArgumentParser:
    """An ArgumentParser with one ``--flag`` per field of ``config``: its default, its type (``int``, ``float``,
    ``str``, ``bool`` as ``--x/--no-x``, ``list[...]``, each maybe ``| None``), its ``metadata["choices"]`` and
    the string under it as help.
    A small stand-in for tyro, which dreamgym does not depend on."""
    import typing

    hints, docs = typing.get_type_hints(config), field_docs(config)
    parser = argparse.ArgumentParser(description=description, formatter_class=_ScriptFormatter)
    for f in dataclasses.fields(config):
        kind, extra = hints[f.name], {}
        if type(None) in typing.get_args(kind):  # X | None
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        if kind is bool:
            extra["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is list:
            extra.update(nargs="*", type=typing.get_args(kind)[0])
        else:
            extra["type"] = kind
        if "choices" in f.metadata:
            extra["choices"] = list(f.metadata["choices"])
        parser.add_argument("--" + f.name.replace("_", "-"), default=field_default(config, f.name),
                            help=docs.get(f.name, f.name), **extra)
    return parser


def parse_cli(config: type[_C], argv: list[str] | None = None, description: str | None = None) -> _C:
    """``config`` filled from the command line (see :func:`dataclass_parser`)."""
    return config(**vars(dataclass_parser(config, description).parse_args(argv)))


__all__ = ["MAX_SCALE", "HelpFormatter", "config_from_args", "dataclass_parser", "device", "field_argument",
           "field_choices", "field_default", "field_docs", "finite_float", "json_object", "nonneg_float", "nonneg_int",
           "out_dir", "parse_cli", "positive_float", "positive_int", "scale", "temperature"]
