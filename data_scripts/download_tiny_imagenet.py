"""Download Tiny ImageNet, verify its checksum and extract it where the course looks for it.

Usage:
    python data_scripts/download_tiny_imagenet.py [--url URL] [--md5 HEX] [--dest DIR]

DIR is the dataset root, the folder that will hold wnids.txt; by default $DLNOTES_DATA_DIR or
~/.cache/dlnotes/tiny-imagenet-200. A second run finds the data and does nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlnotes import download, paths, runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=download.TINY_IMAGENET_URL, help="archive address")
    parser.add_argument("--md5", default=download.TINY_IMAGENET_MD5, help="expected MD5 checksum")
    parser.add_argument(
        "--dest", type=Path, default=None, help="dataset root (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    root = args.dest if args.dest is not None else paths.data_dir()
    if download.is_prepared(root):
        print(f"Tiny ImageNet is already present at {root}; nothing to do.")
        return 0
    runtime.import_quietly("keras")
    try:
        root = download.prepare_tiny_imagenet(root, url=args.url, md5=args.md5)
    except (download.DownloadError, ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Tiny ImageNet is ready at {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
