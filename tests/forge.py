"""Forge a signal's sender: what an attacker does with ``rt_sigqueueinfo``.

``kill`` and ``pidfd_send_signal`` without a siginfo let the kernel write the sender's PID
itself (``si_code`` SI_USER). ``rt_sigqueueinfo`` lets the caller write the whole siginfo; the
kernel only insists on a negative ``si_code`` (SI_QUEUE here), so ``si_pid`` can name anyone.
minitalk must take such a signal for what it is: a stranger's, never data, never answered.

This file is self-contained (ctypes and the standard library only): the stranger scripts of
tests/reliability.py run its source as it is, without needing the tests on their import path.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

SI_QUEUE = -1  # the si_code of a signal whose siginfo the sender wrote
# rt_sigqueueinfo's number differs by architecture; elsewhere forging is skipped.
RT_SIGQUEUEINFO = {"x86_64": 129, "aarch64": 240}.get(platform.machine())
_SIGINFO_SIZE = 128  # siginfo_t is 128 bytes on Linux
_libc = ctypes.CDLL(None, use_errno=True)


def can_forge() -> bool:
    """True where this module knows the architecture's siginfo layout and syscall number."""
    return RT_SIGQUEUEINFO is not None


def forge(target: int, signum: int, claimed_pid: int) -> None:
    """Send ``signum`` to process ``target`` with a siginfo that claims ``claimed_pid`` sent
    it. Layout (x86_64 and aarch64): si_signo, si_errno, si_code as three ints at offsets 0,
    4, 8; si_pid (int) at 16 and si_uid (uint) at 20."""
    if RT_SIGQUEUEINFO is None:
        raise OSError(f"cannot forge a siginfo on {platform.machine()}")
    if target <= 0:
        raise ValueError("never signal PID 0 or a process group")
    info = bytearray(_SIGINFO_SIZE)
    struct.pack_into("iii", info, 0, signum, 0, SI_QUEUE)
    struct.pack_into("iI", info, 16, claimed_pid, os.getuid())
    buffer = (ctypes.c_char * _SIGINFO_SIZE).from_buffer(info)
    if _libc.syscall(RT_SIGQUEUEINFO, target, signum, buffer) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
