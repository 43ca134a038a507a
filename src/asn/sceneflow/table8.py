"""Paper Table 8 at small scale: scene flow errors without instances, with instance masks from
our models, and with ground-truth masks (the upper bound).

Per scene (KITTI 2015 ``data_scene_flow`` layout: ``image_2`` / ``image_3`` ``NNNNNN_10.png`` and
``_11.png``, ``disp_occ_0``, ``disp_occ_1``, ``flow_occ``, ``obj_map``), the OpenCV baseline
(:mod:`asn.sceneflow.baseline`) is refined inside instance masks by one rigid motion each
(:mod:`asn.sceneflow.refine`). Like the paper's OSF and ISF, every arm explains the static
background by the camera's rigid motion (:mod:`asn.sceneflow.egomotion`, params.yaml
``sceneflow.egomotion``): the DIS flow is estimated after compensating it, and the arms with
masks fit it outside their masks and overwrite flow and second-frame disparity there. Arms:

- ``baseline``: no instances (StereoSGBM + DIS flow + the second disparity warped by the flow),
  the camera's ego-motion fitted over the whole image (moving objects are outliers) and its
  rigid flow written wherever the estimate does not contradict it;
- ``mrcnn``: inmodal masks of our Mask R-CNN checkpoints (one per seed), overlaps resolved by
  the median estimated disparity in each mask (nearer first);
- ``mrcnn_asn``: inmodal masks of our ASN checkpoints, overlaps resolved by the occlusion order
  the amodal masks imply (an instance whose amodal mask covers the other's visible pixels is
  behind it) — the "with KINS-style masks" arm;
- ``gt``: the ground-truth inmodal masks (the upper bound of what masks can give).

Errors are the devkit's D1 / D2 / Fl / SF (:mod:`asn.sceneflow.metrics`), pooled over scenes
(and seeds), with a percentile bootstrap interval that resamples scenes and seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asn.errors import InputError
from asn.sceneflow.metrics import METRICS, REGIONS, error_rates, frame_counts, pool_counts

ARMS = ("baseline", "mrcnn", "mrcnn_asn", "gt")
ARM_LABELS = {
    "baseline": "no instances (StereoSGBM + DIS flow, rigid background ego-motion)",
    "mrcnn": "+ rigid refinement in inmodal masks of mrcnn",
    "mrcnn_asn": "+ rigid refinement in amodal + inmodal masks of mrcnn_asn",
    "gt": "+ rigid refinement in ground-truth inmodal masks (upper bound)",
}
# The role each arm plays against the paper's Table 8 rows (asn.paper.TABLE8): (paper row or None, why).
ARM_PAPER_ROLES: dict[str, tuple[str | None, str]] = {
    "baseline": ("OSF", "no instances: the rigid-scene baseline (OSF-like)"),
    "mrcnn": ("ISF", "instance masks of a Mask R-CNN (ISF with instance masks)"),
    "mrcnn_asn": ("ISF with KINS", "masks from a KINS-style amodal model, ASN (ISF with KINS)"),
    "gt": (None, "oracle: ground-truth masks, no paper counterpart"),
}


# ----------------------------------------------------------------------------------------------
# data: the synthetic world written in the KITTI 2015 layout, and the reader for both sources
# ----------------------------------------------------------------------------------------------

def write_synthetic_scenes(out: Path, scenes: int, seed: int, width: int, height: int) -> list[str]:
    """Render ``scenes`` stereo / motion samples into ``out`` in the KITTI 2015 training layout,
    plus ``instances.json`` (per frame: amodal / inmodal RLE masks and order of the t-left view)
    and ``calib.json`` (focal, principal point, baseline). Returns the frame names."""
    from asn.data.rle import encode as rle_encode
    from asn.io import write_bytes_atomic, write_json_atomic
    from asn.sceneflow.io import write_disparity, write_flow, write_object_map
    from asn.sceneflow.world import render_stereo_scene

    import cv2

    names, instances, calib = [], {}, {}
    for index in range(scenes):
        scene = render_stereo_scene(int(np.random.SeedSequence([int(seed), 8, index]).generate_state(1)[0]),
                                    width, height)
        name = f"{index:06d}"
        for folder, key_t0, key_t1 in (("image_2", "left0", "left1"), ("image_3", "right0", "right1")):
            for suffix, key in (("_10", key_t0), ("_11", key_t1)):
                ok, png = cv2.imencode(".png", cv2.cvtColor(getattr(scene, key), cv2.COLOR_RGB2BGR))
                assert ok
                write_bytes_atomic(out / folder / f"{name}{suffix}.png", png.tobytes())
        write_disparity(out / "disp_occ_0" / f"{name}_10.png", scene.disp0, scene.disp0_valid)
        write_disparity(out / "disp_occ_1" / f"{name}_10.png", scene.disp1, scene.disp1_valid)
        write_flow(out / "flow_occ" / f"{name}_10.png", scene.flow, scene.flow_valid)
        write_object_map(out / "obj_map" / f"{name}_10.png", scene.obj_map > 0)
        instances[name] = [{"category_id": inst.category_id, "oco_id": inst.oco_id, "ico_id": inst.ico_id,
                            "depth": inst.depth, "segmentation": rle_encode(inst.amodal_mask),
                            "inmodal_segmentation": rle_encode(inst.inmodal_mask)} for inst in scene.instances]
        calib[name] = {"focal": scene.camera.focal, "cx": scene.camera.cx, "cy": scene.camera.cy,
                       "baseline": scene.camera.baseline, "ego_tz": scene.ego_tz}
        names.append(name)
    write_json_atomic(out / "instances.json", instances)
    write_json_atomic(out / "calib.json", calib)
    return names


def read_frame(root: Path, name: str) -> dict[str, Any]:
    """One frame of a ``data_scene_flow``-layout folder: images (RGB uint8) and ground truth."""
    import cv2

    from asn.sceneflow.io import read_disparity, read_flow, read_object_map

    frame: dict[str, Any] = {"name": name}
    for key, folder, suffix in (("left0", "image_2", "_10"), ("left1", "image_2", "_11"),
                                ("right0", "image_3", "_10"), ("right1", "image_3", "_11")):
        path = root / folder / f"{name}{suffix}.png"
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(path, "missing or unreadable image")
        frame[key] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    frame.update(disp0=read_disparity(root / "disp_occ_0" / f"{name}_10.png"),
                 disp1=read_disparity(root / "disp_occ_1" / f"{name}_10.png"),
                 flow=read_flow(root / "flow_occ" / f"{name}_10.png"))
    obj_path = root / "obj_map" / f"{name}_10.png"
    frame["obj_map"] = read_object_map(obj_path) if obj_path.is_file() else None
    return frame


# ----------------------------------------------------------------------------------------------
# the arms' estimates
# ----------------------------------------------------------------------------------------------

def input_estimate(frame: Mapping[str, Any], camera, *, max_disparity: int, ego: Mapping[str, Any] | None,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The estimate every arm of one frame starts from (``frame``: the four RGB images
    ``left0`` / ``right0`` / ``left1`` / ``right1``, HxWx3 uint8): the plain OpenCV baseline
    when ``ego`` is None, else the ego-motion-compensated one
    (:func:`asn.sceneflow.egomotion.compensated_estimate` with ``ego["input"]`` and
    ``ego["fit"]``, the keyword groups ``asn sceneflow`` reads from params.yaml)."""
    from asn.sceneflow.baseline import baseline_estimate
    from asn.sceneflow.egomotion import compensated_estimate

    images = (frame["left0"], frame["right0"], frame["left1"], frame["right1"])
    if ego is None:
        return baseline_estimate(*images, max_disparity=max_disparity)
    estimate, _ = compensated_estimate(*images, camera, max_disparity=max_disparity, rng=rng,
                                       **ego["input"], **ego["fit"])
    return estimate


def arm_estimate(estimate: Mapping[str, np.ndarray], camera, masks: Sequence[np.ndarray] | None,
                 order: Sequence[int] | None = None, *, ego: Mapping[str, Any] | None,
                 rng: np.random.Generator, iterations: int) -> dict[str, np.ndarray]:
    """One arm's estimate: the background ego-motion (:func:`asn.sceneflow.egomotion.egomotion_refine`,
    outside ``masks``; ``masks`` None = the no-instance baseline, the whole image with moving
    objects as outliers; skipped when ``ego`` is None), then one rigid motion per instance
    mask (:func:`asn.sceneflow.refine.refine_instances`, ``order`` nearest first, ``iterations``
    RANSAC samples). ``masks``: bool HxW visible masks."""
    from asn.sceneflow.egomotion import egomotion_refine
    from asn.sceneflow.refine import refine_instances

    est = dict(estimate)
    if ego is not None:
        est, _ = egomotion_refine(estimate, camera, masks, rng=rng, **ego["fit"],
                                  **(ego["baseline"] if masks is None else {}))
    if masks:
        est, _ = refine_instances(est, camera, masks, order, rng=rng, iterations=iterations)
    return est


# ----------------------------------------------------------------------------------------------
# masks from checkpoints
# ----------------------------------------------------------------------------------------------

def predicted_masks(model, image: np.ndarray, *, score_threshold: float, mask_threshold: float = 0.5):
    """(inmodal masks, amodal masks) as lists of (H, W) bool of the detections above
    ``score_threshold`` of ``model`` on an RGB uint8 image."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    with torch.inference_mode():
        output = model([tensor])[0]
    keep = output["scores"] >= score_threshold
    inmodal = (output["inmodal_masks"][keep, 0] > mask_threshold).numpy()
    amodal = (output["amodal_masks"][keep, 0] > mask_threshold).numpy()
    return list(inmodal), list(amodal)


def amodal_order(inmodal: Sequence[np.ndarray], amodal: Sequence[np.ndarray]) -> list[int]:
    """Nearest first from amodal masks: j is behind i when i's visible pixels cover more of
    j's amodal mask than j's cover of i's. Ties and unrelated pairs keep their index order."""
    n = len(inmodal)
    behind = np.zeros(n, dtype=np.int64)  # how many instances are in front of each
    for i in range(n):
        for j in range(i + 1, n):
            i_over_j = int((inmodal[i] & amodal[j]).sum())
            j_over_i = int((inmodal[j] & amodal[i]).sum())
            if i_over_j > j_over_i:
                behind[j] += 1
            elif j_over_i > i_over_j:
                behind[i] += 1
    return [int(k) for k in np.argsort(behind, kind="stable")]


# ----------------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------------

def bootstrap_interval(per_unit: np.ndarray, *, resamples: int, rng: np.random.Generator,
                       level: float = 0.95) -> dict[str, dict[str, list[float | None]]]:
    """Percentile interval of pooled error rates.

    ``per_unit``: (seeds, scenes, metrics, regions, 2) counts [outliers, pixels]. Each resample
    draws seeds and scenes with replacement and pools the drawn counts.
    """
    seeds, scenes = per_unit.shape[:2]
    rates = np.full((resamples, per_unit.shape[2], per_unit.shape[3]), np.nan)
    for r in range(resamples):
        s = rng.integers(0, seeds, seeds)
        c = rng.integers(0, scenes, scenes)
        pooled = per_unit[s][:, c].sum(axis=(0, 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            rates[r] = np.where(pooled[..., 1] > 0, 100.0 * pooled[..., 0] / np.maximum(pooled[..., 1], 1), np.nan)
    low, high = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out: dict[str, dict[str, list[float | None]]] = {}
    for m, metric in enumerate(METRICS):
        out[metric] = {}
        for g, region in enumerate(REGIONS):
            values = rates[:, m, g]
            values = values[np.isfinite(values)]
            out[metric][region] = ([float(np.percentile(values, low)), float(np.percentile(values, high))]
                                   if len(values) else [None, None])
    return out


def counts_array(counts: Mapping[str, Mapping[str, Sequence[int]]]) -> np.ndarray:
    """{metric: {region: [o, p]}} -> (metrics, regions, 2) int64 (missing metrics: zeros)."""
    out = np.zeros((len(METRICS), len(REGIONS), 2), dtype=np.int64)
    for m, metric in enumerate(METRICS):
        for g, region in enumerate(REGIONS):
            if metric in counts:
                out[m, g] = counts[metric][region]
    return out


def paper_rows() -> list[dict[str, Any]]:
    """The paper's Table 8 rows (:data:`asn.paper.TABLE8`, errors in %, KITTI 2015 validation):
    ``{"row", "errors": {metric: value}, "label"}``, for the JSON beside our rows."""
    from asn import paper

    return [{"row": name, "errors": dict(zip(paper.TABLE8_METRICS, values)), "label": paper.LABEL_KITTI,
             "source": paper.cite("Table 8")} for name, values in paper.TABLE8.items()]


def roles_line() -> str:
    """Which of our arms plays which paper row (one line)."""
    return "Roles: " + "; ".join(
        f"`{arm}` = {why}" + (f" ~ paper '{name}'" if name else "") for arm, (name, why) in ARM_PAPER_ROLES.items()) + "."


def render_markdown(rows: Sequence[Mapping[str, Any]], *, header: Mapping[str, str], command: str,
                    source: str = "synthetic") -> str:
    """table8.md: our arms (D1 / D2 / Fl / SF per region, bootstrap intervals), then our ``all``
    rates beside the paper's OSF / ISF / ISF with KINS rows (paper-reported on KITTI 2015)."""
    from asn import paper

    title = ("synthetic stereo world, not KITTI" if source == "synthetic" else f"{source}")
    lines = [f"# Table 8: scene flow errors (%) with instance masks — {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in header.items()]
    lines += [f"- **Regenerate**: `{command}`", ""]
    columns = [(m, r) for m in ("D1", "D2", "Fl", "SF") for r in ("bg", "fg", "all")]
    lines.append("| Arm | Seeds | " + " | ".join(f"{m}-{r}" for m, r in columns) + " |")
    lines.append("|---" * (len(columns) + 2) + "|")
    for row in rows:
        cells = []
        for m, r in columns:
            rate = row["rates"].get(m, {}).get(r, {}).get("rate")
            low, high = row["interval"].get(m, {}).get(r, [None, None])
            cells.append("n/a" if rate is None else
                         f"{rate:.2f} [{low:.2f}, {high:.2f}]" if low is not None else f"{rate:.2f}")
        lines.append(f"| {row['label']} (`{row['arm']}`) | {row['seeds']} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: pooled outlier rate in percent (KITTI 2015 devkit rules: > 3 px and > 5 %), "
              "[95 % percentile bootstrap interval over scenes and seeds]. bg / fg from the object map.", ""]
    metrics = paper.TABLE8_METRICS
    lines += [f"## Beside the paper ({paper.LABEL_KITTI})", "",
              "| Row | Role | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
    for row in rows:
        name, why = ARM_PAPER_ROLES.get(row["arm"], (None, "no paper counterpart"))
        cells = [row["rates"].get(m, {}).get("all", {}).get("rate") for m in metrics]
        lines.append(f"| ours: `{row['arm']}` (-all) | {why}" + (f" ~ paper '{name}'" if name else "") + " | "
                     + " | ".join("n/a" if v is None else f"{v:.2f}" for v in cells) + " |")
    for item in paper_rows():
        lines.append(f"| paper: {item['row']} | {paper.LABEL_KITTI} | "
                     + " | ".join(f"{item['errors'][m]:.2f}" for m in metrics) + " |")
    lines += ["", roles_line(),
              f"Paper rows: {paper.LABEL_KITTI} ({paper.cite('Table 8')}): errors in percent on the KITTI 2015 "
              "validation set, background and foreground averaged; OSF = Menze and Geiger 2015, ISF = Behl et al. "
              "2017, ISF with KINS = ISF with instance masks from a model trained on KINS. Context, not a result of "
              "this project; ours are the -all rates of the arms above"
              + (" on synthetic data, so their level is not comparable." if source == "synthetic" else "."), ""]
    return "\n".join(lines)


CSV_COLUMNS = ("arm", "seeds", "metric", "region", "rate", "low", "high", "outliers", "pixels", "source", "paper_row")


def render_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """table8.csv: one line per (arm, metric, region) of ours, then one per (paper row, metric)
    (region ``all``, source paper-reported on KITTI 2015); ``paper_row`` = the paper row an arm
    plays (:data:`ARM_PAPER_ROLES`)."""
    from asn import paper

    lines = [",".join(CSV_COLUMNS)]
    for row in rows:
        counterpart = ARM_PAPER_ROLES.get(row["arm"], (None, ""))[0] or ""
        for m in ("D1", "D2", "Fl", "SF"):
            for r in ("bg", "fg", "all"):
                cell = row["rates"][m][r]
                low, high = row["interval"][m][r]
                lines.append(",".join(str(x) for x in (
                    row["arm"], row["seeds"], m, r, "" if cell["rate"] is None else f"{cell['rate']:.4f}",
                    "" if low is None else f"{low:.4f}", "" if high is None else f"{high:.4f}",
                    cell["outliers"], cell["pixels"], "ours", counterpart)))
    for item in paper_rows():
        for m in paper.TABLE8_METRICS:
            lines.append(",".join((item["row"], "", m, "all", f"{item['errors'][m]:.2f}", "", "", "", "",
                                   paper.LABEL_KITTI, item["row"])))
    return "\n".join(lines) + "\n"


def plot_error_maps(frame: Mapping[str, Any], estimates: Mapping[str, Mapping[str, np.ndarray]], path: Path,
                    *, title: str) -> None:
    """Fl outlier maps of one scene, one panel per arm (red: outlier, grey: inlier)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from asn.sceneflow.metrics import flow_outliers, interpolate_background_flow

    gt, gt_valid = frame["flow"]
    panels = [("left image at t", frame["left0"])]
    for arm, estimate in estimates.items():
        filled, _ = interpolate_background_flow(estimate["flow"].astype(np.float32), estimate["flow_valid"])
        outliers = flow_outliers(gt, filled)
        picture = np.zeros(gt_valid.shape + (3,), dtype=np.uint8)
        picture[gt_valid] = (90, 90, 90)
        picture[gt_valid & outliers] = (220, 30, 30)
        rate = 100.0 * (gt_valid & outliers).sum() / max(gt_valid.sum(), 1)
        panels.append((f"{arm}: Fl {rate:.1f} %", picture))
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.7 * len(panels)))
    for axis, (label, picture) in zip(np.atleast_1d(axes), panels):
        axis.imshow(picture)
        axis.set_title(label, fontsize=9)
        axis.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    from asn.io import write_bytes_atomic
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


__all__ = ["ARMS", "ARM_PAPER_ROLES", "amodal_order", "arm_estimate", "input_estimate", "bootstrap_interval", "counts_array", "error_rates",
           "frame_counts", "paper_rows", "pool_counts", "predicted_masks", "read_frame", "render_csv",
           "render_markdown", "write_synthetic_scenes"]
