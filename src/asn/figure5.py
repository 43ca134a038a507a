"""Paper Figure 5, measured: how large are the predicted amodal masks of occluded instances?

The paper (section 5.1, Figure 5) observes that Mask R-CNN trained longer (24,000 instead of
20,000 iterations) predicts smaller masks for the occluded parts of objects: it overfits to the
visible part. This module turns that picture into numbers, from a predictions file (the format of
``asn evaluate``) and the normalized ground truth:

- **occluded instances**: ground-truth annotations (not crowd) whose ``occlusion_ratio`` is above
  ``occluded_above`` (default 0.05, the OC branch's default threshold);
- **matching**: detections in decreasing score order are matched greedily to the not yet matched
  ground truth of the same image and category with the highest amodal IoU, if that IoU is at
  least ``iou_match`` (0.5); ``match="box"`` (default) uses the amodal *box* IoU, so a detection
  whose mask shrank still matches its object (a mask IoU would drop exactly the shrunk masks the
  figure is about); ``match="mask"`` uses the amodal mask IoU. All ground truths take part in the
  matching; the occluded ones are measured;
- **area ratio** of a matched occluded instance = area(predicted amodal mask) / area(ground-truth
  amodal mask): 1 = the right size, below 1 = shrunk;
- **hidden coverage** = area(predicted amodal mask ∩ ground-truth invisible part) / area(invisible
  part), the invisible part being amodal minus inmodal: how much of the occluded part is predicted.

:func:`area_ratios` returns both per instance and their means; bench/figure5.py evaluates them at
every snapshot of one long training run per variant and draws the figure.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

DEFINITION = ("area ratio = area(predicted amodal mask) / area(ground-truth amodal mask) of each occluded ground-truth "
              "instance (occlusion_ratio > occluded_above, not crowd) matched by a detection: detections in decreasing "
              "score order take the unmatched ground truth of the same image and category with the highest amodal IoU "
              "(box IoU by default, so a shrunk mask still matches) if it is >= iou_match; hidden coverage = "
              "area(predicted amodal mask ∩ (ground-truth amodal minus inmodal)) / area(amodal minus inmodal).")


def _rle(segmentation: Any, height: int, width: int) -> dict:
    """Any COCO segmentation (polygons, uncompressed or compressed RLE) as one compressed RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(segmentation, height, width)
        return mask_utils.merge(rles) if len(rles) != 1 else rles[0]
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    rle = dict(segmentation)
    if isinstance(rle.get("counts"), str):
        rle["counts"] = rle["counts"].encode("ascii")
    return rle


def _box_iou(a: Sequence[float], b: np.ndarray) -> np.ndarray:
    """IoU of one xywh box with N xywh boxes."""
    ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * \
        np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    union = a[2] * a[3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def area_ratios(amodal_gt: Mapping[str, Any], inmodal_gt: Mapping[str, Any], predictions: Sequence[Mapping[str, Any]], *,
                occluded_above: float = 0.05, iou_match: float = 0.5, match: str = "box",
                score_threshold: float = 0.0) -> dict[str, Any]:
    """Area ratio and hidden coverage of every matched occluded instance (module doc).

    ``amodal_gt`` / ``inmodal_gt``: the normalized COCO files of one split (same annotation ids);
    ``predictions``: entries with ``image_id``, ``category_id``, ``bbox`` (amodal xywh), ``score``,
    ``segmentation`` (amodal RLE). Detections scoring below ``score_threshold`` are left out.
    """
    from pycocotools import mask as mask_utils

    if match not in ("box", "mask"):
        raise ValueError(f"match: expected 'box' or 'mask', got {match!r}")
    images = {int(img["id"]): img for img in amodal_gt.get("images", [])}
    inmodal = {int(a["id"]): a for a in inmodal_gt.get("annotations", [])}
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for ann in amodal_gt.get("annotations", []):
        if not ann.get("iscrowd"):
            by_image.setdefault(int(ann["image_id"]), []).append(ann)
    dets_by_image: dict[int, list[Mapping[str, Any]]] = {}
    for det in predictions:
        if float(det.get("score", 0.0)) >= score_threshold:
            dets_by_image.setdefault(int(det["image_id"]), []).append(det)

    rows = []
    n_occluded = 0
    for image_id, anns in sorted(by_image.items()):
        image = images.get(image_id)
        if image is None:
            continue
        height, width = int(image["height"]), int(image["width"])
        occluded = [float(a.get("occlusion_ratio", 0.0)) > occluded_above for a in anns]
        n_occluded += sum(occluded)
        dets = sorted(dets_by_image.get(image_id, []), key=lambda d: -float(d["score"]))
        if not dets or not any(occluded):
            continue
        gt_boxes = np.asarray([a["bbox"] for a in anns], dtype=float).reshape(-1, 4)
        gt_rles = [_rle(a["segmentation"], height, width) for a in anns] if match == "mask" else None
        categories = np.asarray([int(a["category_id"]) for a in anns])
        taken = np.zeros(len(anns), dtype=bool)
        for det in dets:
            same = (categories == int(det["category_id"])) & ~taken
            if not same.any():
                continue
            if match == "box":
                ious = _box_iou(det["bbox"], gt_boxes)
            else:
                ious = np.asarray(mask_utils.iou([_rle(det["segmentation"], height, width)], gt_rles,
                                                 [0] * len(gt_rles)), dtype=float).reshape(-1)
            ious = np.where(same, ious, -1.0)
            best = int(np.argmax(ious))
            if ious[best] < iou_match:
                continue
            taken[best] = True
            if not occluded[best]:
                continue
            ann = anns[best]
            gt_amodal = mask_utils.decode(_rle(ann["segmentation"], height, width)).astype(bool)
            visible_ann = inmodal.get(int(ann["id"]))
            gt_visible = (mask_utils.decode(_rle(visible_ann["segmentation"], height, width)).astype(bool)
                          if visible_ann is not None else np.zeros_like(gt_amodal))
            predicted = mask_utils.decode(_rle(det["segmentation"], height, width)).astype(bool)
            area = int(gt_amodal.sum())
            if area == 0:
                continue
            hidden = gt_amodal & ~gt_visible
            rows.append({"annotation_id": int(ann["id"]), "image_id": image_id, "category_id": int(ann["category_id"]),
                         "occlusion_ratio": float(ann.get("occlusion_ratio", 0.0)), "score": float(det["score"]),
                         "ratio": float(predicted.sum()) / area,
                         "hidden_coverage": (float((predicted & hidden).sum()) / float(hidden.sum())
                                             if hidden.any() else None)})
    ratios = [r["ratio"] for r in rows]
    coverage = [r["hidden_coverage"] for r in rows if r["hidden_coverage"] is not None]
    return {"n_occluded": n_occluded, "n_matched": len(rows),
            "matched_fraction": len(rows) / n_occluded if n_occluded else None,
            "mean_ratio": float(np.mean(ratios)) if ratios else None,
            "median_ratio": float(np.median(ratios)) if ratios else None,
            "q25_ratio": float(np.percentile(ratios, 25)) if ratios else None,
            "q75_ratio": float(np.percentile(ratios, 75)) if ratios else None,
            "mean_hidden_coverage": float(np.mean(coverage)) if coverage else None,
            "ratios": ratios, "hidden_coverage": coverage, "instances": rows,
            "options": {"occluded_above": occluded_above, "iou_match": iou_match, "match": match,
                        "score_threshold": score_threshold}, "definition": DEFINITION}


def plot(runs: Sequence[Mapping[str, Any]], path, *, title: str) -> None:
    """Mean area ratio (line, interquartile band) and mean hidden coverage (dashed) against the
    iteration, one colour per variant; 1 = predicted masks of the right size."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from asn.io import write_bytes_atomic

    figure, axis = plt.subplots(figsize=(6.4, 3.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, run in enumerate(runs):
        snaps = [s for s in run.get("snapshots", []) if s.get("mean_ratio") is not None]
        if not snaps:
            continue
        colour = colours[index % len(colours)]
        x = [s["iteration"] for s in snaps]
        axis.plot(x, [s["mean_ratio"] for s in snaps], marker="o", color=colour,
                  label=f"{run['variant']}: predicted / true amodal area")
        axis.fill_between(x, [s["q25_ratio"] for s in snaps], [s["q75_ratio"] for s in snaps], color=colour, alpha=0.15)
        cover = [(s["iteration"], s["mean_hidden_coverage"]) for s in snaps if s.get("mean_hidden_coverage") is not None]
        if cover:
            axis.plot(*zip(*cover), ls="--", marker=".", color=colour, label=f"{run['variant']}: occluded part covered")
    axis.axhline(1.0, color="grey", lw=0.8, ls=":")
    axis.set_xlabel("training iteration")
    axis.set_ylabel("fraction (occluded instances)")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())
