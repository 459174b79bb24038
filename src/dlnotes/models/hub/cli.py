"""``dlnotes-pseudo-label``: label a split of Tiny ImageNet with a pretrained ImageNet classifier.

Started by :func:`dlnotes.commands.pseudo_label` (and ``data_scripts/pseudo_label.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlnotes import data
from dlnotes.data import imagenet_classes
from dlnotes.models.hub.inference import predict_split
from dlnotes.models.hub.labels import write_manifest
from dlnotes.models.hub.loading import MOBILENET_V2_HANDLE, MOBILENET_V2_INPUT_SIZE, load_classifier
from dlnotes.models.hub.pretrained import load_pretrained_classifier
from dlnotes.runtime import paths

_CLI_DOC = """Label a split of Tiny ImageNet with a pretrained ImageNet classifier, moving no file.

Usage:
    python data_scripts/pseudo_label.py --data-dir ROOT --split test [--model HANDLE_OR_PATH]
        --out labels.csv [--threshold T] [--batch-size B]

HANDLE_OR_PATH is a TF Hub handle or a local SavedModel folder; by default the MobileNetV2 ImageNet
classifier of the source notes (offline: exported from the weights in $DLNOTES_PRETRAINED_DIR, see
dlnotes.models.hub.load_pretrained_classifier). Predictions are restricted to the dataset's own
classes; rows below the confidence threshold are left out. The CSV (path,wnid,confidence) can be
passed to dlnotes.data.read_split(..., labels_csv=...) to use the labels.
"""


def _parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(
        prog="dlnotes-pseudo-label", description=_CLI_DOC.splitlines()[0]
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset root")
    parser.add_argument("--split", choices=data.SPLITS, default="test")
    parser.add_argument(
        "--model",
        default=None,
        help=f"TF Hub handle or SavedModel folder (default: {MOBILENET_V2_HANDLE}, or the "
        f"weights in ${paths.PRETRAINED_DIR_ENV})",
    )
    parser.add_argument("--out", type=Path, required=True, help="CSV manifest to write")
    parser.add_argument(
        "--threshold", type=float, default=0.0, help="minimum confidence to keep a row"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--input-size", type=int, default=MOBILENET_V2_INPUT_SIZE)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``dlnotes-pseudo-label``; returns the exit status.

    Errors are printed on one line (exit status 1), never as a traceback; unreadable images are
    named.
    """
    args = _parser().parse_args(argv)
    root = args.data_dir if args.data_dir is not None else paths.data_dir()
    try:
        if not 0 <= args.threshold <= 1:
            raise ValueError(f"--threshold must be in [0, 1], got {args.threshold}")
        if args.batch_size < 1 or args.input_size < 1:
            raise ValueError(
                f"--batch-size and --input-size must be positive, got {args.batch_size} and "
                f"{args.input_size}"
            )
        split = data.read_split(root, args.split)
        indices = imagenet_classes.class_logit_indices(split.class_ids)
        classifier = (
            load_pretrained_classifier()
            if args.model is None
            else load_classifier(args.model, input_size=args.input_size)
        )
        labels, confidence = predict_split(
            classifier,
            split.paths,
            indices,
            batch_size=args.batch_size,
            progress=sys.stderr.isatty(),
        )
        kept = write_manifest(
            args.out, split.paths, labels, confidence, split.class_ids, threshold=args.threshold
        )
    except (OSError, ValueError, paths.PretrainedUnavailable) as error:  # bad images are named
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"labelled {len(split.paths)} {args.split} images; wrote {kept} rows with confidence "
        f"≥ {args.threshold} to {args.out}"
    )
    return 0
