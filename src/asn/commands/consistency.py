"""`asn consistency`: mean mask IoU between annotation sets of the same images (Table 3)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

HELP = (
    "Annotator consistency (paper Table 3): given two or more COCO files over the same images whose "
    "annotations share ids (one per annotator), compute the mean mask IoU for every pair of files "
    "and against the majority-vote set (pixels marked by more than half of the files). Writes "
    "table3.md, table3.csv, table3.json and majority_vote.json under --out."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", type=Path, nargs="+", help="annotation files (COCO, same images and annotation ids)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--images-limit", type=int, default=None, metavar="N", help="use only the first N images (by id)")
    parser.add_argument("--source", default="annotation files given on the command line",
                        help="data source text for the table header (e.g. 'synthetic annotators')")


def run(args: argparse.Namespace) -> int:
    from asn.errors import InputError
    from asn.stats.consistency import consistency_statistics, write_consistency_outputs

    if len(args.files) < 2:
        raise InputError(args.files[0], "need at least two annotation files")
    if args.images_limit is not None and args.images_limit < 1:
        raise InputError("asn consistency", "--images-limit must be >= 1")
    result = consistency_statistics(args.files, images_limit=args.images_limit)
    parts = ["asn", "consistency", *map(str, args.files), "--out", str(args.out)]
    if args.images_limit is not None:
        parts += ["--images-limit", str(args.images_limit)]
    write_consistency_outputs(args.out, result, args.source, " ".join(shlex.quote(p) for p in parts))
    print(f"asn consistency: {len(result['names'])} sets, {result['n_images']} images, "
          f"{result['n_instances']} instances -> {args.out}", file=sys.stderr)
    return 0
