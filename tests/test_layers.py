"""Imports flow one way: cli -> client/server (each role's driver and its real link) ->
link (the interface) and protocol -> frame -> errors (and, for the plain protocol, cli ->
classic_link -> classic -> errors). Inside the protocol package: receiver -> line/assembly ->
look/verdicts -> limits, and sender -> look/verdicts -> limits. No class in the package is
longer than 300 lines and no function longer than 80.

transport sits beside the protocol and knows nothing of frames; the sans-I/O core never
imports the transport, the clock or the signal module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "minitalk"

ALLOWED = {
    "errors": set(),
    "frame": {"errors"},
    "protocol/__init__": {
        "protocol.assembly",
        "protocol.limits",
        "protocol.line",
        "protocol.look",
        "protocol.receiver",
        "protocol.sender",
        "protocol.verdicts",
    },
    "protocol/limits": set(),
    "protocol/look": {"protocol.limits"},
    "protocol/verdicts": {"frame"},
    "protocol/assembly": {"frame", "protocol.limits", "protocol.verdicts"},
    "protocol/line": {"protocol.limits", "protocol.verdicts"},
    "protocol/receiver": {
        "errors",
        "frame",
        "protocol.assembly",
        "protocol.limits",
        "protocol.line",
        "protocol.look",
        "protocol.verdicts",
    },
    "protocol/sender": {
        "errors",
        "frame",
        "protocol.limits",
        "protocol.look",
        "protocol.verdicts",
    },
    "procview": set(),
    "transport": {"errors", "procview", "_inner"},  # _inner: the optional compiled loops (C)
    "trust": {"errors", "procview", "transport"},
    "classic_limits": set(),
    "classic_format": {"errors", "classic_limits"},
    "classic_detect": {"classic_format"},
    "classic_answers": {"classic_format", "classic_limits", "classic"},  # (types only)
    "classic": {"errors", "classic_limits", "classic_format", "classic_detect", "classic_answers"},
    "check_report": {"classic_detect", "classic_format"},
    "check_program": {"errors", "procview", "transport"},
    "check": {
        "check_program",
        "check_report",
        "classic",
        "classic_limits",
        "classic_link",
        "errors",
        "transport",
    },
    "classic_link": {
        "errors",
        "classic",
        "classic_limits",
        "link",
        "procview",
        "transport",
        "trust",
    },
    "link": {"protocol"},  # the interface only (types)
    "client": {
        "errors",
        "frame",
        "link",
        "procview",
        "protocol",
        "protocol.sender",
        "transport",
        "trust",
    },
    "server": {"errors", "frame", "link", "protocol", "transport", "trust"},
    "cli": {
        "__init__",
        "api",
        "errors",
        "frame",
        "protocol",
        "client",
        "server",
        "progress",
        "pidfile",
        "trust",
        "classic",
        "classic_link",
        "classic_limits",
        "transport",  # only INNER_LOOP, which --version names
        "check",
        "check_report",
    },
    "progress": set(),
    "pidfile": {"errors", "procview"},
    "api": {"errors", "frame", "protocol", "client", "procview", "server", "transport"},
    "__main__": {"cli"},
    "__init__": {"api"},  # lazily, on first use
}
CORE_FORBIDDEN = {"signal", "os", "time", "select", "subprocess", "threading", "socket"}


def imports_of(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module if node.module != "minitalk" else "minitalk.__init__")
    return found


def test_every_module_is_listed() -> None:
    found = {str(path.relative_to(PACKAGE).with_suffix("")) for path in PACKAGE.rglob("*.py")}
    assert found == set(ALLOWED)


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_imports_point_down(module: str) -> None:
    own = {
        name.removeprefix("minitalk.") for name in imports_of(module) if name.startswith("minitalk")
    }
    assert own <= ALLOWED[module], f"{module} imports {own - ALLOWED[module]}"


CORE = [
    "frame",
    "classic",
    "classic_format",
    "classic_detect",
    "classic_answers",
    "check_report",
    *(name for name in ALLOWED if name.startswith("protocol/")),
]


@pytest.mark.parametrize("module", CORE)
def test_core_does_no_io(module: str) -> None:
    top_level = {name.split(".")[0] for name in imports_of(module)}
    assert not top_level & CORE_FORBIDDEN, f"{module} imports {top_level & CORE_FORBIDDEN}"


def test_every_package_is_installed() -> None:
    """A normal (non-editable) install ships only the packages pyproject.toml lists: one left
    out imports in the repo and fails for everyone who ran `pip install .`."""
    import tomllib  # noqa: PLC0415 (only this test reads it)

    listed = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    found = {
        ".".join(path.parent.relative_to(PACKAGE.parent).parts)
        for path in PACKAGE.rglob("__init__.py")
    }
    assert set(listed) == found


def test_a_send_imports_only_what_it_needs() -> None:
    """Start-up (issue 13): `minitalk send` must not pay for the server, the receiver's
    machine or the plain protocol. Checked by what is loaded, not by a time."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    script = "import sys, minitalk.cli; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, check=True, text=True
        ).stdout.split()
    )
    assert "minitalk.cli" in loaded
    unwanted = {
        "minitalk.server",
        "minitalk.classic",
        "minitalk.classic_link",
        "minitalk.protocol.receiver",
        "minitalk.protocol.assembly",
        "minitalk.protocol.line",
        "secrets",
        "tempfile",
        "json",
        "rich",
    }
    assert not loaded & unwanted, sorted(loaded & unwanted)


def test_no_class_over_300_lines_and_no_function_over_80() -> None:
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            limit = {ast.ClassDef: 300, ast.FunctionDef: 80}.get(type(node))
            if limit is None:
                continue
            assert isinstance(node, (ast.ClassDef, ast.FunctionDef))
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                too_long.append(f"{path.relative_to(PACKAGE)}: {node.name} ({length} lines)")
    assert not too_long, too_long


def test_the_simulator_runs_the_drivers_and_repeats_no_rule() -> None:
    """tests/simlink.py models the kernel only: it never feeds a machine or pulls its output
    itself (the shipped drivers do), so the stateful test and the fuzzers check the code users
    run, not a copy of its rules."""
    machine_calls = {
        "receive",
        "handle_timer",
        "replies",
        "next_event",
        "message_written",
        "message_not_written",
        "bulk_received",
        "bulk_done",
        "symbols_to_send",
        "sent",
        "stray",
        "peer_gone",
        "server_gone",
    }
    tree = ast.parse((PACKAGE.parent / "tests" / "simlink.py").read_text())
    called = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not called & machine_calls, called & machine_calls
    assert {"step", "start", "shut_down"} <= called  # it runs the drivers
