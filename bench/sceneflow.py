"""Benchmark of the KITTI 2015 scene flow evaluation (``asn.sceneflow``, devkit rules).

Goal (issue 10): evaluate 200 frames at KITTI size (1242x375) in under 20 s on the 2-core
machine: D1, D2, Fl and SF over bg / fg / all, with the devkit's ``interpolateBackground``
fill of the three estimates of every frame, counts pooled over the frames.

The frames are synthetic and seeded (not KITTI data): a road plane below a horizon, far
structures above it and 2-8 box-shaped objects (the object map) with their own disparity and
motion; ego-motion flow; a second-frame disparity; sparse "lidar" ground truth (about 45 % of
the pixels valid, none high up); estimates = ground truth + noise + 10 % gross outliers, with
horizontal runs of holes, an invalid left border and whole invalid rows (so every case of the
fill occurs); all values at the PNG precision (1/256 px disparity, 1/64 px flow).

Two measurements:
- ``evaluation``: :func:`asn.sceneflow.metrics.frame_counts` on in-memory frames (fill +
  outlier tests + counting), summed over the frames; generation is not timed. The goal
  applies to this.
- ``end_to_end`` (skip with ``--no-png``): the frames written once as KITTI PNGs under
  ``--work`` (cached), then ``asn sceneflow-eval --json`` on the folders in a fresh process
  (start-up, PNG decoding, size checks, evaluation); its counts must equal the in-memory ones.

Writes reports/bench/sceneflow.json atomically (``--out``).

    python bench/sceneflow.py
    python bench/sceneflow.py --frames 20 --no-png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from asn.io import dumps_json, write_json_atomic, write_text_atomic
from asn.sceneflow import io
from asn.sceneflow.metrics import error_rates, frame_counts, pool_counts

GOAL_SECONDS = 20.0
# folder per role, named as in KITTI 2015 (ground truth / results)
FOLDERS = {"disp_gt": "disp_noc_0", "disp_est": "result_disp_0", "disp1_gt": "disp_noc_1",
           "disp1_est": "result_disp_1", "flow_gt": "flow_noc", "flow_est": "result_flow",
           "obj_map": "obj_map"}


def _holes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """bool HxW: True where an estimate is missing (runs along rows, left border, rows)."""
    seeds = (rng.random((h, w)) < 0.008).astype(np.uint8)
    runs = cv2.dilate(seeds, np.ones((1, 17), np.uint8)) > 0  # horizontal runs of ~17 px
    runs[:, : int(rng.integers(0, 40))] = True  # stereo: no match at the left border
    runs[rng.integers(0, h, 2)] = True  # a few whole invalid rows
    return runs


def synthetic_frame(rng: np.random.Generator, h: int, w: int) -> dict:
    """One seeded synthetic frame: the keyword arguments of ``frame_counts``."""
    v = np.arange(h, dtype=np.float32)[:, None]
    u = np.arange(w, dtype=np.float32)[None, :]
    horizon = float(rng.uniform(0.4, 0.5) * h)
    # background: road plane below the horizon, structures of random depth above it
    bands = rng.uniform(1.0, 12.0, size=w // 50 + 1).astype(np.float32)
    far = np.repeat(bands, 50)[:w][None, :]
    disp = np.where(v > horizon, (v - horizon) * np.float32(rng.uniform(0.4, 0.6)) + 2.0,
                    np.broadcast_to(far, (h, w))).astype(np.float32)
    disp = np.broadcast_to(disp, (h, w)).copy()
    scale = np.float32(rng.uniform(0.002, 0.006))  # ego motion: flow grows with disparity
    flow = np.stack([(u - w / 2) * disp * scale, (v - horizon) * disp * scale], axis=2)
    disp1 = disp * np.float32(rng.uniform(1.0, 1.04))
    obj = np.zeros((h, w), np.uint8)
    n_objects = int(rng.integers(2, 9))
    objects = sorted((float(rng.uniform(8, 70)), k) for k in range(n_objects))
    for d_obj, k in objects:  # far to near: nearer objects paint over farther ones
        bw, bh = int(rng.integers(w // 30, w // 4)), int(rng.integers(h // 12, 2 * h // 5))
        x0 = int(rng.integers(0, w - bw))
        y0 = int(rng.integers(max(int(horizon) - bh // 2, 0), h - bh))  # standing on the road
        disp[y0:y0 + bh, x0:x0 + bw] = d_obj
        disp1[y0:y0 + bh, x0:x0 + bw] = d_obj + np.float32(rng.uniform(-3, 3))
        flow[y0:y0 + bh, x0:x0 + bw] = rng.uniform(-40, 40, 2).astype(np.float32)
        obj[y0:y0 + bh, x0:x0 + bw] = k + 1

    def q_disp(x):  # PNG precision, inside the encodable range
        return (np.clip(np.round(x * 256), 1, 65535) / 256).astype(np.float32)

    def q_flow(x):
        return (np.clip(np.round(x * 64), -32768, 32767) / 64).astype(np.float32)

    def noisy(x, sigma, gross):
        bad = rng.random(x.shape[:2]) < 0.1
        noise = rng.normal(0, sigma, x.shape).astype(np.float32)
        jump = rng.uniform(-gross, gross, x.shape).astype(np.float32)
        mask = bad if x.ndim == 2 else bad[:, :, None]
        return x + noise + np.where(mask, jump, np.float32(0))

    # sparse "lidar" ground truth: nothing high up, about 60 % below the top rows
    lidar = (v > horizon - 60) & (rng.random((h, w)) < 0.6)
    gt0, gt1, gtf = q_disp(disp), q_disp(disp1), q_flow(flow)
    return {
        "disp": ((gt0, lidar), (q_disp(noisy(disp, 0.6, 30)), ~_holes(rng, h, w))),
        "disp1": ((gt1, lidar & (rng.random((h, w)) < 0.95)),
                  (q_disp(noisy(disp1, 0.8, 30)), ~_holes(rng, h, w))),
        "flow": ((gtf, lidar & (rng.random((h, w)) < 0.9)),
                 (q_flow(noisy(flow, 1.0, 60)), ~_holes(rng, h, w))),
        "obj_map": obj,
    }


def frame_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def write_frames(folder: Path, frames: int, h: int, w: int, seed: int) -> float:
    """Write the frames as KITTI PNGs once (a marker file makes the cache complete)."""
    marker = folder / "complete.json"
    if marker.is_file():
        return 0.0
    t = time.perf_counter()
    for index in range(frames):
        f = synthetic_frame(frame_rng(seed, index), h, w)
        name = f"{index:06d}_10.png"
        io.write_disparity(folder / FOLDERS["disp_gt"] / name, *f["disp"][0])
        io.write_disparity(folder / FOLDERS["disp_est"] / name, *f["disp"][1])
        io.write_disparity(folder / FOLDERS["disp1_gt"] / name, *f["disp1"][0])
        io.write_disparity(folder / FOLDERS["disp1_est"] / name, *f["disp1"][1])
        io.write_flow(folder / FOLDERS["flow_gt"] / name, *f["flow"][0])
        io.write_flow(folder / FOLDERS["flow_est"] / name, *f["flow"][1])
        io.write_object_map(folder / FOLDERS["obj_map"] / name, f["obj_map"])
    seconds = time.perf_counter() - t
    write_text_atomic(marker, json.dumps({"frames": frames, "seconds": seconds}))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--width", type=int, default=1242)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-png", action="store_true", help="skip the end-to-end PNG run")
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "asn-bench-sceneflow",
                        help="cache folder for the PNG frames")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "sceneflow.json")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.width < 300 or args.height < 160:
        parser.error("need --frames >= 1, --width >= 300, --height >= 160")
    h, w = args.height, args.width
    load_before = os.getloadavg()[0]

    # 1. in-memory evaluation (generation untimed)
    per_frame, seconds, generation = [], [], 0.0
    for index in range(args.frames):
        t = time.perf_counter()
        frame = synthetic_frame(frame_rng(args.seed, index), h, w)
        generation += time.perf_counter() - t
        t = time.perf_counter()
        per_frame.append(frame_counts(**frame))
        seconds.append(time.perf_counter() - t)
        del frame
    t = time.perf_counter()
    pooled = pool_counts(per_frame)
    metrics = error_rates(pooled)
    evaluation = sum(seconds) + (time.perf_counter() - t)
    print(f"evaluation: {args.frames} frames in {evaluation:.2f} s", file=sys.stderr)

    # 2. end to end from PNGs through the command
    end_to_end = None
    if not args.no_png:
        folder = args.work / f"frames-{args.frames}-{w}x{h}-s{args.seed}"
        written = write_frames(folder, args.frames, h, w, args.seed)
        command = [sys.executable, "-m", "asn.cli", "sceneflow-eval"]
        for role, sub in FOLDERS.items():
            command += [f"--{role.replace('_', '-')}", str(folder / sub)]
        command.append("--json")
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        t = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"asn sceneflow-eval failed (exit {proc.returncode})")
        cli_metrics = json.loads(proc.stdout)["metrics"]
        png_mib = sum(p.stat().st_size for p in folder.rglob("*.png")) / 2**20
        end_to_end = {"seconds": round(wall, 2), "identical_counts": cli_metrics == metrics,
                      "png_files": 7 * args.frames, "png_mib": round(png_mib, 1),
                      "png_write_seconds_untimed": round(written, 1) if written else "cached",
                      "folder": str(folder),
                      "command": "asn sceneflow-eval " + " ".join(
                          f"--{r.replace('_', '-')} {s}" for r, s in FOLDERS.items()) + " --json"}
        print(f"end to end (asn sceneflow-eval, PNGs): {wall:.2f} s", file=sys.stderr)

    identical = end_to_end is None or end_to_end["identical_counts"]
    result = {
        "benchmark": ("KITTI 2015 scene flow evaluation with the devkit rules (fill, D1 / D2 / Fl "
                      "/ SF, bg / fg / all, pooled) on seeded synthetic frames (not KITTI data)"),
        "command": " ".join(["python", "bench/sceneflow.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "goal": {"frames": 200, "size": "1242x375", "seconds": GOAL_SECONDS,
                 "applies_to": "evaluation (fill + metrics of in-memory frames)"},
        "dataset": {"frames": args.frames, "width": w, "height": h, "seed": args.seed,
                    "generation_seconds_untimed": round(generation, 1),
                    "estimate_holes_percent": None},
        "seconds": {"evaluation": round(evaluation, 3),
                    **({"end_to_end": end_to_end["seconds"]} if end_to_end else {})},
        "per_frame_ms": {"mean": round(1000 * float(np.mean(seconds)), 2),
                         "median": round(1000 * float(np.median(seconds)), 2),
                         "max": round(1000 * float(np.max(seconds)), 2)},
        "end_to_end": end_to_end,
        "metrics": metrics,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "opencv": cv2.__version__,
                    "load_average_1min_before_after": [round(load_before, 2),
                                                       round(os.getloadavg()[0], 2)]},
        "note": ("evaluation is single-threaded numpy; other work on the machine (see the load "
                 "averages) slows it. end_to_end adds interpreter start-up and decoding "
                 "7 PNGs per frame (cv2), for information."),
    }
    # fraction of missing estimate pixels in frame 0, to show the fill is exercised
    f0 = synthetic_frame(frame_rng(args.seed, 0), h, w)
    result["dataset"]["estimate_holes_percent"] = {
        key: round(100.0 * float(np.mean(~f0[key][1][1])), 1) for key in ("disp", "disp1", "flow")}
    result["meets_goal"] = bool(identical and evaluation < GOAL_SECONDS
                                and args.frames >= 200 and (w, h) == (1242, 375))
    write_json_atomic(args.out, result, indent=True)
    print(dumps_json(result, indent=True).decode())
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
