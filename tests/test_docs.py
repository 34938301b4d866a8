"""The docs must stay true: the exit-code tables of README.md and docs/usage.md are the codes
and meanings of ``ExitCode``, the frame's numbers are the codec's constants, and CI runs the
README's own set-up commands, and docs/protocol.md's machine and verdict tables are the
code's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from minitalk.errors import ExitCode, UnsupportedPlatformError
from minitalk.frame import CRC_LEN, HEADER_LEN, MAX_PAYLOAD
from minitalk.protocol import RECEIVER_TABLE, SENDER_TABLE, Patience, SenderState, Verdict
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


def _table_rows(doc: str, heading: str) -> dict[str, list[str]]:
    """The first Markdown table after ``heading``: first cell -> the other cells."""
    text = (ROOT / doc).read_text()
    section = text[text.index(heading) :]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if set(cells[0]) <= {"-"}:
            continue
        rows[cells[0]] = cells[1:]
    return rows


def test_the_receiver_table_in_the_docs_is_the_codes() -> None:
    rows = _table_rows("docs/protocol.md", "### Receiver (server)")
    rows.pop("state")
    assert set(rows) == {state.name for state in RECEIVER_TABLE}
    for state, row in RECEIVER_TABLE.items():
        cells = rows[state.name]
        assert cells[2].startswith(row.clock.name + ":"), state
        assert cells[4] == ("yes" if row.looks else "no"), state
        assert _names(cells[5]) == {target.name for target in row.to}, state


def _names(cell: str) -> set[str]:
    return set() if cell == "-" else set(cell.split(", "))


def test_the_sender_table_in_the_docs_is_the_codes() -> None:
    rows = _table_rows("docs/protocol.md", "### Sender (client)")
    rows.pop("state")
    named = {name for cell in rows for name in cell.split(", ")}
    assert named == {state.name for state in SenderState} - {"IDLE"}
    for state, row in SENDER_TABLE.items():
        if state.name not in rows:
            continue
        patience, looks = rows[state.name][1], rows[state.name][2]
        assert patience == (row.patience.name if row.patience is not Patience.NONE else "none")
        assert looks == ("yes" if row.looks else "no"), state
        assert _names(rows[state.name][4]) == {target.name for target in row.to}, state


def test_the_verdict_table_in_the_docs_is_the_codes() -> None:
    rows = _table_rows("docs/protocol.md", "### Verdicts")
    rows.pop("verdict")
    assert {name: cells[0] for name, cells in rows.items()} == {
        verdict.name: f"`{int(verdict):08b}`" for verdict in Verdict
    }
