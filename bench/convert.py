"""Benchmark: `convert` on a KINS-scale annotation-only file (7,474 train + 7,517 test images).

Goal (issue 2): under 15 s per split with peak memory under 3 GiB on a 2-core machine.
Each split is converted in a fresh process so its peak RSS (its own and its workers') is
measured alone. Writes reports/bench/convert.json.

    python bench/convert.py                       # generate the data in a temp folder
    python bench/convert.py --data D --keep        # reuse / keep an annotation-only dataset
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_SECONDS, GOAL_GIB = 15.0, 3.0

CHILD = """
import json, resource, sys, time
from asn.data.convert import convert
t = time.perf_counter()
report = convert(sys.argv[1], sys.argv[2], sys.argv[3], images_dir=None, workers=int(sys.argv[4]))
wall = time.perf_counter() - t
peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
print(json.dumps({"seconds": wall, "peak_rss_gib_main": peak_self,
                  "peak_rss_gib_largest_worker": peak_children, "report": report}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="annotation-only dataset folder (made if missing)")
    parser.add_argument("--train", type=int, default=7474)
    parser.add_argument("--test", type=int, default=7517)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "convert.json")
    args = parser.parse_args()

    from asn.data.synthetic import synthesize
    from asn.io import write_json_atomic

    tmp = tempfile.TemporaryDirectory(prefix="asn-bench-convert-")
    data = args.data or Path(tmp.name) / "kins_scale"
    gen_seconds = None
    if not (data / "update_train_2020.json").exists():
        t = time.perf_counter()
        synthesize(data, n_train=args.train, n_test=args.test, seed=0, annotations_only=True,
                   workers=args.workers, progress=True)
        gen_seconds = time.perf_counter() - t
    results = {}
    for split in ("train", "test"):
        src = data / f"update_{split}_2020.json"
        out = Path(tmp.name) / "normalized"
        proc = subprocess.run([sys.executable, "-c", CHILD, str(src), str(out), split,
                               str(args.workers)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        rep = res.pop("report")
        res.update(
            images=rep["kept"]["images"], instances=rep["kept"]["annotations"],
            file_mib=round(src.stat().st_size / 2**20, 1), phases=rep["seconds"],
            peak_rss_gib=max(res["peak_rss_gib_main"], res["peak_rss_gib_largest_worker"]),
        )
        res["meets_goal"] = res["seconds"] < GOAL_SECONDS and res["peak_rss_gib"] < GOAL_GIB
        results[split] = res
        print(f"{split}: {res['instances']} instances in {res['seconds']:.1f} s, "
              f"peak RSS {res['peak_rss_gib']:.2f} GiB", file=sys.stderr)
    write_json_atomic(args.out, {
        "benchmark": "convert, KINS-scale annotation-only synthetic file (not KINS data)",
        "command": "python bench/convert.py",
        "goal": {"seconds_per_split": GOAL_SECONDS, "peak_rss_gib": GOAL_GIB},
        "generation_seconds": gen_seconds,
        "workers": args.workers,
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "splits": results,
    }, indent=True)
    tmp.cleanup()
    return 0 if all(r["meets_goal"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
