"""Write one split of Tiny ImageNet as TFRecord shards of the original JPEG bytes.

Usage:
    python data_scripts/make_tfrecords.py --data-dir ROOT --out-dir OUT --split {train,val,test}
        --num-shards N [--compression GZIP]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlnotes import data, paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="dataset root (default: DLNOTES_DATA_DIR or the cache)",
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for the shards")
    parser.add_argument("--split", choices=data.SPLITS, required=True)
    parser.add_argument("--num-shards", type=int, required=True)
    parser.add_argument("--compression", choices=["GZIP", "ZLIB"], default="")
    args = parser.parse_args(argv)
    root = args.data_dir if args.data_dir is not None else paths.data_dir()
    try:
        files, labels, class_ids = data.read_split(root, args.split)
        from dlnotes import tfrecord

        shards = tfrecord.write_shards(
            files,
            labels,
            class_ids,
            args.out_dir,
            prefix=args.split,
            num_shards=args.num_shards,
            compression=args.compression,
        )
    except (OSError, ValueError) as error:  # OSError: e.g. --out-dir is a file, a full disk
        print(f"error: {error}", file=sys.stderr)
        return 1
    mib = sum(s.stat().st_size for s in shards) / 2**20
    print(f"wrote {len(files)} {args.split} images into {len(shards)} shard(s), {mib:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
