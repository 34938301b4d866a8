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
def classic_collect(
    pidfd: int,
    pid: int,
    statfd: int,
    count: int,
    answer: int,
    zero: int,
    in_byte: int,
    has_one: bool,
    polls: int,
    crowded: bool,
    waited: Iterable[int],
    /,
) -> tuple[bytes, bytes, int, tuple[int, int, int] | None, float]: ...
