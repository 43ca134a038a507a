"""`asn stats`: dataset statistics (Tables 1-3, Figure 4, summary metrics, visualisations)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

HELP = (
    "Compute the dataset statistics of a normalized ground-truth folder (output of `asn convert`): "
    "Table 1 (instances per category), Table 2 (convexity / simplicity of amodal and inmodal "
    "segments), summary metrics (summary.json), Figure 4 (occlusion histogram, box consistency with "
    "KITTI label_2, cluster statistics) as PNG + CSV, Table 3 (annotator consistency) when "
    "RAW/annotators/annotator_*.json exist, and a few side-by-side visualisations. Outputs are "
    "written atomically, only after every statistic was computed."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", type=Path, required=True, help="normalized folder with <split>_amodal.json and <split>_inmodal.json")
    parser.add_argument("--raw", type=Path, default=None,
                        help="raw folder (training/label_2 for Figure 4(b), training/image_2 for pictures, annotators/)")
    parser.add_argument("--out", type=Path, default=Path("reports/stats"), help="output folder (default: reports/stats)")
    parser.add_argument("--splits", nargs="+", default=["train", "test"], help="splits to read (default: train test)")
    parser.add_argument("--vis", type=int, default=4, metavar="N", help="visualise the first N images of the first split (default 4; 0 = none)")
    parser.add_argument("--workers", type=int, default=2, help="processes, one split each (default 2)")
    parser.add_argument("--synthetic", action="store_true", help="label the tables as coming from the synthetic world")
    parser.add_argument("--source", default=None, help="data source text for the table headers (overrides --synthetic and RAW/manifest.json)")
    parser.add_argument("--annotators", type=Path, nargs="*", default=None,
                        help="annotator COCO files for Table 3 (default: RAW/annotators/annotator_*.json; give none to skip)")
    parser.add_argument("--annotators-stage2", type=Path, nargs="*", default=None,
                        help="the same annotators' second annotation stage, Table 3's stage 2 (default: "
                             "RAW/annotators/stage2/annotator_*.json; give none for a one-stage table). "
                             "Both stages are scored against GT/train_amodal.json (the released annotation; it must hold "
                             "their annotation ids) when that file exists")


def run(args: argparse.Namespace) -> int:
    from asn.stats.report import data_source_label, find_annotator_files, find_stage2_annotator_files, run_stats

    if args.vis < 0 or args.workers < 1:
        from asn.errors import InputError

        raise InputError("asn stats", "--vis must be >= 0 and --workers >= 1")
    source = data_source_label(args.raw, args.synthetic, args.source)
    annotators = find_annotator_files(args.raw) if args.annotators is None else list(args.annotators)
    stage2 = (find_stage2_annotator_files(args.raw) if args.annotators_stage2 is None
              else list(args.annotators_stage2))
    reference = args.gt / "train_amodal.json"
    command = command_line(args)
    summary = run_stats(
        gt_dir=args.gt, out_dir=args.out, raw_dir=args.raw, splits=args.splits, n_vis=args.vis,
        workers=args.workers, source_label=source, command=command, annotator_files=annotators,
        annotator_stage2_files=stage2 if annotators else None,
        annotator_reference=reference if reference.is_file() else None,
    )
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in summary["timings"].items())
    print(f"asn stats: {summary['n_images']} images, {summary['n_instances']} instances -> {args.out} ({timings})",
          file=sys.stderr)
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The equivalent command line, rebuilt from the parsed arguments (for the table headers)."""
    parts = ["asn", "stats", "--gt", str(args.gt)]
    if args.raw is not None:
        parts += ["--raw", str(args.raw)]
    parts += ["--out", str(args.out), "--splits", *args.splits, "--vis", str(args.vis), "--workers", str(args.workers)]
    if args.synthetic:
        parts.append("--synthetic")
    if args.source:
        parts += ["--source", args.source]
    if args.annotators is not None:
        parts += ["--annotators", *map(str, args.annotators)]
    if args.annotators_stage2 is not None:
        parts += ["--annotators-stage2", *map(str, args.annotators_stage2)]
    return " ".join(shlex.quote(p) for p in parts)
