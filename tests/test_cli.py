"""The `asn` dispatcher: every command has --help, unknown commands and bad input exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asn.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: asn {command}") and len(out) > 200


def test_unknown_command_and_missing_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bogus"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["convert"])
    assert exit_info.value.code == 2
    assert "required" in capsys.readouterr().err


def test_console_script_lists_commands_without_importing_torch():
    code = "import sys, asn.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    help_text = subprocess.run([sys.executable, "-m", "asn.cli", "--help"], capture_output=True,
                               text=True, check=True).stdout
    for command in COMMANDS:
        assert command in help_text
