"""Benchmark of the `stats` stage on a KINS-scale annotation-only dataset.

Goal (issue 3): `asn stats` over about 188k instances (7,474 train + 7,517 test images, amodal
polygons and inmodal RLE masks) in under 20 s on the 2-core machine, peak memory under 4 GiB.

The dataset comes from, in this order of preference:
  1. ``--gt DIR [--raw DIR]``: an existing normalized folder (and raw folder for label_2);
  2. otherwise ``asn synth --annotations-only`` + ``asn convert`` (the project's own pipeline).
Generated data is cached under ``--cache`` so reruns only time the stage.

Measures the wall time of `asn stats` (in-process), its split into JSON loading, mask
decoding + contour tracing, shapely and pycocotools overlap work (per split, summed over the
workers), and the peak RSS (``resource.getrusage``: this process and the largest child), and
writes reports/bench/stats.json atomically.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from asn.io import write_json_atomic  # noqa: E402


def generate_pipeline(out: Path, n_train: int, n_test: int, seed: int) -> dict:
    """``asn synth --annotations-only`` then ``asn convert`` for both splits (the project's path)."""
    asn = [sys.executable, "-m", "asn.cli"]
    raw = out / "raw"
    subprocess.run([*asn, "synth", "--out", str(raw), "--annotations-only", "--train", str(n_train),
                    "--test", str(n_test), "--seed", str(seed), "--no-progress"], check=True)
    for split in ("train", "test"):
        subprocess.run([*asn, "convert", "--kins", str(raw / f"update_{split}_2020.json"),
                        "--no-image-check", "--out", str(out / "normalized"), "--split", split],
                       check=True)
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", type=Path, help="existing normalized folder (skips generation)")
    parser.add_argument("--raw", type=Path, help="raw folder with training/label_2 (with --gt)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/asn-bench-stats"),
                        help="where generated data is kept between runs")
    parser.add_argument("--train", type=int, default=7474, help="training images to generate")
    parser.add_argument("--test", type=int, default=7517, help="test images to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--regenerate", action="store_true", help="ignore the cache")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "stats.json")
    args = parser.parse_args(argv)

    generator = "given"
    if args.gt is not None:
        gt, raw = args.gt, args.raw
    else:
        generator = "pipeline"
        cache = args.cache / f"{generator}-{args.train}-{args.test}-{args.seed}"
        gt, raw = cache / "normalized", cache / "raw"
        if args.regenerate and cache.exists():
            shutil.rmtree(cache)
        if not (gt / "test_inmodal.json").is_file():
            t = time.perf_counter()
            generate_pipeline(cache, args.train, args.test, args.seed)
            print(f"generated {generator} dataset in {time.perf_counter() - t:.1f} s -> {cache}", file=sys.stderr)

    from asn.stats.report import run_stats

    out_dir = args.cache / "report"
    t = time.perf_counter()
    summary = run_stats(gt_dir=gt, raw_dir=raw, out_dir=out_dir, splits=["train", "test"],
                        n_vis=0, workers=args.workers, source_label="benchmark", command="bench/stats.py")
    wall = time.perf_counter() - t
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    timings = summary["timings"]
    result = {
        "what": "asn stats on a KINS-scale annotation-only dataset (amodal polygons + inmodal RLE)",
        "dataset": {"generator": generator, "gt": str(gt), "raw": str(raw) if raw else None,
                    "images": summary["n_images"], "instances": summary["n_instances"]},
        "workers": args.workers,
        "wall_s": round(wall, 2),
        "goal_wall_s": 20,
        "peak_rss_mib": {"main": round(self_rss, 1), "largest_child": round(child_rss, 1),
                         "sum_upper_bound": round(self_rss + args.workers * child_rss, 1)},
        "goal_peak_rss_mib": 4096,
        "time_split_s_summed_over_workers": {k: round(v, 2) for k, v in timings.items()},
        "time_split_note": ("per-split seconds summed over the worker processes (they run in "
                            "parallel, so the sum exceeds wall time); mask_decode includes contour "
                            "tracing; mask_overlap is pycocotools polygon->RLE, union and IoU for "
                            "coverage and match numbers; report is tables, plots and writing"),
        "machine": {"cpus": __import__("os").cpu_count()},
    }
    result["command"] = " ".join(["python", "bench/stats.py", *sys.argv[1:]])
    write_json_atomic(args.out, result, indent=True)
    print(write_json_result(result))
    return 0


def write_json_result(result: dict) -> str:
    from asn.io import dumps_json

    return dumps_json(result, indent=True).decode()


if __name__ == "__main__":
    sys.exit(main())
