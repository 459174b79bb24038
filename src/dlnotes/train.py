"""``python -m dlnotes.train``: the course's training command (see :mod:`dlnotes.training.cli`).

Only the standard library is imported before the command starts: the wall time it reports counts
from here, imports of Keras and the backend included, and the processes that decode the images
(which import this module as their main module) start without importing Keras. The command
starts in :func:`dlnotes.commands.train`, which checks ``KERAS_BACKEND`` before Keras is imported.
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()

if __name__ == "__main__":
    import sys

    from dlnotes.commands import train

    sys.exit(train(started=_STARTED))
