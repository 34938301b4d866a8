"""Imports flow one way: cli -> client/server -> protocol -> frame -> errors (and, for the
plain protocol, cli -> classic_link -> classic -> errors). Inside the protocol package:
receiver -> line/assembly -> verdicts -> limits, and sender -> verdicts -> limits.

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
        "protocol.receiver",
        "protocol.sender",
        "protocol.verdicts",
    },
    "protocol/limits": set(),
    "protocol/verdicts": {"frame"},
    "protocol/assembly": {"frame", "protocol.limits", "protocol.verdicts"},
    "protocol/line": {"protocol.limits", "protocol.verdicts"},
    "protocol/receiver": {
        "errors",
        "frame",
        "protocol.assembly",
        "protocol.limits",
        "protocol.line",
        "protocol.verdicts",
    },
    "protocol/sender": {"errors", "frame", "protocol.limits", "protocol.verdicts"},
    "transport": {"errors"},
    "classic": {"errors"},
    "classic_link": {"errors", "classic", "transport"},
    "client": {"errors", "frame", "protocol", "transport"},
    "server": {"errors", "frame", "protocol", "transport"},
    "cli": {
        "__init__",
        "api",
        "errors",
        "frame",
        "protocol",
        "client",
        "server",
        "progress",
        "classic",
        "classic_link",
    },
    "progress": set(),
    "api": {"errors", "frame", "protocol", "client", "server", "transport"},
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


CORE = ["frame", "classic", *(name for name in ALLOWED if name.startswith("protocol/"))]


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
