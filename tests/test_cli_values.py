"""Bad CLI values end in ``dreamgym CMD: error: ...`` (exit 2) naming the flag, before anything runs (issue 14)."""

from __future__ import annotations

import argparse

import pytest
import torch

from dreamgym import argtypes
from dreamgym.cli import build_parser, main


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    """Run ``dreamgym argv``; assert exit 2 and an error line naming the command and each of ``expected``."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"dreamgym {argv[0]}: error:" in err and "Traceback" not in err
    for text in expected:
        assert text in err, (text, err)
    return err


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_flag_has_help_and_shows_its_default():
    parser = build_parser()
    assert all(a.help for a in parser._actions)
    for name, sub in _subparsers(parser).items():
        text = sub.format_help()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help.strip(), f"dreamgym {name} {action.dest}: no help text"
            optional = action.option_strings and not action.required and action.nargs != 0
            if optional:  # a value flag: its help says what happens without it
                helps = sub._get_formatter()._get_help_string(action)
                assert "default" in helps, f"dreamgym {name} {action.option_strings[0]}: help shows no default"
        assert "(default: " in text or name in ("push", "pull", "validate", "plot", "ensemble")


OUT = ["--out", "runs/x"]
BAD = [
    (["collect", "Pendulum-v1", *OUT, "--episodes", "0"], "--episodes", "'0'"),
    (["collect", "Pendulum-v1", *OUT, "--max-steps", "-5"], "--max-steps", "'-5'"),
    (["collect", "Pendulum-v1", *OUT, "--env-kwargs", "{bad"], "--env-kwargs", "JSON object"),
    (["collect", "Pendulum-v1", *OUT, "--env-kwargs", "[1]"], "--env-kwargs", "list"),
    (["collect", "Pendulum-v1", *OUT, "--seed", "-1"], "--seed", ">= 0"),
    (["train", "d", *OUT, "--temperature", "-1"], "--temperature", "[0, 1000]"),
    (["train", "d", *OUT, "--temperature", "nan"], "--temperature", "'nan'"),
    (["train", "d", *OUT, "--temperature", "1e39"], "--temperature", "'1e39'"),
    (["train", "d", *OUT, "--seq-len", "0"], "--seq-len", ">= 1"),
    (["train", "d", *OUT, "--hidden-size", "0"], "--hidden-size", ">= 1"),
    (["train", "d", *OUT, "--z-dim", "0"], "--z-dim", ">= 1"),
    (["train", "d", *OUT, "--lr", "0"], "--lr", "> 0"),
    (["train", "d", *OUT, "--lr", "inf"], "--lr", "finite"),
    (["train", "d", *OUT, "--vision-steps", "1.5"], "--vision-steps", "whole number"),
    (["train", "d", *OUT, "--device", "gpu"], "--device", "cpu, cuda"),
    (["train-agent", "Dream-Pendulum-v0", *OUT, "--temperature", "-0.5"], "--temperature", "'-0.5'"),
    (["train-agent", "Dream-Pendulum-v0", *OUT, "--temperature", "NaN"], "--temperature", "'NaN'"),
    (["train-agent", "Dream-Pendulum-v0", *OUT, "--sigma0", "0"], "--sigma0", "> 0"),
    (["train-agent", "Dream-Pendulum-v0", *OUT, "--sigma0", "-1"], "--sigma0", "> 0"),
    (["train-agent", "Dream-Pendulum-v0", *OUT, "--algo", "ppo", "--steps", "0"], "--steps", ">= 1"),
    (["train-agent", "Dream-Pendulum-v0", *OUT, "--max-steps", "0"], "--max-steps", ">= 1"),
    (["train-agent", "Dream-Pendulum-v0", *OUT, "--algo-kwargs", "{bad"], "--algo-kwargs", "JSON object"),
    (["evaluate", "random", "--episodes", "0"], "--episodes", ">= 1"),
    (["evaluate", "random", "--temperature", "-1"], "--temperature", "[0, 1000]"),
    (["iterate", "Pendulum-v1", *OUT, "--episodes", "-3"], "--episodes", ">= 1"),
    (["iterate", "Pendulum-v1", *OUT, "--temperature", "nan"], "--temperature", "'nan'"),
    (["dream", "Dream-Pendulum-v0", "--out", "d.gif", "--temperature", "-1"], "--temperature", "[0, 1000]"),
    (["dream", "Dream-Pendulum-v0", "--out", "d.gif", "--temperature", "nan"], "--temperature", "'nan'"),
    (["dream", "Dream-Pendulum-v0", "--out", "d.gif", "--scale", "100000"], "--scale", "[1, 16]"),
    (["dream", "Dream-Pendulum-v0", "--out", "d.gif", "--scale", "0"], "--scale", ">= 1"),
    (["dream", "Dream-Pendulum-v0", "--out", "d.gif", "--steps", "0"], "--steps", ">= 1"),
    (["dream", "Dream-Pendulum-v0", "--out", "d.gif", "--fps", "0"], "--fps", "> 0"),
    (["play", "Dream-Pendulum-v0", "--scale", "99"], "--scale", "[1, 16]"),
    (["play", "Dream-Pendulum-v0", "--temperature", "1e300"], "--temperature", "[0, 1000]"),
]


@pytest.mark.parametrize("argv, flag, given", BAD, ids=[f"{a[0][0]} {a[1]} {a[0][-1]}" for a in BAD])
def test_bad_values_are_argparse_errors_naming_flag_expected_and_given(argv, flag, given, capsys):
    err = _fails(argv, capsys, f"argument {flag}", given)
    assert "e.g." in err or "pass" in err  # the fix


def test_out_pointing_at_an_existing_file_is_refused(tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    for argv in (["collect", "Pendulum-v1"], ["train", "d"], ["train-agent", "Dream-Pendulum-v0"],
                 ["iterate", "Pendulum-v1"]):
        _fails([*argv, "--out", str(file)], capsys, "argument --out", "is a file")
    assert file.read_text() == "mine"
    assert build_parser().parse_args(["train", "d", "--out", str(tmp_path)]).out == str(tmp_path)  # a dir is fine


def test_out_linking_to_nothing_is_refused(tmp_path, capsys):
    """A dangling link used to reach mkdir and end in a bare FileExistsError traceback."""
    link = tmp_path / "data"
    link.symlink_to(tmp_path / "gone")
    _fails(["collect", "Pendulum-v1", "--out", str(link)], capsys, "argument --out", "does not exist")
    (tmp_path / "gone").mkdir()
    assert build_parser().parse_args(["collect", "Pendulum-v1", "--out", str(link)]).out == str(link)


def test_env_kwargs_the_env_does_not_take_name_the_kwarg(tmp_path, capsys):
    out = tmp_path / "data"
    err = _fails(["collect", "Pendulum-v1", "--out", str(out), "--env-kwargs", '{"bogus": 1, "g": 9.8}'], capsys,
                 "--env-kwargs", "'bogus'", "takes")
    assert "'g'" not in err.split("takes no")[1].split(";")[0]  # g is Pendulum's own
    assert not out.exists()  # refused before collect made anything
    args = build_parser().parse_args(["collect", "Pendulum-v1", "--out", str(out), "--env-kwargs", '{"g": 9.8}'])
    assert args.env_kwargs == {"g": 9.8}


def test_unknown_algo_kwargs_are_refused(tmp_path, capsys):
    base = ["train-agent", "Dream-Pendulum-v0", "--out", str(tmp_path / "a")]
    _fails([*base, "--algo", "ppo", "--algo-kwargs", '{"n_stepz": 64}'], capsys, "--algo-kwargs", "'n_stepz'", "PPO")
    _fails([*base, "--algo", "ppo", "--algo-kwargs", '{"seed": 3}'], capsys, "'seed'", "own flags")
    _fails([*base, "--algo-kwargs", '{"n_steps": 64}'], capsys, "not cmaes")
    assert not (tmp_path / "a").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this build has a CUDA GPU")
def test_device_cuda_on_a_cpu_build_is_refused(capsys):
    _fails(["train", "d", "--out", "x", "--device", "cuda"], capsys, "argument --device", "no CUDA GPU", "--device cpu")
    _fails(["train-agent", "Dream-Pendulum-v0", "--out", "x", "--device", "cuda:0"], capsys, "no CUDA GPU")


def test_a_video_too_big_for_memory_is_refused_before_it_starts(capsys):
    _fails(["dream", "Dream-Pendulum-v0", "--out", "d.gif", "--steps", "100000", "--scale", "8"], capsys,
           "--steps 100000", "--scale 8", "GiB")


def test_good_values_parse():
    args = build_parser().parse_args(["train", "d", "--out", "r", "--temperature", "1.15", "--hidden-size", "8",
                                      "--z-dim", "4", "--seq-len", "16", "--lr", "3e-4", "--seed", "0"])
    assert (args.temperature, args.hidden_size, args.z_dim, args.seq_len, args.lr) == (1.15, 8, 4, 16, 3e-4)
    args = build_parser().parse_args(["train-agent", "Dream-Pendulum-v0", "--out", "r", "--temperature", "0",
                                      "--algo", "ppo", "--algo-kwargs", '{"n_steps": 64}'])
    assert args.temperature == 0.0 and args.algo_kwargs == {"n_steps": 64} and args.device == "cpu"
    assert build_parser().parse_args(["play", "Dream-Pendulum-v0", "--fps", "0"]).fps == 0.0


@pytest.mark.parametrize("fn, text", [(argtypes.positive_int, "9" * 5000), (argtypes.positive_int, "\x00"),
                                      (argtypes.temperature, "1" * 400), (argtypes.json_object, "[" * 100_000),
                                      (argtypes.device, "cuda:-1"), (argtypes.device, ""), (argtypes.out_dir, "")])
def test_validators_raise_only_argument_type_error(fn, text):
    with pytest.raises(argparse.ArgumentTypeError):
        fn(text)
