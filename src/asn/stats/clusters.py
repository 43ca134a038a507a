"""Figure 4(c): occlusion-cluster statistics, and per-image mask overlap (match number, coverage).

- Max occlusion order of a cluster, as the paper defines it: the number of *occluded* instances
  in the (image, oco_id > 0) cluster, i.e. members with ico_id > 1 (ico_id 1 = nobody in the
  cluster occludes it). A two-instance cluster counts 1, a 3-deep chain 2. (Its largest ico_id
  would put every cluster at 2 or more and leave the bucket "1" empty.) Annotations with a
  null oco_id / ico_id (a release without orders) are skipped.
- Match number of an instance: how many *other* instances of the same image have an amodal
  mask overlapping its amodal mask (intersection > 0 pixels, pycocotools ``iou`` on RLEs,
  after a prefilter on the masks' boxes). Instances with 0 overlaps are counted in their own bucket
  ``0`` and are *excluded* from the 1..5 / >5 distribution drawn in Figure 4(c).
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from asn.data import rle as rle_ops

BUCKET_LABELS: tuple[str, ...] = ("1", "2", "3", "4", "5", ">5")
MAX_ORDER_DEFINITION = ("max occlusion order of a cluster = number of occluded instances in it "
                        "(members with ico_id > 1; paper's definition: a two-instance cluster counts 1)")


def max_order_per_cluster(
    image_ids: np.ndarray, oco_ids: np.ndarray, ico_ids: np.ndarray
) -> np.ndarray:
    """Max occlusion order of each (image, oco_id > 0) cluster: its members with ico_id > 1.

    Args:
        image_ids, oco_ids, ico_ids: int [n] per instance (use -1 for a null order).
    Returns:
        int64 [clusters] occluded instances per cluster (cluster order: sorted by image, oco_id).
    """
    image_ids = np.asarray(image_ids, np.int64)
    oco_ids = np.asarray(oco_ids, np.int64)
    ico_ids = np.asarray(ico_ids, np.int64)
    in_cluster = (oco_ids > 0) & (ico_ids > 0)
    if not in_cluster.any():
        return np.zeros(0, np.int64)
    keys = np.stack([image_ids[in_cluster], oco_ids[in_cluster]], axis=1)
    _, cluster_of = np.unique(keys, axis=0, return_inverse=True)
    cluster_of = cluster_of.reshape(-1)
    return np.bincount(cluster_of, weights=ico_ids[in_cluster] > 1).astype(np.int64)


def bucket_counts(values: np.ndarray) -> dict[str, int]:
    """Counts of values 1, 2, 3, 4, 5 and > 5 (values below 1 are not counted), plus ``0``."""
    values = np.asarray(values, np.int64)
    counts = {"0": int((values == 0).sum())}
    for v in range(1, 6):
        counts[str(v)] = int((values == v).sum())
    counts[">5"] = int((values > 5).sum())
    return counts


def boxes_overlap_xywh(boxes_xywh: np.ndarray) -> np.ndarray:
    """[n, n] bool: boxes with a positive-area intersection (diagonal False)."""
    b = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    x2 = b[:, 0] + b[:, 2]
    y2 = b[:, 1] + b[:, 3]
    iw = np.minimum(x2[:, None], x2[None, :]) - np.maximum(b[:, None, 0], b[None, :, 0])
    ih = np.minimum(y2[:, None], y2[None, :]) - np.maximum(b[:, None, 1], b[None, :, 1])
    overlap = (iw > 0) & (ih > 0)
    np.fill_diagonal(overlap, False)
    return overlap


def polygons_to_rles(segmentations: list[list[list[float]]], height: int, width: int) -> list[dict | None]:
    """One RLE per polygon segment (parts merged); None for a segment without a valid part.

    Parts with fewer than 3 vertices are dropped, as in :mod:`asn.stats.shapes`; the
    rasterization itself is the project's one (:func:`asn.data.rle.polygons_to_rles`).
    """
    valid = [[part for part in segmentation if len(part) >= 6] for segmentation in segmentations]
    rles = iter(rle_ops.polygons_to_rles([parts for parts in valid if parts], height, width))
    return [next(rles) if parts else None for parts in valid]


def image_overlap_stats(
    segmentations: list[list[list[float]]],
    height: int,
    width: int,
) -> tuple[np.ndarray, float]:
    """Match numbers and amodal coverage of one image.

    Args:
        segmentations: the image's amodal polygon segments (n).
        height, width: image size.
    Returns:
        ``(match_numbers int64 [n], covered_fraction)``: fraction of the image's pixels inside
        at least one amodal mask.
    """
    n = len(segmentations)
    match_numbers = np.zeros(n, np.int64)
    if n == 0 or height <= 0 or width <= 0:
        return match_numbers, 0.0
    rles = polygons_to_rles(segmentations, height, width)
    present = [i for i, r in enumerate(rles) if r is not None]
    if not present:
        return match_numbers, 0.0
    present_rles = [rles[i] for i in present]
    union = present_rles[0] if len(present_rles) == 1 else mask_utils.merge(present_rles, intersect=False)
    covered = float(mask_utils.area(union)) / float(height * width)
    # prefilter on the masks' own boxes (the annotation box may be rounded differently)
    if boxes_overlap_xywh(mask_utils.toBbox(present_rles)).any():
        iou = np.asarray(mask_utils.iou(present_rles, present_rles, [0] * len(present_rles)))
        touching = iou.reshape(len(present), len(present)) > 0
        np.fill_diagonal(touching, False)
        match_numbers[present] = touching.sum(axis=1)
    return match_numbers, covered
