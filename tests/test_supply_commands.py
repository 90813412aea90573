"""Every operator command the supply chain's messages quote is one the CLI really accepts."""

from __future__ import annotations

import shlex

import pytest

from comfy_runtime.cli.main import build_parser
from comfy_runtime.supply import commands

QUOTED = {name: value for name, value in vars(commands).items() if name.endswith("_COMMAND")}


def test_there_are_commands_to_check():
    assert len(QUOTED) >= 8


@pytest.mark.parametrize("name", sorted(QUOTED))
def test_the_cli_parses_the_quoted_command(name):
    words = shlex.split(QUOTED[name])
    assert words[:3] == ["python", "-m", "comfy_runtime"]
    args = build_parser().parse_args(words[3:])  # argparse exits (SystemExit) on an unknown command or action
    assert callable(args.fn)
