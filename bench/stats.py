"""Benchmark of the `stats` stage on a KINS-scale annotation-only dataset.

Goal (issue 3): `asn stats` over about 188k instances (7,474 train + 7,517 test images, amodal
polygons and inmodal RLE masks) in under 20 s on the 2-core machine, peak memory under 4 GiB.

The dataset comes from, in this order of preference:
  1. ``--gt DIR [--raw DIR]``: an existing normalized folder (and raw folder for label_2);
  2. ``--generator pipeline``: ``asn synth --annotations-only`` + ``asn convert`` (the project's
     own pipeline; used by ``auto`` when src/asn/data/synthetic.py and convert.py exist);
  3. ``--generator builtin``: a self-contained generator below (random star-shaped polygons,
     depth-ordered so that inmodal masks and orders are consistent, KITTI label_2 boxes).
Generated data is cached under ``--cache`` so reruns only time the stage.

Measures the wall time of `asn stats` (in-process), its split into JSON loading, mask
decoding + contour tracing, shapely and pycocotools overlap work (per split, summed over the
workers), and the peak RSS (``resource.getrusage``: this process and the largest child), and
writes reports/bench/stats.json atomically.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from asn.data.categories import KINS_CATEGORIES, coco_categories  # noqa: E402
from asn.io import write_json_atomic, write_text_atomic  # noqa: E402

KITTI_TYPES = {1: "Cyclist", 2: "Pedestrian", 4: "Car", 5: "Tram", 6: "Truck", 7: "Van", 8: "Misc"}
CATEGORY_WEIGHTS = {4: 0.55, 2: 0.15, 1: 0.05, 5: 0.01, 6: 0.03, 7: 0.06, 8: 0.15}


def _star_polygon(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    n = int(rng.integers(8, 40))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radius = rng.uniform(0.6, 1.0, n)
    return np.stack([cx + rx * radius * np.cos(angles), cy + ry * radius * np.sin(angles)], axis=1)


def _generate_split(out: str, split: str, n_images: int, first_id: int, seed: int, height: int, width: int) -> int:
    import cv2
    from pycocotools import mask as mask_utils
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(seed)
    out_dir = Path(out)
    label_dir = out_dir / "raw" / ("training" if split == "train" else "testing") / "label_2"
    if split == "train":
        label_dir.mkdir(parents=True, exist_ok=True)
    cat_ids = np.array(list(CATEGORY_WEIGHTS))
    cat_p = np.array(list(CATEGORY_WEIGHTS.values()))
    cat_p = cat_p / cat_p.sum()
    images, amodal_anns, inmodal_anns = [], [], []
    ann_id = first_id * 100
    for k in range(n_images):
        image_id = first_id + k
        file_name = f"{k:06d}.png"
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        n = int(rng.poisson(12.5))
        polys = []
        for _ in range(n):
            rx, ry = rng.uniform(8, 150), rng.uniform(8, 90)
            cx, cy = rng.uniform(0, width), rng.uniform(height * 0.3, height)
            poly = _star_polygon(rng, cx, cy, rx, ry)
            poly[:, 0] = poly[:, 0].clip(0, width - 1)
            poly[:, 1] = poly[:, 1].clip(0, height - 1)
            polys.append(poly)
        depth = rng.permutation(n)  # 0 = front
        idmap = np.full((height, width), -1, np.int32)
        for i in np.argsort(-depth):  # back to front, the front overwrites
            cv2.fillPoly(idmap, [np.round(polys[i]).astype(np.int32)], int(i))
        flat = [list(map(float, p.reshape(-1))) for p in polys]
        amodal_rles = mask_utils.frPyObjects(flat, height, width) if n else []
        if n:
            masks = np.asfortranarray((idmap[:, :, None] == np.arange(n)[None, None, :]).astype(np.uint8))
            inmodal_rles = mask_utils.encode(masks)
            iou = np.asarray(mask_utils.iou(amodal_rles, amodal_rles, [0] * n)).reshape(n, n)
            adjacency = iou > 0
            np.fill_diagonal(adjacency, False)
            n_comp, comp = connected_components(adjacency, directed=False)
        lines = []
        for i in range(n):
            a_area = float(mask_utils.area(amodal_rles[i]))
            i_area = float(mask_utils.area(inmodal_rles[i]))
            a_box = [float(v) for v in mask_utils.toBbox(amodal_rles[i])]
            i_box = [float(v) for v in mask_utils.toBbox(inmodal_rles[i])]
            members = np.flatnonzero(comp == comp[i])
            alone = members.size == 1
            oco = 0 if alone else int(comp[i]) + 1
            ico = 1 if alone else int((depth[members] < depth[i]).sum()) + 1
            cat = int(rng.choice(cat_ids, p=cat_p))
            occ = 1.0 - i_area / a_area if a_area > 0 else 0.0
            common = {"id": ann_id, "image_id": image_id, "category_id": cat, "iscrowd": 0,
                      "amodal_bbox": a_box, "inmodal_bbox": i_box, "occlusion_ratio": occ,
                      "oco_id": oco, "ico_id": ico}
            amodal_anns.append(common | {"segmentation": [flat[i]], "bbox": a_box, "area": a_area})
            counts = inmodal_rles[i]["counts"]
            inmodal_anns.append(common | {
                "segmentation": {"size": [height, width], "counts": counts.decode() if isinstance(counts, bytes) else counts},
                "bbox": i_box, "area": i_area})
            if i_area > 0:
                jitter = rng.normal(0, 2, 4)
                x1, y1 = i_box[0] + jitter[0], i_box[1] + jitter[1]
                x2, y2 = i_box[0] + i_box[2] + jitter[2], i_box[1] + i_box[3] + jitter[3]
                lines.append(f"{KITTI_TYPES[cat]} 0.00 0 0.00 {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} 1.5 1.6 3.9 0 0 10 0")
            ann_id += 1
        if split == "train":
            lines.append("DontCare -1 -1 -10 10.00 10.00 40.00 40.00 -1 -1 -1 -1000 -1000 -1000 -10")
            write_text_atomic(label_dir / f"{k:06d}.txt", "\n".join(lines) + "\n")
    categories = coco_categories(tuple(i for i in KINS_CATEGORIES if i != 3))
    gt = out_dir / "normalized"
    write_json_atomic(gt / f"{split}_amodal.json", {"images": images, "annotations": amodal_anns, "categories": categories})
    write_json_atomic(gt / f"{split}_inmodal.json", {"images": images, "annotations": inmodal_anns, "categories": categories})
    return len(amodal_anns)


def generate_builtin(out: Path, n_train: int, n_test: int, seed: int, height: int = 375, width: int = 1242) -> dict:
    """Write ``out/normalized/{train,test}_{amodal,inmodal}.json`` and ``out/raw/training/label_2``."""
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        train = pool.submit(_generate_split, str(out), "train", n_train, 1, seed, height, width)
        test = pool.submit(_generate_split, str(out), "test", n_test, 1_000_000, seed + 1, height, width)
        return {"train": train.result(), "test": test.result()}


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
    parser.add_argument("--generator", choices=["auto", "pipeline", "builtin"], default="auto")
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
        generator = args.generator
        if generator == "auto":
            have = all((ROOT / "src/asn/data" / f).is_file() for f in ("synthetic.py", "convert.py"))
            generator = "pipeline" if have else "builtin"
        cache = args.cache / f"{generator}-{args.train}-{args.test}-{args.seed}"
        gt, raw = cache / "normalized", cache / "raw"
        if args.regenerate and cache.exists():
            shutil.rmtree(cache)
        if not (gt / "test_inmodal.json").is_file():
            t = time.perf_counter()
            (generate_pipeline if generator == "pipeline" else generate_builtin)(cache, args.train, args.test, args.seed)
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
