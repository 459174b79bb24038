"""Test-only launcher: ``dlnotes-train`` that kills itself (SIGKILL) at one point of its backup.

    python tests/kill_at.py POINT:EPOCH [dlnotes-train arguments]

POINT is one of :data:`dlnotes.training.COMMIT_POINTS` and EPOCH is 0-based: the process kills
itself when :meth:`dlnotes.training.RunBackup.reached` is called there, as ``kill -9`` at that
instant would. Nothing is imported until the command starts (the decoding processes import this
file as their main module).
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    """Run the trainer's command with ``RunBackup.reached`` replaced by a kill at ``argv[0]``."""
    import os
    import signal

    from dlnotes import commands
    from dlnotes.training import backup

    point, arguments = argv[0], argv[1:]

    def reached(self: backup.RunBackup, name: str, epoch: int) -> None:
        if f"{name}:{epoch}" == point:
            os.kill(os.getpid(), signal.SIGKILL)

    backup.RunBackup.reached = reached  # type: ignore[method-assign]
    return commands.train(arguments)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
