"""Benchmark `asn synth`: the default dataset (goal < 60 s on 2 cores) and KINS-scale annotations.

Writes reports/bench/synth.json (atomically) with seconds, images/s and instance counts.
"""

from __future__ import annotations

import argparse
import sys
import os
import platform
import tempfile
import time
from pathlib import Path

from asn.data.synthetic import synthesize
from asn.io import write_json_atomic

GOAL_DEFAULT_SECONDS = 60.0


def _timed(out: Path, **kwargs) -> dict:
    start = time.perf_counter()
    summary = synthesize(out, progress=False, **kwargs)
    seconds = time.perf_counter() - start
    images = summary["train_images"] + summary["test_images"]
    return {
        "arguments": {k: v for k, v in kwargs.items()},
        "seconds": round(seconds, 2),
        "images": images,
        "images_per_second": round(images / seconds, 1),
        "instances": summary["instances"],
        "instances_per_image": round(summary["instances_per_image"], 3),
        "occluded_fraction": round(summary["occluded_fraction"], 3),
        "width": summary["width"],
        "height": summary["height"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="reports/bench/synth.json", help="result JSON path")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--kins-train", type=int, default=7474, help="annotations-only train images")
    parser.add_argument("--kins-test", type=int, default=7517, help="annotations-only test images")
    parser.add_argument("--skip-kins", action="store_true", help="only time the default dataset")
    args = parser.parse_args(argv)

    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        default = _timed(Path(tmp) / "default", workers=args.workers)
        default["goal_seconds"] = GOAL_DEFAULT_SECONDS
        default["goal_met"] = default["seconds"] < GOAL_DEFAULT_SECONDS
        result["default"] = default
        print(f"default dataset: {default['seconds']} s ({default['images_per_second']} img/s)")
        if not args.skip_kins:
            kins = _timed(Path(tmp) / "kins", n_train=args.kins_train, n_test=args.kins_test,
                          annotations_only=True, workers=args.workers)
            result["annotations_only_kins_scale"] = kins
            print(f"annotations-only KINS scale: {kins['seconds']} s, {kins['instances']} instances")
    result["command"] = " ".join(["python", "bench/synth.py", *sys.argv[1:]])
    write_json_atomic(args.out, result, indent=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
