"""What a TFRecord shard of Tiny ImageNet holds, and how a complete set of shards is named.

The contract between the writer and the readers of :mod:`dlnotes.data.tfrecord`. Each record is a
``tf.train.Example`` with three features:

* ``image`` — the original encoded JPEG bytes (≈ 2 KB per image, versus 48 KB as float32);
* ``label`` — int64 class index into ``wnids.txt``; −1 for unlabelled (test) images;
* ``wnid`` — the class id as bytes; empty for unlabelled images.

A split is written as one set of files ``{prefix}-00000-of-000NN.tfrecord[.gz|.zz]``; files being
written carry the suffix ``.partial`` (:func:`dlnotes.runtime.storage.atomic_files`) and are no
part of a set.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from dlnotes import runtime

if TYPE_CHECKING:
    import tensorflow as tf
else:
    tf = runtime.import_quietly("tensorflow")

COMPRESSIONS = ("", "GZIP", "ZLIB")
SUFFIXES = {"": ".tfrecord", "GZIP": ".tfrecord.gz", "ZLIB": ".tfrecord.zz"}
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "wnid": tf.io.FixedLenFeature([], tf.string),
}


def serialize_example(image_bytes: bytes, label: int, wnid: str) -> bytes:
    """Serialise one image as a ``tf.train.Example``.

    Args:
        image_bytes: The encoded image file, unchanged.
        label: Class index, or −1 for an unlabelled image.
        wnid: Class id, or ``""`` for an unlabelled image.

    Returns:
        The serialised protocol buffer.
    """
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        "wnid": tf.train.Feature(bytes_list=tf.train.BytesList(value=[wnid.encode()])),
    }
    serialized: bytes = tf.train.Example(
        features=tf.train.Features(feature=feature)
    ).SerializeToString()
    return serialized


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parse one serialised example into ``{"image": bytes, "label": int64, "wnid": bytes}``."""
    parsed: dict[str, tf.Tensor] = tf.io.parse_single_example(serialized, FEATURES)
    return parsed


def check_compression(compression: str) -> str:
    """The compression's canonical name: ``""``, ``"GZIP"`` or ``"ZLIB"``.

    Raises:
        ValueError: For another name, naming it.
    """
    compression = (compression or "").upper()
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    return compression


def shard_path(out_dir: Path, prefix: str, shard: int, num_shards: int, compression: str) -> Path:
    """The file of shard number ``shard`` of a set of ``num_shards``."""
    return out_dir / f"{prefix}-{shard:05d}-of-{num_shards:05d}{SUFFIXES[compression]}"


def compression_of(shard: Path) -> str:
    """The compression a shard was written with, from its suffix."""
    return next(c for c, suffix in SUFFIXES.items() if shard.name.endswith(suffix))


def _shard_name(prefix: str) -> re.Pattern[str]:
    return re.compile(
        rf"{re.escape(prefix)}-(\d{{5}})-of-(\d{{5}})(\.tfrecord(?:\.gz|\.zz)?)(\.partial)?"
    )


def shards_of(out_dir: Path, prefix: str, *, partial: bool = False) -> list[Path]:
    """The shard files of ``prefix`` in ``out_dir``, of any set: complete ones, or the partial ones.

    Args:
        out_dir: Folder of the shards.
        prefix: File name prefix, e.g. ``"train"``.
        partial: List the ``.partial`` files (being written, or left by a killed writer) instead.

    Returns:
        The files, sorted.
    """
    pattern = _shard_name(prefix)
    found = []
    for path in out_dir.glob(f"{glob.escape(prefix)}-*"):
        match = pattern.fullmatch(path.name)
        if match is not None and bool(match.group(4)) == partial:
            found.append(path)
    return sorted(found)


def shard_files(out_dir: str | os.PathLike[str], prefix: str) -> list[Path]:
    """List the complete shard set of ``prefix`` in ``out_dir`` (partial files are ignored).

    Args:
        out_dir: Folder of the shards.
        prefix: File name prefix, e.g. ``"train"``.

    Returns:
        ``{prefix}-00000-of-000NN…`` to ``{prefix}-000NN-1-of-000NN…``, in order; empty if there
        are none.

    Raises:
        ValueError: If the folder holds shards of several sets (other counts or compressions)
            or an incomplete set, e.g. left by an interrupted or older run: reading them would
            give a wrong dataset. Running the writer again fixes it.
    """
    pattern = _shard_name(prefix)
    files = shards_of(Path(out_dir), prefix)
    sets: dict[tuple[str, str], list[int]] = {}
    for path in files:
        match = pattern.fullmatch(path.name)
        assert match is not None
        sets.setdefault((match.group(2), match.group(3)), []).append(int(match.group(1)))
    if len(sets) > 1:
        described = ", ".join(f"{len(v)} of {int(n)} ({suffix})" for (n, suffix), v in sets.items())
        raise ValueError(
            f"{out_dir} holds more than one set of {prefix!r} shards ({described}); write them "
            "again to keep one"
        )
    for (count, suffix), numbers in sets.items():
        if sorted(numbers) != list(range(int(count))):
            raise ValueError(
                f"{out_dir} holds {len(numbers)} of the {int(count)} {prefix!r} shards "
                f"({suffix}): the set is incomplete; write it again"
            )
    return files
