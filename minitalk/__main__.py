"""``python -m minitalk`` runs the same CLI as the ``minitalk`` command."""

from minitalk.cli import run

run()
