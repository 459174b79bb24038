"""Download Tiny ImageNet, verify its checksum and extract it where the course looks for it.

The same as the ``dlnotes-download`` command installed with the package (see
:func:`dlnotes.data.download.main`):

    python data_scripts/download_tiny_imagenet.py [--url URL] [--md5 HEX] [--dest DIR]
"""

from __future__ import annotations

import sys

from dlnotes.commands import download

if __name__ == "__main__":
    sys.exit(download())
