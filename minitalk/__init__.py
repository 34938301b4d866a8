"""minitalk: Unicode text between processes on one Linux machine over SIGUSR1/SIGUSR2.

Layers, each importing only those below it:
cli -> client/server (loops) -> protocol (sans-I/O state machines) -> frame (codec) -> errors;
transport (the only module that touches signals) sits beside protocol and knows no frames.
"""

__version__ = "1.0.0"
