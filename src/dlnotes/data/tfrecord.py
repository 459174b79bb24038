"""TFRecord shards of Tiny ImageNet: the original JPEG bytes, written atomically, read in parallel.

What a record holds and how a set of shards is named is :mod:`dlnotes.data.tfrecord_format`
(its public names are re-exported here); this module writes sets (:func:`write_shards`, the
``dlnotes-make-tfrecords`` command :func:`main`) and reads them (:func:`read_shards`,
:func:`image_label_dataset`, :func:`shard_arrays`).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from dlnotes import runtime
from dlnotes.data import decoding, tiny_imagenet
from dlnotes.data.tfrecord_format import (
    COMPRESSIONS,
    FEATURES,
    SUFFIXES,
    check_compression,
    compression_of,
    parse_example,
    serialize_example,
    shard_files,
    shard_path,
    shards_of,
)
from dlnotes.runtime import paths, storage

if TYPE_CHECKING:
    import tensorflow as tf
else:
    tf = runtime.import_quietly("tensorflow")

__all__ = [
    "COMPRESSIONS",
    "FEATURES",
    "SUFFIXES",
    "image_label_dataset",
    "main",
    "parse_example",
    "read_shards",
    "serialize_example",
    "shard_arrays",
    "shard_files",
    "write_shards",
]


def write_shards(
    paths: Sequence[str],
    labels: Sequence[int] | np.ndarray | None,
    class_ids: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    prefix: str,
    num_shards: int,
    compression: str = "",
    progress: bool = True,
) -> list[Path]:
    """Write images into ``num_shards`` TFRecord files ``{prefix}-00000-of-000NN.tfrecord[.gz]``.

    Every image is verified first (:func:`dlnotes.data.verify_images`: decoded completely, of the
    format its name says, not a decompression bomb), so a broken file stops the job before
    anything is written. One writer at a time may use ``out_dir``: it holds the folder's lock
    (:func:`dlnotes.runtime.storage.locked_folder`) from the deletion of partial files to the
    last rename, and a second writer is refused at once. The shards are written under temporary
    names (``.partial``, :func:`dlnotes.runtime.storage.atomic_files`) and renamed only once all
    are complete, after the earlier shards of ``prefix`` (any count, any compression) and partial
    files left by a killed run have been deleted: the folder ends up with exactly one set, and an
    interrupted run never leaves a set that looks complete (:func:`shard_files` refuses a
    mixture). A write that fails (e.g. a full disk) leaves the earlier set as it was.

    Args:
        paths: Image files.
        labels: Class indices, or None for an unlabelled split.
        class_ids: The dataset's class ids (``wnids.txt`` order).
        out_dir: Output folder (created if needed).
        prefix: File name prefix, e.g. ``"train"``.
        num_shards: Number of files (1 ≤ num_shards ≤ number of images).
        compression: ``""``, ``"GZIP"`` or ``"ZLIB"``.
        progress: Show a progress bar.

    Returns:
        The shard paths, in order.

    Raises:
        ValueError: For bad arguments or unreadable images.
        dlnotes.runtime.storage.FolderInUse: If another writer is using ``out_dir``.
        OSError: If a shard cannot be written (e.g. a full disk), naming it.
    """
    compression = check_compression(compression)
    if not paths:
        raise ValueError("no images to write")
    if not 1 <= num_shards <= len(paths):
        raise ValueError(f"num_shards must be between 1 and {len(paths)}, got {num_shards}")
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"got {len(labels)} labels for {len(paths)} paths")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file, not a folder for the shards")
    decoding.verify_images(paths)
    records = _records_to_write(paths, labels, class_ids)
    with storage.locked_folder(out_dir, what="writer of TFRecord shards"):
        return _replace_set(out_dir, prefix, records, num_shards, compression, progress)


def _replace_set(
    out_dir: Path,
    prefix: str,
    records: Sequence[tuple[str, int, str]],
    num_shards: int,
    compression: str,
    progress: bool,
) -> list[Path]:
    """Write the new set of ``prefix`` and let it replace the old one (``out_dir`` is locked)."""
    for stale in shards_of(out_dir, prefix, partial=True):  # left by a killed run
        stale.unlink()
    finals = [
        shard_path(out_dir, prefix, shard, num_shards, compression) for shard in range(num_shards)
    ]
    options = tf.io.TFRecordOptions(compression_type=compression)
    bar = tqdm(total=len(records), desc=f"writing {prefix}", unit="img", disable=not progress)
    with bar, storage.atomic_files(finals) as partials:
        for partial, shard in zip(
            partials, np.array_split(np.arange(len(records)), num_shards), strict=True
        ):
            _write_shard(partial, options, (records[i] for i in shard), bar)
        # The new set replaces every earlier shard of this prefix, whatever its count.
        for old in shards_of(out_dir, prefix):
            old.unlink()
    return finals


def _records_to_write(
    paths: Sequence[str], labels: Sequence[int] | np.ndarray | None, class_ids: Sequence[str]
) -> list[tuple[str, int, str]]:
    """``(path, label, wnid)`` of each image; ``(path, -1, "")`` for an unlabelled split."""
    if labels is None:
        return [(str(path), -1, "") for path in paths]
    return [
        (str(path), int(label), class_ids[int(label)])
        for path, label in zip(paths, labels, strict=True)
    ]


def _write_shard(
    partial: Path,
    options: tf.io.TFRecordOptions,
    records: Iterable[tuple[str, int, str]],
    bar: Any,
) -> None:
    """Write one shard file; TensorFlow's errors become an OSError naming the file."""
    try:
        with tf.io.TFRecordWriter(str(partial), options) as writer:
            for path, label, wnid in records:
                writer.write(serialize_example(Path(path).read_bytes(), label, wnid))
                bar.update(1)
    except tf.errors.OpError as error:  # e.g. ResourceExhaustedError for a full disk
        failure = OSError(
            f"could not write the shard {partial} ({error.message}); the earlier shards "
            "in the folder are unchanged: make room and run the same command again"
        )
        failure.errno = errno.ENOSPC if "No space left" in error.message else None
        raise failure from None


def _records(
    files: Sequence[str | os.PathLike[str]],
    compression: str,
    cycle_length: int,
    deterministic: bool,
) -> tf.data.Dataset:
    """The serialised records of ``files``, read ``cycle_length`` files at a time."""
    return tf.data.Dataset.from_tensor_slices([str(f) for f in files]).interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
        cycle_length=min(cycle_length, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )


def read_shards(
    files: Sequence[str | os.PathLike[str]],
    *,
    compression: str = "",
    cycle_length: int = 4,
    deterministic: bool = True,
) -> tf.data.Dataset:
    """Read TFRecord shards in parallel (``interleave``) and parse the examples.

    Args:
        files: Shard paths.
        compression: The compression the shards were written with.
        cycle_length: Shards read concurrently.
        deterministic: Keep a reproducible order (False is faster for training).

    Returns:
        A dataset of ``{"image", "label", "wnid"}`` dictionaries.

    Raises:
        ValueError: For no files, a missing file or an unknown compression.
    """
    compression = check_compression(compression)
    if not files:
        raise ValueError("no TFRecord files given")
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise ValueError(f"TFRecord file(s) not found: {missing}")
    dataset = _records(files, compression, cycle_length, deterministic)
    return dataset.map(
        parse_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic
    )


def image_label_dataset(
    files: Sequence[str | os.PathLike[str]], *, compression: str = "", deterministic: bool = False
) -> tf.data.Dataset:
    """Read shards into ``(uint8 image, int32 label)`` pairs, ready for
    :func:`dlnotes.data.pipeline.prepare_training` or evaluation.

    Args:
        files: Shard paths.
        compression: The compression the shards were written with.
        deterministic: Keep a reproducible order.

    Returns:
        The decoded dataset.
    """
    from dlnotes.data import pipeline

    compression = check_compression(compression)
    if not files:
        raise ValueError("no TFRecord files given")

    def decode(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        record = parse_example(serialized)
        return pipeline.decode_image(record["image"]), tf.cast(record["label"], tf.int32)

    records = _records(files, compression, 4, deterministic)
    return records.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def shard_arrays(
    out_dir: str | os.PathLike[str],
    prefix: str,
    class_ids: Sequence[str],
    *,
    per_class: int | None = None,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a split's shards into memory: the images of some classes, at most ``per_class`` each.

    The shards are read one after the other, in order (records keep the order they were written
    in), and decoded with TensorFlow's decoder; the records of other classes are skipped. This is
    how the trainer reads TFRecord shards instead of JPEG files (``--tfrecords``).

    Args:
        out_dir: Folder of the shards (one consistent set, see :func:`shard_files`).
        prefix: The split's prefix, e.g. ``"train"``.
        class_ids: The classes to keep; a record's label becomes its class's index here.
        per_class: Keep at most this many images of each class (None: all).
        batch_size: Records decoded per step.

    Returns:
        ``(images, labels)``: uint8 ``(N, H, W, 3)`` and int64 ``(N,)``.

    Raises:
        FileNotFoundError: If the folder holds no shards of ``prefix``.
        ValueError: For an inconsistent shard set, a record that cannot be decoded (naming its
            shard), or if no record belongs to ``class_ids``.
    """
    files = shard_files(out_dir, prefix)
    if not files:
        raise FileNotFoundError(
            f"no {prefix!r} shards in {out_dir}: write them with dlnotes-make-tfrecords"
        )
    index = {wnid: i for i, wnid in enumerate(class_ids)}
    counts = dict.fromkeys(class_ids, 0)
    kept_images, kept_labels = [], []
    for file in files:  # one after the other, so that a bad record's shard can be named
        for image, wnid in _decoded_records(file, compression_of(files[0]), batch_size):
            if wnid in index and (per_class is None or counts[wnid] < per_class):
                counts[wnid] += 1
                kept_images.append(image)
                kept_labels.append(index[wnid])
    if not kept_images:
        raise ValueError(f"the {prefix} shards in {out_dir} hold no image of the classes asked for")
    return np.stack(kept_images), np.asarray(kept_labels, dtype=np.int64)


def _decoded_records(file: Path, compression: str, batch_size: int) -> Iterator[tuple[Any, str]]:
    """``(uint8 image, wnid)`` of each record of one shard, in order.

    Raises:
        ValueError: Naming the shard, for a record that cannot be read or decoded.
    """
    from dlnotes.data import pipeline

    def decode(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        record = parse_example(serialized)
        return pipeline.decode_image(record["image"]), record["wnid"]

    records = tf.data.TFRecordDataset(str(file), compression_type=compression)
    batches = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    try:
        for images, wnids in batches.as_numpy_iterator():
            yield from zip(images, (w.decode() for w in wnids), strict=True)
    except tf.errors.OpError as error:
        raise ValueError(
            f"the shard {file} holds a record that cannot be read or decoded "
            f"({error.message.strip().splitlines()[0]}): write the shards again with "
            "dlnotes-make-tfrecords, which checks every image and names the bad files"
        ) from None


_CLI_DOC = """Write one split of Tiny ImageNet as TFRecord shards of the original JPEG bytes.

Usage:
    python data_scripts/make_tfrecords.py --data-dir ROOT --out-dir OUT --split {train,val,test}
        --num-shards N [--compression GZIP]
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``dlnotes-make-tfrecords``; returns the exit status.

    Errors are printed on one line (exit status 1), never as a traceback.
    """
    parser = argparse.ArgumentParser(
        prog="dlnotes-make-tfrecords", description=_CLI_DOC.splitlines()[0]
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="dataset root (default: DLNOTES_DATA_DIR or the cache)",
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for the shards")
    parser.add_argument("--split", choices=tiny_imagenet.SPLITS, required=True)
    parser.add_argument("--num-shards", type=int, required=True)
    parser.add_argument("--compression", choices=["GZIP", "ZLIB"], default="")
    args = parser.parse_args(argv)
    root = args.data_dir if args.data_dir is not None else paths.data_dir()
    try:
        files, labels, class_ids = tiny_imagenet.read_split(root, args.split)
        shards = write_shards(
            files,
            labels,
            class_ids,
            args.out_dir,
            prefix=args.split,
            num_shards=args.num_shards,
            compression=args.compression,
            progress=sys.stderr.isatty(),
        )
    except (OSError, ValueError) as error:  # OSError: e.g. --out-dir is a file, a full disk
        print(f"error: {error}", file=sys.stderr)
        return 1
    mib = sum(s.stat().st_size for s in shards) / 2**20
    print(f"wrote {len(files)} {args.split} images into {len(shards)} shard(s), {mib:.1f} MiB")
    return 0
