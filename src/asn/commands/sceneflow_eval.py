"""`asn sceneflow-eval`: KITTI 2015 scene flow errors D1 / D2 / Fl / SF (paper Table 8)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = (
    "Score KITTI 2015 result PNGs against ground truth with the official devkit rules: invalid "
    "estimate pixels are filled first (devkit interpolateBackground), a pixel is an outlier iff "
    "its error is > 3 px and > 5 % of the true value; D1 = first-frame disparity, D2 = "
    "second-frame disparity (in the reference frame), Fl = optical flow, SF = outlier in any of "
    "the three where all three ground truths are valid. Regions: bg / fg from the object map "
    "(without --obj-map everything is bg) and all. Each input is one PNG or a folder of PNGs "
    "paired by file name; counts are pooled over all frames (sum of outliers / sum of valid "
    "pixels). Prints a table of rates and pixel counts, or JSON with --json."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    png = "PNG file or folder of PNGs"
    parser.add_argument("--disp-gt", type=Path, required=True, metavar="PATH",
                        help=f"first-frame disparity ground truth, 16-bit gray ({png})")
    parser.add_argument("--disp-est", type=Path, required=True, metavar="PATH",
                        help=f"first-frame disparity estimate ({png})")
    parser.add_argument("--flow-gt", type=Path, required=True, metavar="PATH",
                        help=f"optical flow ground truth, 16-bit RGB ({png})")
    parser.add_argument("--flow-est", type=Path, required=True, metavar="PATH",
                        help=f"optical flow estimate ({png})")
    parser.add_argument("--disp1-gt", type=Path, default=None, metavar="PATH",
                        help=f"second-frame disparity ground truth in the reference frame ({png}); "
                             "with --disp1-est adds D2 and SF")
    parser.add_argument("--disp1-est", type=Path, default=None, metavar="PATH",
                        help=f"second-frame disparity estimate ({png})")
    parser.add_argument("--obj-map", type=Path, default=None, metavar="PATH",
                        help=f"object map, 8-bit gray, 0 = background, > 0 = foreground ({png})")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def format_table(result: dict) -> str:
    """The error-rate table: one row per metric, bg / fg / all columns with counts."""
    header = f"{'metric':<6}  " + "  ".join(f"{r:<26}" for r in ("bg", "fg", "all"))
    title = (f"KITTI 2015 devkit rules, {len(result['frames'])} frame(s) pooled: "
             "outlier rate (outliers / valid ground-truth pixels)")
    lines = [title, header.rstrip()]
    for name, regions in result["metrics"].items():
        cells = []
        for region in ("bg", "fg", "all"):
            cell = regions[region]
            rate = "-" if cell["rate"] is None else f"{cell['rate']:.2f} %"
            cells.append(f"{rate} ({cell['outliers']} / {cell['pixels']})".ljust(26))
        lines.append((f"{name:<6}  " + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from asn.io import dumps_json
    from asn.sceneflow.evaluate import evaluate_paths

    paths = {"disp_gt": args.disp_gt, "disp_est": args.disp_est, "flow_gt": args.flow_gt,
             "flow_est": args.flow_est, "disp1_gt": args.disp1_gt, "disp1_est": args.disp1_est,
             "obj_map": args.obj_map}
    result = evaluate_paths(paths)
    if args.json:
        out = {"frames": result["frames"], "metrics": result["metrics"],
               "rules": {"abs_thresh_px": 3.0, "rel_thresh": 0.05, "strict": True,
                         "fill": "devkit interpolateBackground", "pooling": "sum over frames",
                         "object_map": args.obj_map is not None}}
        sys.stdout.write(dumps_json(out, indent=True).decode() + "\n")
    else:
        print(format_table(result))
    return 0
