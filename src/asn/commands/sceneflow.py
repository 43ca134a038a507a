"""`asn sceneflow`: paper Table 8 — scene flow without instances, with our models' masks, with
ground-truth masks; on the synthetic stereo world (default) or the real KITTI 2015 data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asn.errors import InputError

HELP = """Build Table 8: scene flow errors D1 / D2 / Fl / SF (KITTI 2015 devkit rules, bg / fg /
all) of an OpenCV baseline (StereoSGBM + DIS flow compensated by the camera's ego-motion; the
static background gets the rigid flow of one robustly fitted ego-motion, params.yaml
sceneflow.egomotion), and of the same baseline with the ego-motion fitted outside instance
masks and one rigid motion per instance inside them: inmodal masks of the mrcnn checkpoints,
amodal + inmodal masks of the mrcnn_asn checkpoints (one model per seed of params.yaml table4.seeds), ground-truth masks
(upper bound). Pooled over scenes and seeds, with a bootstrap interval. Data: params.yaml
sceneflow.source = synthetic (the stereo / motion extension of the synthetic KINS world,
written to --data in the KITTI 2015 layout) or kitti2015 (--data = your data_scene_flow/training
folder, with instances.json only for the ground-truth arm). Writes OUT/table8.md/.csv/.json and
OUT/table8.png (Fl outlier maps of one scene per arm)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameters file (default: %(default)s)")
    parser.add_argument("--data", type=Path, required=True,
                        help="scene folder in the KITTI 2015 layout (synthetic: written here first)")
    parser.add_argument("--models", type=Path, required=True, help="folder of <variant>-<seed>/checkpoint.pt")
    parser.add_argument("--out", type=Path, required=True, help="output folder for table8.md/.csv/.json/.png")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set sceneflow.scenes=5 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def code_commit(paths: list[str]) -> str:
    """The last commit that changed ``paths`` (+dirty when they differ from it): the same in a
    fresh clone with later result commits, so a re-run writes the same table."""
    import subprocess

    try:
        commit = subprocess.run(["git", "log", "-1", "--format=%H", "--", *paths], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *paths],
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit or "unknown") + ("+dirty" if dirty else "")


def read_kitti_calib(path: Path) -> dict:
    """focal, cx, cy, baseline from a KITTI ``calib_cam_to_cam/NNNNNN.txt`` (P_rect_02 / P_rect_03:
    P = K [I | t], the right camera's t_x = -focal * baseline)."""
    import numpy as np

    if not path.is_file():
        raise InputError(path, "missing camera calibration: put KITTI's data_scene_flow_calib "
                               "calib_cam_to_cam/ beside image_2/ (or a calib.json)")
    rows = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, values = line.partition(":")
        if key.strip() in ("P_rect_02", "P_rect_03"):
            try:
                rows[key.strip()] = np.array([float(x) for x in values.split()], dtype=np.float64).reshape(3, 4)
            except ValueError as error:
                raise InputError(path, f"{key.strip()}: expected 12 numbers ({error})") from None
    if set(rows) != {"P_rect_02", "P_rect_03"}:
        raise InputError(path, "needs the lines P_rect_02 and P_rect_03")
    left, right = rows["P_rect_02"], rows["P_rect_03"]
    focal = float(left[0, 0])
    return {"focal": focal, "cx": float(left[0, 2]), "cy": float(left[1, 2]),
            "baseline": float((left[0, 3] - right[0, 3]) / focal)}


SCENEFLOW_KEYS = {"source", "scenes", "seed", "width", "height", "score_threshold", "max_disparity",
                  "bootstrap", "ransac_iterations", "egomotion"}
EGOMOTION_KEYS = {"enabled", "rounds", "fb_px", "forward_max_m", "forward_step_m", "iterations", "inlier_px",
                  "max_points", "min_pixels", "moving_px", "open_px"}


def egomotion_options(options: dict, path) -> dict | None:
    """params.yaml ``sceneflow.egomotion`` -> the keyword groups of
    :mod:`asn.sceneflow.egomotion` (None when disabled); InputError on unknown / missing keys."""
    ego = options.get("egomotion")
    if not isinstance(ego, dict):
        raise InputError(path, "sceneflow.egomotion: expected a mapping")
    unknown, missing = sorted(set(ego) - EGOMOTION_KEYS), sorted(EGOMOTION_KEYS - set(ego))
    if unknown or missing:
        raise InputError(path, f"sceneflow.egomotion: unknown keys {unknown}, missing keys {missing}")
    if not ego["enabled"]:
        return None
    fit = {"iterations": int(ego["iterations"]), "inlier_px": float(ego["inlier_px"]),
           "max_points": int(ego["max_points"]), "min_pixels": int(ego["min_pixels"])}
    return {"fit": fit,
            "input": {"rounds": int(ego["rounds"]), "fb_px": float(ego["fb_px"]),
                      "forward_max_m": float(ego["forward_max_m"]), "forward_step_m": float(ego["forward_step_m"])},
            "baseline": {"moving_px": float(ego["moving_px"]), "open_px": int(ego["open_px"])}}


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from asn.config import load_params, section, thaw
    from asn.engine.checkpoint import build_model_from_checkpoint
    from asn.io import read_json, write_json_atomic, write_text_atomic
    from asn.sceneflow import table8
    from asn.sceneflow.baseline import Camera
    import cv2

    cv2.setNumThreads(1)  # the same estimates, bit for bit, on any machine (a tracked output)
    params = load_params(args.params, args.overrides)
    options = thaw(section(params, "sceneflow", str(args.params)))
    unknown, missing = sorted(set(options) - SCENEFLOW_KEYS), sorted(SCENEFLOW_KEYS - set(options))
    if unknown or missing:
        raise InputError(args.params, f"sceneflow: unknown keys {unknown}, missing keys {missing}")
    ego = egomotion_options(options, args.params)
    seeds = [int(s) for s in thaw(section(params, "table4", str(args.params))).get("seeds") or []]
    if not seeds:
        raise InputError(args.params, "table4.seeds: Table 8 uses the Table 4 checkpoints of these seeds; none given")
    models = {}
    for variant in ("mrcnn", "mrcnn_asn"):
        for seed in seeds:
            path = args.models / f"{variant}-{seed}" / "checkpoint.pt"
            if not path.is_file():
                raise InputError(path, f"missing: Table 8 uses the Table 4 checkpoints ({variant}, seed {seed})")
            models[(variant, seed)] = build_model_from_checkpoint(path, "cpu")[0]

    source = options["source"]
    if source not in ("synthetic", "kitti2015"):
        raise InputError(args.params, f"sceneflow.source: expected synthetic or kitti2015, got {source!r}")
    if source == "synthetic":
        names = table8.write_synthetic_scenes(args.data, int(options["scenes"]), int(options["seed"]),
                                              int(options["width"]), int(options["height"]))
    elif source == "kitti2015":
        folder = args.data / "image_2"
        if not folder.is_dir():
            raise InputError(folder, "missing: --data must be KITTI 2015 data_scene_flow/training")
        names = sorted(p.name[:-7] for p in folder.glob("*_10.png"))[: int(options["scenes"]) or None]
        if not names:
            raise InputError(folder, "no *_10.png frames")
    calib = read_json(args.data / "calib.json") if (args.data / "calib.json").is_file() else {}
    instances = read_json(args.data / "instances.json") if (args.data / "instances.json").is_file() else {}

    from asn.data.rle import decode

    arm_seeds = {"baseline": [None], "gt": [None], "mrcnn": seeds, "mrcnn_asn": seeds}
    per_arm = {arm: np.zeros((len(arm_seeds[arm]), len(names), 4, 3, 2), dtype=np.int64) for arm in table8.ARMS}
    example = None
    bar = None
    if not args.no_progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(names), desc="table8", unit="scene", dynamic_ncols=True)
    rng = np.random.default_rng(int(options["seed"]))
    iterations = int(options["ransac_iterations"])
    for index, name in enumerate(names):
        frame = table8.read_frame(args.data, name)
        height, width = frame["left0"].shape[:2]
        cam = calib.get(name) or read_kitti_calib(args.data / "calib_cam_to_cam" / f"{name}.txt")
        camera = Camera(focal=float(cam["focal"]), cx=float(cam["cx"]), cy=float(cam["cy"]),
                        baseline=float(cam["baseline"]))
        # the input of every arm: ego-compensated DIS flow (or the plain baseline without ego-motion)
        estimate = table8.input_estimate(frame, camera, max_disparity=int(options["max_disparity"]), ego=ego,
                                         rng=rng)

        def arm_estimate(masks, order=None):
            return table8.arm_estimate(estimate, camera, masks, order, ego=ego, rng=rng, iterations=iterations)

        def score(est):
            return table8.counts_array(table8.frame_counts(
                disp=(frame["disp0"], (est["disp0"], est["disp0_valid"])),
                disp1=(frame["disp1"], (est["disp1"], est["disp1_valid"])),
                flow=(frame["flow"], (est["flow"], est["flow_valid"])), obj_map=frame["obj_map"]))

        kept = {"baseline": arm_estimate(None)}
        per_arm["baseline"][0, index] = score(kept["baseline"])
        if name in instances:
            gt_masks = [decode(inst["inmodal_segmentation"]).astype(bool) for inst in instances[name]]
            kept["gt"] = arm_estimate(gt_masks)
            per_arm["gt"][0, index] = score(kept["gt"])
        for variant in ("mrcnn", "mrcnn_asn"):
            for s, seed in enumerate(seeds):
                inmodal, amodal = table8.predicted_masks(models[(variant, seed)], frame["left0"],
                                                         score_threshold=float(options["score_threshold"]))
                order = table8.amodal_order(inmodal, amodal) if variant == "mrcnn_asn" else None
                refined = arm_estimate(inmodal, order)
                per_arm[variant][s, index] = score(refined)
                if s == 0:
                    kept[variant] = refined
        if example is None:
            example = (frame, kept)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    rows = []
    boot_rng = np.random.default_rng(int(options["seed"]) + 1)
    for arm in table8.ARMS:
        counts = per_arm[arm]
        if arm == "gt" and not instances:
            continue
        pooled = counts.sum(axis=(0, 1))
        rates = table8.error_rates({m: {r: pooled[i, j].tolist() for j, r in enumerate(table8.REGIONS)}
                                    for i, m in enumerate(table8.METRICS)})
        interval = table8.bootstrap_interval(counts, resamples=int(options["bootstrap"]), rng=boot_rng)
        rows.append({"arm": arm, "label": table8.ARM_LABELS[arm],
                     "seeds": len(arm_seeds[arm]) if arm_seeds[arm] != [None] else "-",
                     "seed_list": [s for s in arm_seeds[arm] if s is not None], "rates": rates, "interval": interval,
                     "per_seed_scene_counts": counts.tolist()})
    commit = code_commit(["src", "stages", "params.yaml", "dvc.yaml", "pyproject.toml"])
    header = {"Data": ("synthetic stereo / motion world (NOT KITTI; synthetic-data results), "
                       f"{len(names)} scenes of {width}x{height}") if source == "synthetic"
              else f"KITTI 2015 scene flow ({args.data}), {len(names)} frames",
              "Models": f"Table 4 checkpoints `{args.models}/<mrcnn|mrcnn_asn>-<seed>`, seeds {seeds}, "
                        f"detections with score >= {options['score_threshold']}",
              "Background": ("one rigid ego-motion (RANSAC + robust refit) overwrites flow and second-frame "
                             "disparity outside the instance masks (baseline: the whole image but the pixels "
                             "that contradict it); DIS flow compensated by it (params.yaml sceneflow.egomotion)"
                             if ego is not None else "left to DIS flow (sceneflow.egomotion.enabled: false)"),
              "Git commit": commit}
    command = "dvc repro sceneflow"
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "table8.md", table8.render_markdown(rows, header=header, command=command,
                                                                     source=source))
    write_text_atomic(args.out / "table8.csv", table8.render_csv(rows))
    write_json_atomic(args.out / "table8.json", {"table": "table8", "data_source": source, "profile": "n/a",
                                                 "git_commit": commit, "scenes": names, "rows": rows,
                                                 "paper_roles": {arm: {"paper_row": name, "role": why} for arm, (name, why)
                                                                 in table8.ARM_PAPER_ROLES.items()},
                                                 "paper": table8.paper_rows()}, indent=True)
    if example is not None:
        table8.plot_error_maps(example[0], example[1], args.out / "table8.png",
                               title=f"Fl outliers, scene {example[0]['name']} ({source})")
    for row in rows:
        sf = row["rates"]["SF"]["all"]["rate"]
        print(f"sceneflow: {row['arm']}: SF-all {sf:.2f} %" if sf is not None else f"sceneflow: {row['arm']}: no SF",
              file=sys.stderr)
    print(f"sceneflow: {len(names)} scenes -> {args.out / 'table8.md'}", file=sys.stderr)
    return 0
