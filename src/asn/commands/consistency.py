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
    "table3.md, table3.csv, table3.json and majority_vote.json under --out. With --stage2 (the same "
    "annotators' files of the second annotation stage) the table has the paper's layout: a stage-2 x "
    "stage-1 matrix of the annotators and their majority votes; with --reference (the released "
    "annotation) an extra table scores each stage against it."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", type=Path, nargs="+", help="annotation files (COCO, same images and annotation ids)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--images-limit", type=int, default=None, metavar="N", help="use only the first N images (by id)")
    parser.add_argument("--stage2", type=Path, nargs="+", default=None, metavar="FILE",
                        help="stage-2 files of the same annotators, in the same order (two-stage table)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="released annotation (COCO) holding every annotation id: entries become IoU with it")
    parser.add_argument("--source", default="annotation files given on the command line",
                        help="data source text for the table header (e.g. 'synthetic annotators')")


def run(args: argparse.Namespace) -> int:
    from asn.errors import InputError
    from asn.stats.consistency import consistency_statistics, two_stage_statistics, write_consistency_outputs

    if len(args.files) < 2:
        raise InputError(args.files[0], "need at least two annotation files")
    if args.images_limit is not None and args.images_limit < 1:
        raise InputError("asn consistency", "--images-limit must be >= 1")
    if args.stage2:
        result = two_stage_statistics(args.files, args.stage2, args.reference, images_limit=args.images_limit)
    else:
        result = consistency_statistics(args.files, images_limit=args.images_limit, reference=args.reference)
    parts = ["asn", "consistency", *map(str, args.files), "--out", str(args.out)]
    if args.stage2:
        parts += ["--stage2", *map(str, args.stage2)]
    if args.reference is not None:
        parts += ["--reference", str(args.reference)]
    if args.images_limit is not None:
        parts += ["--images-limit", str(args.images_limit)]
    write_consistency_outputs(args.out, result, args.source, " ".join(shlex.quote(p) for p in parts))
    print(f"asn consistency: {len(result['names'])} sets, {result['n_images']} images, "
          f"{result['n_instances']} instances -> {args.out}", file=sys.stderr)
    return 0
