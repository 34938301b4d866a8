# The compiled inner loop (minitalk/_inner.c); optional, see transport.py.
from collections.abc import Iterable

def bounce(
    pidfd: int,
    pid: int,
    symbols: bytes,
    expect: int,
    polls: int,
    crowded: bool,
    waited: Iterable[int],
    /,
) -> tuple[int, tuple[int, int, int] | None, int]: ...
def collect(
    pidfd: int,
    pid: int,
    count: int,
    answer: int,
    polls: int,
    crowded: bool,
    waited: Iterable[int],
    /,
) -> tuple[bytes, tuple[int, int, int] | None]: ...
