"""The server's PID file: written whole, never taken from a running server, removed only if ours.

Scripts wait for the file to be non-empty and then signal the PID in it, so it must appear
whole (written aside, then moved into place). As pid-file conventions go, a file that names a
running minitalk server is refused, not taken over: taking it would point scripts at the new
server, and the first one's file would vanish when the second stopped. A file left by a server
that is gone (or whose PID now belongs to another program) is stale and replaced. A server
removes the file on exit only while it still names it.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from minitalk.errors import OutputError, UsageError
from minitalk.procview import serving_mode


def running_server(path: Path) -> int | None:
    """The PID of the running minitalk server (not us) that ``path`` names, or None: no
    file, not a PID, a process gone or another program (a stale file)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    if pid in (0, os.getpid()) or serving_mode(pid) is None:
        return None
    return pid


def problem(path: Path) -> str | None:
    """Why ``path`` cannot be this server's PID file, known before the server starts; None
    if it looks usable. (A path that cannot be looked at is left to ``write``, which then
    fails with the same one-line error any unwritable path gets.)"""
    with suppress(OSError):
        if path.is_dir():
            return f"--pid-file names a directory: {path}"
    holder = running_server(path)
    if holder is not None:
        return _taken(path, holder)
    return None


def _taken(path: Path, holder: int) -> str:
    return (
        f"--pid-file {path} names minitalk server {holder}, which is running: stop it first, "
        "or give another file"
    )


def write(path: Path, pid: int) -> None:
    """Write ``pid`` to ``path`` whole, unless a running server took the file meanwhile."""
    # Written aside under a fresh name (O_EXCL: a planted symlink is never followed), then
    # linked into place if there is no file (atomic: of two servers starting at once, one
    # wins), or moved over a stale one.
    import tempfile  # noqa: PLC0415 (a send imports this module, and needs none of it)

    aside: str | None = None
    try:
        handle, aside = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        with os.fdopen(handle, "w") as file:
            file.write(f"{pid}\n")
        os.chmod(aside, 0o644)
        try:
            os.link(aside, path)
        except FileExistsError:
            holder = running_server(path)
            if holder is not None:
                raise UsageError(_taken(path, holder)) from None
            os.replace(aside, path)
    except OSError as error:
        raise OutputError(f"cannot write the PID file {path}: {error.strerror}") from None
    finally:
        if aside is not None:
            with suppress(OSError):
                os.unlink(aside)


def remove(paths: list[Path], pid: int) -> None:
    """Remove each PID file on exit, if it still names ``pid`` (another server may have
    taken a stale path since; its file is not ours to remove)."""
    for path in paths:
        with suppress(OSError):
            if path.read_text().strip() == str(pid):
                path.unlink()
