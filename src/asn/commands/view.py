"""`asn view`: a self-contained static site of a split's images, ground truth and predictions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asn.errors import InputError

HELP = """Write a static viewer (OUT/index.html + viewer.js + data.js + images/; no server-side
code, no network, opens from file:// or any static HTTP server, e.g. `python -m http.server
--bind 127.0.0.1 --directory OUT`). Per image: the picture with toggles for the ground truth and
the predictions of a chosen run (--run, repeatable: an evaluation folder with predictions.json
and metrics.json, or a predictions file; NAME=PATH names it), amodal outline, inmodal fill, order
digits (KINS' ico_id for the ground truth, the order rebuilt from the masks for predictions, see
asn.eval.order), a class filter, a score threshold, and the per-image numbers (instances,
detections, order pairs matched and right). With --figures N also N PNGs of ground truth beside
the first run (overlay with order digits above the layered view, the paper's Figures 3 and 1(c))
in --figures-out. Order settings come from params.yaml eval.order_*."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameters file (default: %(default)s)")
    parser.add_argument("--gt", type=Path, required=True, help="folder with <split>_amodal.json / <split>_inmodal.json")
    parser.add_argument("--split", default="test", help="split name (default: %(default)s)")
    parser.add_argument("--images", type=Path, required=True, help="folder with the split's images")
    parser.add_argument("--run", dest="runs", action="append", default=[], metavar="[NAME=]PATH",
                        help="an evaluation folder (predictions.json, metrics.json) or a predictions file (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="the site's folder (replaced whole)")
    parser.add_argument("--min-score", type=float, default=0.05,
                        help="detections below this are left out of the site (default: %(default)s)")
    parser.add_argument("--score", type=float, default=0.5, help="the viewer's starting score threshold (default: %(default)s)")
    parser.add_argument("--max-images", type=int, help="only the first N images of the split (by file name)")
    parser.add_argument("--figures", type=int, default=0, help="write scene figures of the first N images (default: 0)")
    parser.add_argument("--figures-out", type=Path, help="folder of the figures (default: OUT/figures)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set eval.order_min_pixels=20 (repeatable)")


def run(args: argparse.Namespace) -> int:
    from asn.commands.evaluate import eval_options
    from asn.config import load_params
    from asn.viewer import build_site, resolve_run

    params = load_params(args.params, args.overrides)
    options = eval_options(params, str(args.params))
    for flag, value in (("--min-score", args.min_score), ("--score", args.score)):
        if not 0 <= value <= 1:
            raise InputError(flag, f"must be in [0, 1], got {value}")
    if args.figures < 0:
        raise InputError("--figures", f"must be >= 0, got {args.figures}")
    if args.figures and not args.runs:
        print("asn view: --figures without --run: the figures show the ground truth only", file=sys.stderr)
    runs = [resolve_run(spec) for spec in args.runs]
    names = [name for name, _, _ in runs]
    if len(set(names)) != len(names):
        raise InputError("--run", f"two runs share a name ({names}); name them NAME=PATH")
    summary = build_site(
        args.out, amodal_gt=args.gt / f"{args.split}_amodal.json", inmodal_gt=args.gt / f"{args.split}_inmodal.json",
        images_dir=args.images, runs=runs, min_score=args.min_score, default_score=args.score,
        order_score_threshold=float(options["order_score_threshold"]), order_min_pixels=int(options["order_min_pixels"]),
        order_iou_match=float(options["order_iou_match"]), max_images=args.max_images, figures=args.figures,
        figures_dir=args.figures_out)
    print(f"view: {summary['images']} images, {len(summary['runs'])} run(s) ({', '.join(summary['runs']) or 'none'}), "
          f"{summary['detections']} detections; open {(args.out / 'index.html').resolve().as_uri()}"
          + (f"; {len(summary['figures'])} figures in {Path(summary['figures'][0]).parent}" if summary["figures"] else ""),
          file=sys.stderr)
    return 0
