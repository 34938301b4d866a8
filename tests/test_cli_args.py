"""The command line as parsed, without processes: arguments that look like negative numbers
are text (argparse's rule), options keep their values."""

from __future__ import annotations

import os
import subprocess

import pytest
import typer.main

from minitalk.cli import (
    SEND_VALUE_OPTIONS,
    SEND_VALUE_SHORT,
    app,
    negative_numbers_as_text,
)
from tests.conftest import HANG_GUARD, MINITALK


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["send", "42", "-1"], ["send", "--", "42", "-1"]),
        (["send", "42", "-456"], ["send", "--", "42", "-456"]),
        (["send", "42", "-1.5"], ["send", "--", "42", "-1.5"]),
        (["send", "42", "-.5"], ["send", "--", "42", "-.5"]),
        (["send", "-q", "42", "-1"], ["send", "-q", "--", "42", "-1"]),
        (["send", "42", "-1", "--quiet"], ["send", "--quiet", "--", "42", "-1"]),
        (["send", "42", "-1", "--timeout", "3"], ["send", "--timeout", "3", "--", "42", "-1"]),
        (["send", "-5", "hi"], ["send", "--", "-5", "hi"]),  # a negative PID: refused later
        # an option's value is the option's, even when it looks like a negative number
        (["send", "42", "hi", "--timeout", "-1"], ["send", "42", "hi", "--timeout", "-1"]),
        (["send", "42", "-f", "-1"], ["send", "42", "-f", "-1"]),
        (["send", "42", "-qf", "-1"], ["send", "42", "-qf", "-1"]),
        (["send", "42", "-f-1", "-2"], ["send", "-f-1", "--", "42", "-2"]),
        (["send", "42", "--file=-1", "-2"], ["send", "--file=-1", "--", "42", "-2"]),
        # nothing to do
        (["send", "42", "hi"], ["send", "42", "hi"]),
        (["send", "42", "-"], ["send", "42", "-"]),
        (["send", "42", "-x"], ["send", "42", "-x"]),  # an unknown option stays one
        (["send", "--", "42", "-1"], ["send", "--", "42", "-1"]),
        (["send", "--", "--5", "hi"], ["send", "--", "--5", "hi"]),
        (["serve", "-1"], ["serve", "-1"]),
        (["--version"], ["--version"]),
        ([], []),
    ],
)
def test_negative_numbers_are_text(args: list[str], expected: list[str]) -> None:
    assert negative_numbers_as_text(args) == expected


def test_the_value_options_are_the_commands_own() -> None:
    send = typer.main.get_command(app).commands["send"]  # type: ignore[attr-defined]
    takes_value = [
        opt
        for param in send.params
        if param.param_type_name == "option" and not param.is_flag
        for opt in param.opts
    ]
    assert {opt for opt in takes_value if opt.startswith("--")} == SEND_VALUE_OPTIONS
    assert {opt[1:] for opt in takes_value if not opt.startswith("--")} == SEND_VALUE_SHORT
    every_option = [opt for param in send.params for opt in getattr(param, "opts", [])]
    assert not any(opt[1:].isdigit() for opt in every_option)  # argparse's condition holds


SERVE_EXAMPLES = [
    "minitalk serve > messages.log 2>&1",
    "minitalk serve --json --count 1",
    "minitalk serve --pid-file mt.pid &  # then wait until mt.pid is not empty",
]
SEND_EXAMPLES = [
    'minitalk send 4242 "emoji 🎉"',
    "minitalk send 4242 --file notes.txt",
    "echo hi | minitalk send 4242 -",
    "minitalk send 4242 -1",
    'minitalk send 4242 -- "-x marks it"',
]


@pytest.mark.parametrize(
    ("command", "usage", "examples"),
    [
        ("serve", "Usage: minitalk serve [OPTIONS]", SERVE_EXAMPLES),
        ("send", "Usage: minitalk send [OPTIONS] PID [TEXT]", SEND_EXAMPLES),
    ],
)
def test_help_shows_examples_one_per_line(command: str, usage: str, examples: list[str]) -> None:
    result = subprocess.run(
        [*MINITALK, command, "--help"],
        capture_output=True,
        timeout=HANG_GUARD,
        check=True,
        env={**os.environ, "COLUMNS": "120", "TERM": "dumb"},
    )
    lines = [line.strip() for line in result.stdout.decode().splitlines()]
    assert usage in lines
    start = lines.index("Examples:")
    assert lines[start + 1 : start + 1 + len(examples)] == examples
