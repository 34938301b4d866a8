"""minitalk: Unicode text between processes on one Linux machine over SIGUSR1/SIGUSR2.

The Python API (main thread only; see ``minitalk.api``)::

    receipt = minitalk.send(4242, "hello")           # returns once acknowledged
    for message in minitalk.serve(count=1):          # yields each message received
        print(message.pid, message.text)

Layers, each importing only those below it:
cli, api -> client/server (loops) -> protocol (sans-I/O state machines) -> frame (codec) ->
errors; transport (the only module that touches signals) sits beside protocol and knows no
frames. ``import minitalk`` imports none of them until the API is used, so that the CLI
starts fast and never loads what it does not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "2.3.0"  # the major changes with the frame format (CHANGELOG.md)
__all__ = ["Message", "Receipt", "__version__", "send", "serve"]

if TYPE_CHECKING:
    from minitalk.api import Message, Receipt, send, serve


def __getattr__(name: str) -> Any:
    """Load the API on first use (PEP 562)."""
    if name in ("Message", "Receipt", "send", "serve"):
        import minitalk.api  # noqa: PLC0415 - lazy on purpose

        return getattr(minitalk.api, name)
    raise AttributeError(f"module 'minitalk' has no attribute {name!r}")
