"""Label a split of Tiny ImageNet with a pretrained ImageNet classifier, without moving any file.

The same as the ``dlnotes-pseudo-label`` command installed with the package
(:func:`dlnotes.models.hub.cli.main`).
"""

from __future__ import annotations

import sys

from dlnotes.commands import pseudo_label

if __name__ == "__main__":
    sys.exit(pseudo_label())
