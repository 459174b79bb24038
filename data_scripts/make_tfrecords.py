"""Write one split of Tiny ImageNet as TFRecord shards of the original JPEG bytes.

The same as the ``dlnotes-make-tfrecords`` command installed with the package
(:func:`dlnotes.data.tfrecord.main`).
"""

from __future__ import annotations

import sys

from dlnotes.commands import make_tfrecords

if __name__ == "__main__":
    sys.exit(make_tfrecords())
