"""Images into memory: checking, decoding into one uint8 array, and pixel statistics.

No TensorFlow here: the training command decodes with Pillow on any Keras backend.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

MAX_IMAGE_PIXELS = 1 << 24
"""The largest image the course's tools decode: 4096 × 4096 pixels (Tiny ImageNet's are 64 × 64).

A larger one is refused before it is decoded: a few bytes of header can declare billions of
pixels (a "decompression bomb"), and decoding them would exhaust the memory."""

DECODABLE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP"})
"""The formats (Pillow's names) that TensorFlow's ``tf.io.decode_image`` reads."""

SUFFIX_FORMATS = {".jpeg": "JPEG", ".jpg": "JPEG", ".png": "PNG"}
"""The format a file of each image suffix of the dataset must hold."""


def _bomb(path: object, detail: str) -> str:
    return f"{path}: refused as a possible decompression bomb: {detail}"


@contextlib.contextmanager
def open_image(path: str | os.PathLike[str], *, check_format: bool = False) -> Iterator[Any]:
    """Open an image with Pillow after checking its header; decompression bombs are refused.

    Only the header is read here: the pixels are decoded when the caller uses them.

    Args:
        path: The image file.
        check_format: Also require a format TensorFlow decodes (:data:`DECODABLE_FORMATS`) that
            matches the file's suffix (:data:`SUFFIX_FORMATS`; e.g. a TIFF named ``.JPEG`` is
            refused).

    Yields:
        The opened ``PIL.Image.Image``.

    Raises:
        ValueError: Naming the file, for more than :data:`MAX_IMAGE_PIXELS` pixels or (with
            ``check_format``) the wrong format.
        OSError: If the file cannot be read or is not an image (Pillow's message, with the path).
    """
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():  # the size is checked below, against a lower limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ValueError(_bomb(path, str(error))) from None
    with image:
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise ValueError(
                _bomb(
                    path,
                    f"it declares {width:,} × {height:,} pixels, more than the "
                    f"{MAX_IMAGE_PIXELS:,} the course's tools decode",
                )
            )
        if check_format:
            expected = SUFFIX_FORMATS.get(os.path.splitext(os.fspath(path))[1].lower())
            if image.format not in DECODABLE_FORMATS or expected not in (None, image.format):
                wanted = expected or " or ".join(sorted(DECODABLE_FORMATS))
                raise ValueError(
                    f"{path}: holds a {image.format} image, not {wanted} as its name says: "
                    "convert it or remove it"
                    if expected
                    else f"{path}: holds a {image.format} image; TensorFlow reads {wanted}"
                )
        yield image


def verify_images(paths: Sequence[str | os.PathLike[str]], *, decode: bool = True) -> None:
    """Check every image, and report those that cannot be read.

    tf.data reports a broken JPEG deep inside a pipeline, without its file name; run this once on
    a new dataset (the TFRecord writer does it for every file) to get a message that names the
    files. Each file must hold a format TensorFlow decodes, the one its suffix names (a TIFF
    named ``.JPEG`` is refused), and at most :data:`MAX_IMAGE_PIXELS` pixels.

    Args:
        paths: Image files.
        decode: Decode every image completely; False checks only the headers (format and size),
            which is much faster.

    Raises:
        ValueError: Naming every file that is missing, truncated, not an image, of the wrong
            format or too large.
    """
    from PIL import UnidentifiedImageError

    problems = []
    for path in paths:
        try:
            with open_image(path, check_format=True) as image:
                if decode:
                    image.load()
        except ValueError as error:
            problems.append(str(error))
        except (OSError, UnidentifiedImageError, SyntaxError) as error:
            problems.append(f"{path}: {error}")
    if problems:
        listed = "\n  ".join(problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"{len(problems)} unreadable image file(s):\n  {listed}{more}")


def _decode_into(images: np.ndarray, paths: Sequence[str | os.PathLike[str]], size: int) -> None:
    from PIL import Image

    for index, path in enumerate(paths):
        try:
            with open_image(path) as opened:
                image = opened.convert("RGB")
                if image.size != (size, size):
                    image = image.resize((size, size), Image.Resampling.BILINEAR)
                images[index] = np.asarray(image)
        except (OSError, SyntaxError) as error:
            raise ValueError(f"cannot decode {path}: {error}") from error


def _decode_chunk(paths: Sequence[str], size: int) -> np.ndarray:
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    _decode_into(images, paths, size)
    return images


def load_images(
    paths: Sequence[str | os.PathLike[str]],
    *,
    image_size: int = 64,
    progress: bool = False,
    workers: int = 1,
) -> np.ndarray:
    """Decode images into one uint8 array ``(N, image_size, image_size, 3)``, without TensorFlow.

    Grayscale files are converted to RGB; other sizes are resized. The whole Tiny ImageNet
    training split takes 1.2 GB this way. Used by the training command on any Keras backend.

    Decoding a 64×64 JPEG with Pillow costs about 0.2 ms of one core, mostly Python overhead that
    holds the GIL, so threads do not help; ``workers > 1`` decodes chunks in that many fresh
    processes (``spawn``, safe after TensorFlow or JAX have started threads), which die with this
    one however it dies and leave Ctrl-C to it. Images declaring more than
    :data:`MAX_IMAGE_PIXELS` pixels are refused before they are decoded.

    Args:
        paths: Image files.
        image_size: Height and width of the result.
        progress: Show a progress bar.
        workers: Processes to decode with; 1 decodes in this process.

    Returns:
        The array.

    Raises:
        ValueError: If ``paths`` is empty, ``workers`` < 1 or an image cannot be read or is a
            decompression bomb (naming the file).
    """
    if len(paths) == 0:
        raise ValueError("load_images needs at least one path, got none")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    names = [str(path) for path in paths]
    images = np.empty((len(names), image_size, image_size, 3), dtype=np.uint8)
    if workers == 1 or len(names) <= _CHUNK:
        _decode_here(images, names, image_size, progress)
    else:
        _decode_in_processes(images, names, image_size, progress, workers)
    return images


_CHUNK = 2048
"""Images decoded per step (and per task of a decoding process)."""


def _decode_here(images: np.ndarray, paths: list[str], size: int, progress: bool) -> None:
    """Decode ``paths`` into ``images`` in this process."""
    from tqdm import tqdm

    for start in tqdm(
        range(0, len(paths), _CHUNK), desc="decoding", unit="chunk", disable=not progress
    ):
        _decode_into(images[start : start + _CHUNK], paths[start : start + _CHUNK], size)


def _decode_in_processes(
    images: np.ndarray, paths: list[str], size: int, progress: bool, workers: int
) -> None:
    """Decode ``paths`` into ``images`` in chunks, in up to ``workers`` fresh processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    starts = range(0, len(paths), _CHUNK)
    pool = ProcessPoolExecutor(
        min(workers, len(starts)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_started,
        initargs=(os.getpid(),),
    )
    try:
        decoded = pool.map(
            _decode_chunk, [paths[s : s + _CHUNK] for s in starts], [size] * len(starts)
        )
        for start, block in zip(
            starts,
            tqdm(decoded, total=len(starts), desc="decoding", unit="chunk", disable=not progress),
            strict=True,
        ):
            images[start : start + len(block)] = block
    except BaseException:  # an error, Ctrl-C: the chunks not started yet are not decoded
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _worker_started(parent: int) -> None:
    """Initializer of a decoding process: die with the parent, and leave Ctrl-C to it.

    A parent killed by ``kill -9`` or the out-of-memory killer cannot stop its workers, and a
    worker blocked on a full result pipe would live on, keeping multiprocessing's resource
    tracker alive with it. On Linux the kernel sends the worker SIGKILL when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread checks the parent's pid once a
    second. Ctrl-C reaches the whole process group: the workers ignore it, and the parent stops
    the pool.

    Args:
        parent: The pid of the process that started the pool.
    """
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
            return
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def pixel_stats(
    images: np.ndarray | Iterable[np.ndarray], *, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 images, exactly, in bounded memory.

    Each channel's 256-bin histogram is counted (``np.bincount``), ``chunk`` images at a time;
    the sum and the sum of squares follow exactly from the histogram, so the extra memory is one
    chunk's channel (16 MB for 4,096 images of 64×64) instead of a float copy of the whole array
    (``images.reshape(-1, 3).std(axis=0)`` needs ≈ 9 GiB more for the Tiny ImageNet training
    split), and no pixel is converted to a wider type. The images can also come as an iterable
    of uint8 batches (e.g. from a ``tf.data`` pipeline): the trainer and the input-pipeline
    chapter share this code.

    Args:
        images: ``(N, H, W, C)`` uint8 array, or an iterable of such batches.
        chunk: Images per counting step (≥ 1).

    Returns:
        ``(mean, std)``, two float64 arrays of C entries, in pixel units [0, 255].

    Raises:
        ValueError: If there are no images, a batch is not a 4-D uint8 array, the batches
            disagree on the channels, or ``chunk`` < 1.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    batches = [images] if isinstance(images, np.ndarray) else images
    histogram: np.ndarray | None = None
    for batch in batches:
        if batch.dtype != np.uint8 or batch.ndim != 4 or len(batch) == 0:
            raise ValueError(
                f"expected a non-empty (N, H, W, C) uint8 array, got {batch.dtype} {batch.shape}"
            )
        channels = batch.shape[-1]
        if histogram is None:
            histogram = np.zeros((channels, 256), dtype=np.int64)
        elif histogram.shape[0] != channels:
            raise ValueError(
                f"batches disagree on the channels: {histogram.shape[0]} then {channels}"
            )
        for start in range(0, len(batch), chunk):
            block = batch[start : start + chunk].reshape(-1, channels)
            for channel in range(channels):
                histogram[channel] += np.bincount(block[:, channel], minlength=256)
    if histogram is None:
        raise ValueError("pixel_stats needs at least one image, got none")
    values = np.arange(256, dtype=np.int64)
    count = histogram.sum(axis=1)
    mean = (histogram @ values) / count
    variance = (histogram @ values**2) / count - mean**2
    return mean, np.sqrt(np.maximum(variance, 0.0))
