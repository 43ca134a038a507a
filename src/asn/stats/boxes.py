"""Figure 4(b): consistency between boxes tightened from inmodal masks and KITTI ``label_2`` boxes.

Per training image, the inmodal boxes (tight boxes of the visible masks) and the KITTI boxes
(every object except ``DontCare``, all classes) are matched one-to-one by the Hungarian
assignment that maximises the total IoU (``scipy.optimize.linear_sum_assignment``).

Unmatched handling: a box left without a partner (more boxes on one side) or assigned a
partner with IoU 0 is *unmatched*; the image's mean IoU is taken over the matched pairs
(IoU > 0) only, and the unmatched boxes are counted separately. An image with no matched pair
has no mean IoU (NaN) and is left out of the histogram and the share.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from asn.errors import InputError


def read_kitti_label_boxes(path: str | os.PathLike) -> np.ndarray:
    """Boxes (x1, y1, x2, y2) of a KITTI ``label_2`` file, ``DontCare`` skipped.

    Returns:
        float64 [k, 4]. Raises InputError (file, line) on a malformed line.
    """
    path = Path(path)
    boxes = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 8:
            raise InputError(path, f"expected at least 8 fields, got {len(fields)}", f"line {line_no}")
        if fields[0] == "DontCare":
            continue
        try:
            boxes.append([float(v) for v in fields[4:8]])
        except ValueError:
            raise InputError(path, "box fields 5-8 are not numbers", f"line {line_no}") from None
    return np.asarray(boxes, np.float64).reshape(-1, 4)


def box_iou_xyxy(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of [n, 4] and [m, 4] (x1, y1, x2, y2) boxes -> [n, m] (0 for empty boxes)."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_boxes(boxes_a: np.ndarray, boxes_b: np.ndarray) -> dict[str, float | int]:
    """Hungarian matching of two box sets on IoU.

    Args:
        boxes_a, boxes_b: [n, 4] and [m, 4] (x1, y1, x2, y2).
    Returns:
        ``mean_iou`` over matched pairs (NaN when none), ``n_matched``, ``n_unmatched_a``,
        ``n_unmatched_b``.
    """
    iou = box_iou_xyxy(boxes_a, boxes_b)
    n, m = iou.shape
    if n == 0 or m == 0:
        return {"mean_iou": float("nan"), "n_matched": 0, "n_unmatched_a": n, "n_unmatched_b": m}
    rows, cols = linear_sum_assignment(iou, maximize=True)
    matched = iou[rows, cols] > 0
    n_matched = int(matched.sum())
    mean_iou = float(iou[rows, cols][matched].mean()) if n_matched else float("nan")
    return {
        "mean_iou": mean_iou,
        "n_matched": n_matched,
        "n_unmatched_a": n - n_matched,
        "n_unmatched_b": m - n_matched,
    }


def xywh_to_xyxy(boxes_xywh: np.ndarray) -> np.ndarray:
    """[n, 4] (x, y, w, h) -> (x1, y1, x2, y2)."""
    b = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def image_box_consistency(
    inmodal_boxes_by_image: list[np.ndarray],
    label_paths: list[Path],
) -> dict[str, np.ndarray]:
    """Per-image Hungarian box consistency.

    Args:
        inmodal_boxes_by_image: per image, [k, 4] inmodal boxes (x, y, w, h).
        label_paths: per image, its ``label_2`` file (a missing file raises InputError).
    Returns:
        dict of per-image arrays: mean_iou (NaN when no matched pair), n_matched,
        n_unmatched_mask (inmodal boxes without partner), n_unmatched_label.
    """
    n = len(label_paths)
    out = {
        "mean_iou": np.full(n, np.nan),
        "n_matched": np.zeros(n, np.int64),
        "n_unmatched_mask": np.zeros(n, np.int64),
        "n_unmatched_label": np.zeros(n, np.int64),
    }
    for i, (boxes, path) in enumerate(zip(inmodal_boxes_by_image, label_paths)):
        result = match_boxes(xywh_to_xyxy(boxes), read_kitti_label_boxes(path))
        out["mean_iou"][i] = result["mean_iou"]
        out["n_matched"][i] = result["n_matched"]
        out["n_unmatched_mask"][i] = result["n_unmatched_a"]
        out["n_unmatched_label"][i] = result["n_unmatched_b"]
    return out


def share_above(mean_ious: np.ndarray, threshold: float = 0.65) -> float:
    """Share of images (with a mean IoU) whose mean IoU is above ``threshold`` (NaN if none)."""
    values = np.asarray(mean_ious, np.float64)
    values = values[np.isfinite(values)]
    return float((values > threshold).mean()) if values.size else float("nan")
