"""The `hookline` command as a newcomer meets it: a version, and help on every option."""

from __future__ import annotations

import argparse
import subprocess
import tomllib

from hookline import __version__
from hookline.cli import build_parser
from tests.procs import HOOKLINE, ROOT


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("hookline has no subcommands")


def test_version_is_the_installed_distribution_s() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert __version__ == version
    done = subprocess.run([*HOOKLINE, "--version"], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"hookline {version}"


def test_every_option_of_every_subcommand_has_help() -> None:
    parser = build_parser()
    missing = []
    for name, sub in {"": parser, **_subparsers(parser)}.items():
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction) or not action.option_strings:
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"hookline {name} {'/'.join(action.option_strings)}")
    assert not missing, f"options without help text: {missing}"


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    described = {a.dest: a.help for action in parser._actions
                 if isinstance(action, argparse._SubParsersAction)
                 for a in action._choices_actions}
    assert set(described) == set(_subparsers(parser))
    assert all(described.values()), described


def test_help_renders_for_every_subcommand() -> None:
    # A stray % in a help string only fails when the help is formatted.
    parser = build_parser()
    for sub in _subparsers(parser).values():
        assert sub.format_help()
    assert "--version" in parser.format_help()
