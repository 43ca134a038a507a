"""`asn synth`: render the embedded synthetic KINS world in the KINS 2020 release layout."""

from __future__ import annotations

import argparse
import sys

from asn.io import dumps_json

HELP = (
    "Render the embedded synthetic KINS world: KITTI-like street scenes with the 8 KINS "
    "categories occluding each other, written in the KINS 2020 layout (training/image_2, "
    "testing/image_2, training/label_2 KITTI labels, update_train_2020.json, "
    "update_test_2020.json). Same seed, same bytes, for any number of workers. "
    "--annotations-only writes KINS-scale JSON without pixels (default size 1242x375). "
    "The output folder is replaced atomically; prints a JSON summary on stdout."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `asn synth`."""
    parser.add_argument("--out", required=True, help="output dataset folder (replaced atomically)")
    parser.add_argument("--train", type=int, default=200, help="training images (default 200)")
    parser.add_argument("--test", type=int, default=50, help="test images (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--width", type=int, default=None,
                        help="image width in pixels (default 640; 1242 with --annotations-only)")
    parser.add_argument("--height", type=int, default=None,
                        help="image height in pixels (default 192; 375 with --annotations-only)")
    parser.add_argument("--annotations-only", action="store_true",
                        help="write only the JSON files (geometry, no pixels): for KINS-scale benchmarks")
    parser.add_argument("--annotators", type=int, default=0,
                        help="also write K perturbed annotator copies under annotators/ (default 0)")
    parser.add_argument("--annotator-images", type=int, default=50,
                        help="training images covered by each annotator copy (default 50)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace) -> int:
    """Generate the dataset; bad arguments raise InputError (exit 2) before anything is written."""
    from asn.data.synthetic import synthesize

    summary = synthesize(
        args.out,
        n_train=args.train,
        n_test=args.test,
        seed=args.seed,
        width=args.width,
        height=args.height,
        annotations_only=args.annotations_only,
        annotators=args.annotators,
        annotator_images=args.annotator_images,
        workers=args.workers,
        progress=not args.no_progress,
    )
    sys.stdout.write(dumps_json(summary, indent=True).decode() + "\n")
    return 0
