"""The docs must stay true: the exit-code tables of README.md and docs/usage.md are the codes
and meanings of ``ExitCode``, the frame's numbers are the codec's constants, and CI runs the
README's own set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from minitalk.errors import ExitCode, UnsupportedPlatformError
from minitalk.frame import CRC_LEN, HEADER_LEN, MAX_PAYLOAD
from minitalk.transport import require_linux

ROOT = Path(__file__).resolve().parent.parent


def _exit_code_table(doc: str) -> list[tuple[int, str]]:
    text = (ROOT / doc).read_text()
    rows = re.findall(r"^\| (\d+) \| (.*) \|$", text, flags=re.MULTILINE)
    return [(int(code), meaning) for code, meaning in rows]


@pytest.mark.parametrize("doc", ["README.md", "docs/usage.md"])
def test_exit_code_tables_match_the_code(doc: str) -> None:
    table = _exit_code_table(doc)
    assert [code for code, _ in table] == sorted(int(code) for code in ExitCode)
    for code, meaning in table:
        assert meaning.startswith(ExitCode(code).meaning), f"{doc}: exit {code}: {meaning}"


def test_every_exit_code_has_a_meaning() -> None:
    assert all(code.meaning for code in ExitCode)


def test_frame_numbers_in_the_docs_are_the_codes() -> None:
    covered = HEADER_LEN + MAX_PAYLOAD  # what the CRC-16 covers in a full frame
    # Whitespace folded, so that rewrapping a paragraph never matters.
    texts = {
        doc: " ".join((ROOT / doc).read_text().split())
        for doc in ("README.md", "docs/protocol.md", "minitalk/frame.py")
    }
    readme = texts["README.md"]
    assert f"a {HEADER_LEN}-byte header" in readme
    assert f"payload is at most {MAX_PAYLOAD} bytes" in readme
    assert f"{CRC_LEN}-byte CRC-16" in readme
    assert f"covers at most {covered} bytes" in readme
    assert f"header: {HEADER_LEN} bytes" in texts["docs/protocol.md"]
    assert f"payload length** is at most {MAX_PAYLOAD}" in texts["docs/protocol.md"]
    for doc, text in texts.items():
        for said in re.findall(r"(\d+)[- ]byte header", text):
            assert int(said) == HEADER_LEN, f"{doc} says a {said}-byte header"
        for said in re.findall(r"full frame covers (?:\d+ \+ \d+ = )?(\d+)", text):
            assert int(said) == covered, f"{doc} says a full frame covers {said}"


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
