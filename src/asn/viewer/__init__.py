"""The static viewer of `asn view`: images, ground truth and the predictions of chosen runs.

:func:`build_site` writes a self-contained folder (no server-side code, no network):

- ``index.html`` and ``viewer.js`` (this package's files): per image the picture with toggles for
  the ground truth and the predictions of a chosen run, amodal outline, inmodal fill, order
  digits, a class filter, a score threshold, and the per-image numbers;
- ``data.js``: ``window.ASN_VIEW = {...}`` (a script, not JSON, so it loads from ``file://``):
  per image its file, size and instances, masks as COCO compressed RLE strings (decoded in
  the browser), per run its detections with the scene order (:mod:`asn.eval.order`), the
  per-image order counts and the run's metrics;
- ``images/<file_name>``: copies of the split's pictures;
- optionally ``figures``: :func:`asn.eval.overlay.scene_figure` PNGs (ground truth beside the first
  run, overlays with order digits above the layered views) of the first few images, for the report.

Instance records in data.js: ``k`` index, ``c`` category id, ``a`` / ``i`` amodal / inmodal RLE
counts, ``o`` ``ico_id``, ``p`` ``[x, y]`` of the order digit (a visible pixel near the visible
part's centroid); ground truth also ``oc`` (``oco_id``) and ``r`` (occlusion ratio), detections
``s`` (score).
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from asn.errors import InputError

ASSETS = ("index.html", "viewer.js")
# Whole-split numbers shown beside each run (metrics.json keys, labels).
METRIC_NAMES = (
    ("det_ap", "Det AP"), ("amodal_ap", "Amodal Seg AP"), ("inmodal_ap", "Inmodal Seg AP"),
    ("occlusion_accuracy", "occlusion accuracy (%)"), ("order_pair_accuracy", "pair order accuracy (%)"),
    ("order_pair_coverage", "pair order coverage (%)"), ("order_cluster_accuracy", "cluster order accuracy (%)"),
    ("order_cluster_coverage", "cluster order coverage (%)"),
)


def _counts_str(rle: Mapping) -> str:
    counts = rle["counts"]
    return counts.decode("ascii") if isinstance(counts, bytes) else counts


def _anchors(amodal_rles: Sequence[Mapping], inmodal_rles: Sequence[Mapping]) -> list[list[int] | None]:
    """``[x, y]`` of each instance's order digit (see :func:`asn.eval.overlay._digit_anchor`)."""
    from pycocotools import mask as mask_utils

    from asn.eval.overlay import _digit_anchor

    out: list[list[int] | None] = []
    for a, i in zip(amodal_rles, inmodal_rles):
        anchor = _digit_anchor(mask_utils.decode(i).astype(bool), mask_utils.decode(a).astype(bool))
        out.append(None if anchor is None else [anchor[0], anchor[1]])
    return out


def load_run(name: str, predictions_path: Path, metrics_path: Path | None, sizes: Mapping[int, tuple[int, int]],
             categories: Mapping[int, str]) -> dict[str, Any]:
    """One run's predictions (validated against the ground truth) and its metrics (if any)."""
    from asn.eval.predictions import load_predictions
    from asn.io import read_json

    predictions = load_predictions(predictions_path, sizes, categories, image_sizes=sizes)
    metrics = read_json(metrics_path) if metrics_path is not None and Path(metrics_path).is_file() else None
    if metrics is not None and not isinstance(metrics, dict):
        raise InputError(metrics_path, "expected a metrics object")
    return {"name": name, "predictions": predictions, "metrics": metrics, "source": str(predictions_path)}


def resolve_run(spec: str) -> tuple[str, Path, Path | None]:
    """``[NAME=]PATH`` -> ``(name, predictions.json, metrics.json or None)``: PATH is an evaluation
    folder (with predictions.json, and metrics.json if there) or a predictions file."""
    name, _, path_text = spec.rpartition("=") if "=" in spec else ("", "", spec)
    path = Path(path_text)
    if path.is_dir():
        predictions, metrics = path / "predictions.json", path / "metrics.json"
        if not predictions.is_file():
            raise InputError(predictions, "no predictions.json in this evaluation folder (run its evaluate stage, "
                                          "or asn evaluate --checkpoint ...)")
        return name or path.name, predictions, metrics if metrics.is_file() else None
    if not path.is_file():
        raise InputError(path, "no such evaluation folder or predictions file")
    return name or path.stem, path, None


def build_site(out_dir: str | os.PathLike, *, amodal_gt: str | os.PathLike, inmodal_gt: str | os.PathLike,
               images_dir: str | os.PathLike, runs: Sequence[tuple[str, Path, Path | None]] = (),
               min_score: float = 0.05, default_score: float = 0.5, order_score_threshold: float = 0.5,
               order_min_pixels: int = 10, order_iou_match: float = 0.5, max_images: int | None = None,
               figures: int = 0, figures_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write the viewer folder ``out_dir`` atomically (the module doc); returns a summary.

    runs: ``(name, predictions.json, metrics.json or None)``. Detections below ``min_score`` are
    left out of data.js (the viewer's threshold starts at ``default_score``). Predictions without
    ``oco_id`` / ``ico_id`` get them here (:func:`asn.eval.order.add_scene_order`, with
    ``order_score_threshold`` and ``order_min_pixels``), and the per-image order counts come from
    :func:`asn.eval.order.order_scores` with the same settings. max_images: only the first images
    of the split. figures: how many scene figures to write into ``figures_dir`` (default
    ``out_dir/figures``).
    """
    from asn.eval.coco import _check_pair, _load_ground_truth
    from asn.eval.order import add_scene_order, order_scores, segmentation_rle
    from asn.io import atomic_dir, dumps_json

    if not 0 <= min_score <= 1 or not 0 <= default_score <= 1:
        raise InputError(None, f"scores must be in [0, 1], got min_score {min_score}, default_score {default_score}")
    amodal = _load_ground_truth(amodal_gt, "amodal")
    inmodal = _load_ground_truth(inmodal_gt, "inmodal")
    _check_pair(amodal, inmodal, amodal_gt, inmodal_gt)
    images_dir = Path(images_dir)
    images = sorted(amodal["images"], key=lambda img: (img["file_name"], img["id"]))
    if max_images is not None:
        images = images[:max(0, int(max_images))]
    for img in images:
        if not (images_dir / img["file_name"]).is_file():
            raise InputError(images_dir / img["file_name"], "image of the ground truth not found",
                             record=f"image {img['id']}")
    sizes = {img["id"]: (int(img["height"]), int(img["width"])) for img in amodal["images"]}
    categories = {int(c["id"]): str(c.get("name", c["id"])) for c in amodal["categories"]}
    inmodal_by_id = {ann["id"]: ann for ann in inmodal["annotations"]}
    gt_by_image: dict[int, list[dict]] = {}
    for ann in amodal["annotations"]:
        gt_by_image.setdefault(ann["image_id"], []).append(ann)

    records = []
    for img in images:
        h, w = sizes[img["id"]]
        anns = gt_by_image.get(img["id"], [])
        a_rles = [segmentation_rle(ann["segmentation"], h, w) for ann in anns]
        i_rles = [segmentation_rle(inmodal_by_id[ann["id"]]["segmentation"], h, w) for ann in anns]
        anchors = _anchors(a_rles, i_rles)
        records.append({
            "id": img["id"], "file": img["file_name"], "src": "images/" + img["file_name"], "width": w, "height": h,
            "gt": [{"k": k, "c": int(ann["category_id"]), "a": _counts_str(a), "i": _counts_str(i),
                    "o": int(ann.get("ico_id") or 0), "oc": int(ann.get("oco_id") or 0),
                    "r": round(float(ann.get("occlusion_ratio", 0.0)), 4), "p": anchors[k]}
                   for k, (ann, a, i) in enumerate(zip(anns, a_rles, i_rles))],
        })
    shown_ids = {img["id"] for img in images}

    run_records, loaded = [], []
    for name, predictions_path, metrics_path in runs:
        run = load_run(name, Path(predictions_path), metrics_path, sizes, categories)
        predictions = run["predictions"]
        if predictions and any("ico_id" not in p or "oco_id" not in p for p in predictions):
            add_scene_order(predictions, score_threshold=order_score_threshold, min_pixels=order_min_pixels)
        per_image: dict[int, dict] = {}
        order_scores(predictions, amodal, inmodal, score_threshold=order_score_threshold,
                     min_pixels=order_min_pixels, iou_match=order_iou_match, per_image=per_image)
        by_image: dict[int, list[dict]] = {}
        for p in predictions:
            if p["image_id"] in shown_ids and p["score"] >= min_score:
                by_image.setdefault(p["image_id"], []).append(p)
        detections = {}
        for image_id, entries in by_image.items():
            entries.sort(key=lambda p: -p["score"])
            anchors = _anchors([p["segmentation"] for p in entries], [p["inmodal_segmentation"] for p in entries])
            detections[str(image_id)] = [
                {"k": k, "c": int(p["category_id"]), "s": round(float(p["score"]), 4),
                 "a": _counts_str(p["segmentation"]), "i": _counts_str(p["inmodal_segmentation"]),
                 "o": int(p.get("ico_id") or 0), "p": anchors[k]} for k, p in enumerate(entries)]
        metrics = run["metrics"] or {}
        run_records.append({
            "name": name, "source": run["source"], "detections": detections,
            "per_image": {str(k): v for k, v in per_image.items() if k in shown_ids},
            "order_settings": {"score_threshold": order_score_threshold, "min_pixels": order_min_pixels,
                               "iou_match": order_iou_match},
            "metrics": {key: metrics[key] for key, _ in METRIC_NAMES
                        if isinstance(metrics.get(key), (int, float))} if metrics else None,
        })
        loaded.append((name, predictions))

    data = {"images": records, "categories": {str(k): v for k, v in sorted(categories.items())},
            "runs": run_records, "default_score": float(default_score),
            "metric_names": [list(m) for m in METRIC_NAMES], "min_score": float(min_score)}
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        os.chmod(tmp, 0o755)  # a site others may serve (mkdtemp makes it private)
        for asset in ASSETS:
            (tmp / asset).write_bytes(resources.files("asn.viewer").joinpath(asset).read_bytes())
        (tmp / "data.js").write_bytes(b"window.ASN_VIEW = " + dumps_json(data) + b";\n")
        for img in images:
            target = tmp / "images" / img["file_name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(images_dir / img["file_name"], target)
    written = []
    if figures > 0:
        written = write_figures(figures_dir if figures_dir is not None else out_dir / "figures", images[:figures],
                                images_dir, gt_by_image, inmodal_by_id, sizes, categories, loaded[:1],
                                order_score_threshold)
    return {"out": str(out_dir), "images": len(records), "runs": [r["name"] for r in run_records],
            "detections": sum(len(v) for r in run_records for v in r["detections"].values()),
            "figures": [str(p) for p in written]}


def write_figures(folder: str | os.PathLike, images: Sequence[Mapping], images_dir: Path,
                  gt_by_image: Mapping[int, list], inmodal_by_id: Mapping[int, Mapping],
                  sizes: Mapping[int, tuple[int, int]], categories: Mapping[int, str],
                  runs: Sequence[tuple[str, list[dict]]], score_threshold: float) -> list[Path]:
    """Scene figures (ground truth beside each given run; overlay with order digits above the
    layered view) of ``images`` as ``folder/<stem>.png``; returns the paths."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    from asn.eval.order import segmentation_rle
    from asn.eval.overlay import save_png, scene_figure

    def stack(rles, h, w):
        if not rles:
            return np.zeros((0, h, w), bool)
        return np.moveaxis(mask_utils.decode(list(rles)).astype(bool), 2, 0)

    written = []
    for img in images:
        h, w = sizes[img["id"]]
        with Image.open(images_dir / img["file_name"]) as picture:
            rgb = np.asarray(picture.convert("RGB"))
        anns = gt_by_image.get(img["id"], [])
        panels = [("ground truth (KINS order)",
                   stack([segmentation_rle(a["segmentation"], h, w) for a in anns], h, w),
                   stack([segmentation_rle(inmodal_by_id[a["id"]]["segmentation"], h, w) for a in anns], h, w),
                   [categories.get(a["category_id"], "?") for a in anns], [1.0] * len(anns),
                   [int(a.get("ico_id") or 0) for a in anns])]
        for name, predictions in runs:
            kept = [p for p in predictions if p["image_id"] == img["id"] and p["score"] >= score_threshold]
            panels.append((f"{name} (score >= {score_threshold:g}, rebuilt order)",
                           stack([p["segmentation"] for p in kept], h, w),
                           stack([p["inmodal_segmentation"] for p in kept], h, w),
                           [categories.get(p["category_id"], "?") for p in kept], [p["score"] for p in kept],
                           [int(p.get("ico_id") or 0) for p in kept]))
        path = Path(folder) / f"{Path(img['file_name']).stem}.png"
        save_png(scene_figure(rgb, panels), path)
        written.append(path)
    return written
