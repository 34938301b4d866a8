"""The README must stay true: its exit-code table is the one the code uses, and CI runs the
README's own set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from minitalk.errors import ExitCode, UnsupportedPlatformError
from minitalk.transport import require_linux

ROOT = Path(__file__).resolve().parent.parent


def test_readme_exit_code_table_matches_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    table = {int(code) for code in re.findall(r"^\| (\d+) \|", readme, flags=re.MULTILINE)}
    assert table == {int(code) for code in ExitCode}


def test_ci_runs_the_readme_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ("make test", "make demo"):
        assert command in readme
        assert re.search(rf"^{command}$", ci, flags=re.MULTILINE)


def test_other_platforms_get_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "darwin")
    with pytest.raises(UnsupportedPlatformError, match="needs Linux"):
        require_linux()
    assert UnsupportedPlatformError.exit_code == ExitCode.UNSUPPORTED
