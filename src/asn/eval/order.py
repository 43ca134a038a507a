"""The scene's occlusion order from the predictions, and its score against KINS' own order.

KINS 2020 gives every instance an occlusion cluster ``oco_id`` (0 = overlaps nothing) and an
order inside it ``ico_id`` (1 = occluded by nobody in the cluster, +1 each time occluded;
DESIGN.md 2). A model predicts, per detection, an amodal mask ``A`` and an inmodal (visible)
mask ``I``; its invisible part is ``A \\ I``. From these this module rebuilds the layering:

- **front relation**: detection i is in front of j when i's visible mask covers j's invisible
  part by at least ``min_pixels`` pixels and by more than j's visible mask covers i's
  (``cover[i, j] = |I_i ∩ (A_j \\ I_j)|``, :func:`cover_counts`); equal covers are a tie (no
  relation);
- **clusters**: connected groups of detections whose amodal masks overlap by at least
  ``min_pixels`` (or that are in a front relation); a detection overlapping nothing is cluster 0;
  clusters are numbered 1, 2, ... by their lowest member;
- **order** (KINS 2020's definition): ``ico_id`` 1 for a member nobody in front of, else 1 + the
  largest ``ico_id`` of the members in front of it. A cycle of front relations (a before b
  before c before a) is broken by dropping its weakest relation (smallest cover margin), the
  strongest relations being kept first (:func:`order_from_front`).

:func:`add_scene_order` writes ``oco_id`` / ``ico_id`` into prediction entries (``asn evaluate``
and ``asn predict``). :func:`order_scores` scores the front relations against the ground truth
(ORDER_DEFINITION, written beside the numbers in every metrics JSON): detections are matched
one-to-one to ground-truth instances by amodal mask IoU, best pair first; over the ground-truth
pairs that overlap, the share of both-matched pairs whose predicted relation is the true one.

Shapes: ``K`` detections (or instances) of one image, masks ``[K, H, W]`` bool or compressed
RLEs; matrices ``[K, K]``; ids ``(K,)`` int64.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping, MutableMapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from asn.errors import InputError

__all__ = [
    "DEFAULT_MIN_PIXELS", "DEFAULT_SCORE_THRESHOLD", "DEFAULT_IOU_MATCH", "ORDER_DEFINITION",
    "ORDER_METRIC_KEYS", "decode_flat", "cover_counts", "front_relation", "order_from_front",
    "scene_order", "scene_order_from_rles", "add_scene_order", "match_by_mask_iou",
    "ground_truth_pairs", "score_image", "order_scores", "segmentation_rle", "orders_of",
]

DEFAULT_MIN_PIXELS = 10  # the pixel floor of a front relation and of an overlap
DEFAULT_SCORE_THRESHOLD = 0.5  # detections below it take no part in the scene's order
DEFAULT_IOU_MATCH = 0.5  # amodal mask IoU to match a detection to a ground-truth instance

# The keys order_scores adds to a metrics JSON (percentages, counts, settings).
ORDER_METRIC_KEYS = (
    "order_pair_accuracy", "order_pair_coverage", "order_cluster_accuracy", "order_cluster_coverage",
    "order_pairs", "order_pairs_matched", "order_pairs_correct", "order_pairs_tied_in_ground_truth",
    "order_clusters", "order_clusters_matched", "order_clusters_correct", "order_detections",
    "order_score_threshold", "order_min_pixels", "order_iou_match", "order_definition",
)

ORDER_DEFINITION = (
    "Scene order from the predictions: detection i is in front of detection j when i's inmodal "
    "(visible) mask covers j's invisible part (amodal minus inmodal) by at least order_min_pixels "
    "pixels and by more than j's inmodal mask covers i's invisible part (equal covers: no relation, "
    "a tie). Only detections with score >= order_score_threshold take part. Matching: per image, "
    "detections and ground-truth instances (any category) are matched one-to-one by amodal mask "
    "IoU >= order_iou_match, the highest-IoU pair first. Ground-truth pairs: two instances of the "
    "same KINS cluster (oco_id != 0) with different ico_id whose amodal masks overlap where one of "
    "them is seen (the visible overlap |inmodal_a ∩ (amodal_b minus inmodal_b)|, or the reverse, "
    ">= order_min_pixels); the instance with the smaller ico_id is in front (pairs of equal ico_id "
    "are left out and counted in order_pairs_tied_in_ground_truth). order_pair_accuracy: percentage "
    "of the ground-truth pairs whose two instances are both matched where the predicted relation of "
    "the two matched detections is the true one (a tie or the reverse is wrong); "
    "order_pair_coverage: percentage of the ground-truth pairs whose two instances are both matched. "
    "A ground-truth cluster (one with at least one such pair) is matched when every instance of its "
    "pairs is matched, and right when it is matched and all its pairs are right: "
    "order_cluster_accuracy = right / matched clusters, order_cluster_coverage = matched / all "
    "clusters, in percent. Null where the denominator is 0. Pooled over images."
)


# --------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------

def segmentation_rle(segmentation: Any, height: int, width: int) -> dict:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) -> compressed RLE
    (``counts`` bytes or str, as pycocotools takes it) at ``height`` x ``width``."""
    if isinstance(segmentation, list):
        if not segmentation:
            return mask_utils.encode(np.zeros((height, width, 1), np.uint8, order="F"))[0]
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def decode_flat(rles: Sequence[Mapping]) -> np.ndarray:
    """K compressed RLEs of one image (H x W) -> ``[H * W, K]`` bool, pixels in column order.

    Zero RLEs give a ``[0, 0]`` array.
    """
    if len(rles) == 0:
        return np.zeros((0, 0), dtype=bool)
    masks = mask_utils.decode(list(rles))  # (H, W, K) Fortran-ordered uint8
    return masks.reshape(-1, masks.shape[2], order="F").view(bool)


def _as_flat(masks: np.ndarray) -> np.ndarray:
    """``[K, H, W]`` bool masks -> ``[H * W, K]`` bool."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape [K, H, W], got {masks.shape}")
    return masks.reshape(masks.shape[0], -1).T


def cover_counts(amodal_flat: np.ndarray, inmodal_flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel counts between the K masks of one image, given as ``[P, K]`` bool (P pixels).

    Returns ``(cover, overlap)``, both ``[K, K]`` int64 with a zero diagonal:
    ``cover[i, j] = |inmodal_i ∩ (amodal_j \\ inmodal_j)|`` (how much of j's invisible part i's
    visible mask covers) and ``overlap[i, j] = |amodal_i ∩ amodal_j|``. Only the pixels that at
    least two masks touch are multiplied, so the products stay small and exact.
    """
    amodal = np.asarray(amodal_flat, dtype=bool)
    inmodal = np.asarray(inmodal_flat, dtype=bool)
    if amodal.shape != inmodal.shape or amodal.ndim != 2:
        raise ValueError(f"amodal and inmodal masks must both be [P, K], got {amodal.shape} and {inmodal.shape}")
    k = amodal.shape[1]
    if k == 0:
        return np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64)
    extent = amodal | inmodal
    shared = np.count_nonzero(extent, axis=1) >= 2
    if not shared.any():
        return np.zeros((k, k), np.int64), np.zeros((k, k), np.int64)
    a = amodal[shared]
    i = inmodal[shared]
    hidden = (a & ~i).astype(np.float32)
    a32 = a.astype(np.float32)
    # float32 products of 0/1 are exact below 2**24 pixels; rounded to be safe
    cover = np.rint(i.astype(np.float32).T @ hidden).astype(np.int64)
    overlap = np.rint(a32.T @ a32).astype(np.int64)
    np.fill_diagonal(cover, 0)
    np.fill_diagonal(overlap, 0)
    return cover, overlap


def front_relation(cover: np.ndarray, min_pixels: int = DEFAULT_MIN_PIXELS) -> np.ndarray:
    """``[K, K]`` cover counts -> ``[K, K]`` bool, True where i is in front of j:
    ``cover[i, j] >= min_pixels`` and ``cover[i, j] > cover[j, i]`` (never both directions)."""
    cover = np.asarray(cover)
    if cover.ndim != 2 or cover.shape[0] != cover.shape[1]:
        raise ValueError(f"cover must be a square [K, K] matrix, got {cover.shape}")
    front = (cover >= max(int(min_pixels), 1)) & (cover > cover.T)
    np.fill_diagonal(front, False)
    return front


# --------------------------------------------------------------------------------------------
# Order
# --------------------------------------------------------------------------------------------

def _components(graph: np.ndarray) -> np.ndarray:
    """Connected-component labels ``(K,)`` of a symmetric ``[K, K]`` bool graph."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    return connected_components(csr_matrix(graph), directed=False)[1].astype(np.int64)


def _reaches(adjacency: list[set[int]], start: int, goal: int) -> bool:
    stack, seen = [start], {start}
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for nxt in adjacency[node]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def order_from_front(front: np.ndarray, overlap: np.ndarray | None = None,
                     margin: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cluster and order ids from a ``[K, K]`` bool front relation (``front[i, j]``: i in front of j).

    overlap: ``[K, K]`` bool, pairs that overlap without a relation (they join clusters too);
    margin: ``[K, K]`` strength of each relation (default 1 for all), used only to break cycles:
    relations are kept strongest first (ties by index) and one that would close a cycle is
    dropped. Returns ``(oco_ids, ico_ids)``, ``(K,)`` int64: clusters are the connected groups of
    ``front | front.T | overlap``, numbered 1, 2, ... by their lowest member (0 = alone, with
    ``ico_id`` 1); ``ico_id`` is 1 for a member nobody is in front of, else 1 + the largest
    ``ico_id`` of those in front of it.
    """
    front = np.asarray(front, dtype=bool)
    k = front.shape[0] if front.ndim == 2 else -1
    if front.ndim != 2 or front.shape != (k, k):
        raise ValueError(f"front must be a square [K, K] matrix, got {front.shape}")
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    graph = front | front.T
    if overlap is not None:
        overlap = np.asarray(overlap, dtype=bool)
        if overlap.shape != (k, k):
            raise ValueError(f"overlap must have shape ({k}, {k}), got {overlap.shape}")
        graph = graph | overlap | overlap.T
    np.fill_diagonal(graph, False)
    labels = _components(graph)
    sizes = np.bincount(labels)
    oco = np.zeros(k, np.int64)
    numbers: dict[int, int] = {}
    for i in range(k):
        if sizes[labels[i]] > 1:
            oco[i] = numbers.setdefault(int(labels[i]), len(numbers) + 1)

    # keep the relations strongest first, skipping one that would close a cycle
    strength = np.ones((k, k)) if margin is None else np.asarray(margin, dtype=np.float64)
    rows, cols = np.nonzero(front)
    keep_order = np.lexsort((cols, rows, -strength[rows, cols]))
    adjacency: list[set[int]] = [set() for _ in range(k)]
    for e in keep_order:
        i, j = int(rows[e]), int(cols[e])
        if not _reaches(adjacency, j, i):
            adjacency[i].add(j)

    # longest-path layers (Kahn's order over the kept, acyclic relations)
    indegree = np.zeros(k, np.int64)
    for i in range(k):
        for j in adjacency[i]:
            indegree[j] += 1
    ico = np.ones(k, np.int64)
    ready = [i for i in range(k) if indegree[i] == 0]
    while ready:
        i = ready.pop()
        for j in adjacency[i]:
            ico[j] = max(ico[j], ico[i] + 1)
            indegree[j] -= 1
            if indegree[j] == 0:
                ready.append(j)
    return oco, ico


def _order_from_flat(amodal_flat: np.ndarray, inmodal_flat: np.ndarray,
                     min_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    cover, overlap = cover_counts(amodal_flat, inmodal_flat)
    front = front_relation(cover, min_pixels)
    return order_from_front(front, overlap >= max(int(min_pixels), 1), margin=cover - cover.T)


def scene_order(amodal_masks: np.ndarray, inmodal_masks: np.ndarray,
                min_pixels: int = DEFAULT_MIN_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """``[K, H, W]`` bool amodal and inmodal masks of one image -> ``(oco_ids, ico_ids)`` ``(K,)``
    int64 (the module doc's rules)."""
    amodal = np.asarray(amodal_masks, dtype=bool)
    inmodal = np.asarray(inmodal_masks, dtype=bool)
    if amodal.shape != inmodal.shape:
        raise ValueError(f"amodal masks {amodal.shape} and inmodal masks {inmodal.shape} differ in shape")
    if amodal.ndim != 3:
        raise ValueError(f"masks must have shape [K, H, W], got {amodal.shape}")
    if amodal.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return _order_from_flat(_as_flat(amodal), _as_flat(inmodal), min_pixels)


def scene_order_from_rles(amodal_rles: Sequence[Mapping], inmodal_rles: Sequence[Mapping],
                          min_pixels: int = DEFAULT_MIN_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """K compressed amodal and inmodal RLEs of one image -> ``(oco_ids, ico_ids)`` ``(K,)`` int64."""
    if len(amodal_rles) != len(inmodal_rles):
        raise ValueError(f"{len(amodal_rles)} amodal but {len(inmodal_rles)} inmodal masks")
    if len(amodal_rles) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return _order_from_flat(decode_flat(amodal_rles), decode_flat(inmodal_rles), min_pixels)


def _by_image(entries: Sequence[Mapping]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for index, entry in enumerate(entries):
        groups[entry["image_id"]].append(index)
    return groups


def add_scene_order(entries: Sequence[MutableMapping], *, score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                    min_pixels: int = DEFAULT_MIN_PIXELS) -> Sequence[MutableMapping]:
    """Write ``oco_id`` and ``ico_id`` into every prediction entry (in place; returns ``entries``).

    Per image, the detections with ``score >= score_threshold`` are ordered by the module doc's
    rules (``segmentation`` = amodal RLE, ``inmodal_segmentation`` = inmodal RLE); the others get
    ``oco_id`` 0 and ``ico_id`` 0 (not ordered: below the threshold).
    """
    for indices in _by_image(entries).values():
        kept = [i for i in indices if entries[i]["score"] >= score_threshold]
        for i in indices:
            entries[i]["oco_id"], entries[i]["ico_id"] = 0, 0
        if not kept:
            continue
        oco, ico = scene_order_from_rles([entries[i]["segmentation"] for i in kept],
                                         [entries[i]["inmodal_segmentation"] for i in kept], min_pixels)
        for i, o, c in zip(kept, oco.tolist(), ico.tolist()):
            entries[i]["oco_id"], entries[i]["ico_id"] = int(o), int(c)
    return entries


# --------------------------------------------------------------------------------------------
# Scoring against the ground truth
# --------------------------------------------------------------------------------------------

def match_by_mask_iou(det_rles: Sequence[Mapping], gt_rles: Sequence[Mapping],
                      iou_match: float = DEFAULT_IOU_MATCH) -> np.ndarray:
    """One-to-one matching of D detections to G ground truths of one image by amodal mask IoU.

    Pairs with IoU >= ``iou_match`` are taken highest IoU first (ties: lower detection index,
    then lower ground-truth index), each detection and ground truth at most once. Returns
    ``(G,)`` int64: the matched detection of each ground truth, -1 where none.
    """
    matched = np.full(len(gt_rles), -1, np.int64)
    if len(det_rles) == 0 or len(gt_rles) == 0:
        return matched
    iou = np.asarray(mask_utils.iou(list(det_rles), list(gt_rles), [0] * len(gt_rles)), np.float64)
    iou = iou.reshape(len(det_rles), len(gt_rles))
    d, g = np.nonzero(iou >= iou_match)
    taken = np.zeros(len(det_rles), bool)
    for e in np.lexsort((g, d, -iou[d, g])):
        di, gi = int(d[e]), int(g[e])
        if not taken[di] and matched[gi] < 0:
            taken[di] = True
            matched[gi] = di
    return matched


def ground_truth_pairs(cover: np.ndarray, oco_ids: Sequence[int], ico_ids: Sequence[int],
                       min_pixels: int = DEFAULT_MIN_PIXELS) -> tuple[np.ndarray, int]:
    """The ordered ground-truth pairs of one image (ORDER_DEFINITION).

    cover: ``[G, G]`` cover counts of the ground truth's masks (:func:`cover_counts`);
    oco_ids / ico_ids: ``(G,)``. Returns ``(pairs, tied)``: ``pairs`` ``[M, 2]`` int64, each row
    (front instance, back instance), and the number of overlapping same-cluster pairs left out
    because their ico_ids are equal.
    """
    oco = np.asarray(oco_ids, np.int64).reshape(-1)
    ico = np.asarray(ico_ids, np.int64).reshape(-1)
    g = oco.shape[0]
    cover = np.asarray(cover)
    if cover.shape != (g, g) or ico.shape[0] != g:
        raise ValueError(f"cover {cover.shape}, oco_ids ({g},) and ico_ids ({ico.shape[0]},) disagree")
    if g == 0:
        return np.zeros((0, 2), np.int64), 0
    visible = np.maximum(cover, cover.T) >= max(int(min_pixels), 1)
    same = (oco[:, None] == oco[None, :]) & (oco[:, None] != 0)
    candidate = np.triu(visible & same, k=1)
    a, b = np.nonzero(candidate)
    tied = int((ico[a] == ico[b]).sum())
    ordered = ico[a] != ico[b]
    a, b = a[ordered], b[ordered]
    front = np.where(ico[a] < ico[b], a, b)
    back = np.where(ico[a] < ico[b], b, a)
    return np.stack([front, back], axis=1).astype(np.int64), tied


def score_image(gt_amodal: Sequence[Mapping], gt_inmodal: Sequence[Mapping], oco_ids: Sequence[int],
                ico_ids: Sequence[int], det_amodal: Sequence[Mapping], det_inmodal: Sequence[Mapping], *,
                min_pixels: int = DEFAULT_MIN_PIXELS, iou_match: float = DEFAULT_IOU_MATCH) -> dict[str, Any]:
    """Order counts of one image: G ground-truth instances (compressed RLEs + their KINS order)
    against D detections (compressed RLEs, already filtered by score).

    Returns counts ``pairs``, ``pairs_matched``, ``pairs_correct``, ``pairs_tied``, ``clusters``,
    ``clusters_matched``, ``clusters_correct`` and ``matched`` ``(G,)`` (the detection matched to
    each ground truth, -1 = none).
    """
    if len(gt_amodal) != len(gt_inmodal) or len(det_amodal) != len(det_inmodal):
        raise ValueError("amodal and inmodal masks differ in number")
    gt_cover, _ = cover_counts(decode_flat(gt_amodal), decode_flat(gt_inmodal))
    pairs, tied = ground_truth_pairs(gt_cover, oco_ids, ico_ids, min_pixels)
    matched = match_by_mask_iou(det_amodal, gt_amodal, iou_match)
    out = {"pairs": int(len(pairs)), "pairs_matched": 0, "pairs_correct": 0, "pairs_tied": tied,
           "clusters": 0, "clusters_matched": 0, "clusters_correct": 0, "matched": matched}
    if len(pairs) == 0:
        return out
    both = (matched[pairs[:, 0]] >= 0) & (matched[pairs[:, 1]] >= 0)
    correct = np.zeros(len(pairs), bool)
    if both.any():
        used = sorted({int(matched[g]) for g in pairs[both].reshape(-1)})
        local = {d: n for n, d in enumerate(used)}
        det_cover, _ = cover_counts(decode_flat([det_amodal[d] for d in used]),
                                    decode_flat([det_inmodal[d] for d in used]))
        det_front = front_relation(det_cover, min_pixels)
        for p in np.flatnonzero(both):
            i, j = local[int(matched[pairs[p, 0]])], local[int(matched[pairs[p, 1]])]
            correct[p] = bool(det_front[i, j])
    out["pairs_matched"] = int(both.sum())
    out["pairs_correct"] = int(correct.sum())
    oco = np.asarray(oco_ids, np.int64).reshape(-1)
    cluster_of_pair = oco[pairs[:, 0]]
    for cluster in np.unique(cluster_of_pair):
        members = cluster_of_pair == cluster
        out["clusters"] += 1
        if both[members].all():
            out["clusters_matched"] += 1
            out["clusters_correct"] += int(correct[members].all())
    return out


def _percent(numerator: int, denominator: int) -> float | None:
    return 100.0 * numerator / denominator if denominator else None


def order_scores(predictions: Sequence[Mapping], amodal: Mapping, inmodal: Mapping, *,
                 score_threshold: float = DEFAULT_SCORE_THRESHOLD, min_pixels: int = DEFAULT_MIN_PIXELS,
                 iou_match: float = DEFAULT_IOU_MATCH, per_image: MutableMapping | None = None) -> dict[str, Any]:
    """The order metrics of ORDER_DEFINITION (keys ORDER_METRIC_KEYS) for validated predictions
    against the parsed normalized ground truth (``<split>_amodal.json`` / ``_inmodal.json``
    dicts, same annotation ids, each annotation with ``oco_id`` and ``ico_id``).

    per_image: if given, filled with ``image_id -> counts`` of :func:`score_image` (without
    ``matched``), for the viewer.
    """
    if not 0 <= float(score_threshold) <= 1:
        raise InputError(None, f"order score threshold must be in [0, 1], got {score_threshold}")
    if int(min_pixels) < 1:
        raise InputError(None, f"order min_pixels must be >= 1, got {min_pixels}")
    sizes = {img["id"]: (int(img["height"]), int(img["width"])) for img in amodal["images"]}
    inmodal_by_id = {ann["id"]: ann for ann in inmodal["annotations"]}
    gts: dict[int, list[Mapping]] = defaultdict(list)
    for ann in amodal["annotations"]:
        if not ann.get("iscrowd", 0):
            gts[ann["image_id"]].append(ann)
    dets: dict[int, list[Mapping]] = defaultdict(list)
    for p in predictions:
        if p["score"] >= score_threshold:
            dets[p["image_id"]].append(p)
    totals = defaultdict(int)
    for image_id, anns in gts.items():
        height, width = sizes[image_id]
        missing = [a["id"] for a in anns if a["id"] not in inmodal_by_id]
        if missing:
            raise InputError(None, f"annotation {missing[0]} of image {image_id} has no inmodal counterpart")
        gt_amodal = [segmentation_rle(a["segmentation"], height, width) for a in anns]
        gt_inmodal = [segmentation_rle(inmodal_by_id[a["id"]]["segmentation"], height, width) for a in anns]
        found = dets.get(image_id, [])
        counts = score_image(gt_amodal, gt_inmodal, [int(a.get("oco_id") or 0) for a in anns],
                             [int(a.get("ico_id") or 0) for a in anns],
                             [p["segmentation"] for p in found], [p["inmodal_segmentation"] for p in found],
                             min_pixels=min_pixels, iou_match=iou_match)
        counts.pop("matched")
        for key, value in counts.items():
            totals[key] += value
        if per_image is not None:
            per_image[image_id] = counts
    return {
        "order_pair_accuracy": _percent(totals["pairs_correct"], totals["pairs_matched"]),
        "order_pair_coverage": _percent(totals["pairs_matched"], totals["pairs"]),
        "order_cluster_accuracy": _percent(totals["clusters_correct"], totals["clusters_matched"]),
        "order_cluster_coverage": _percent(totals["clusters_matched"], totals["clusters"]),
        "order_pairs": totals["pairs"],
        "order_pairs_matched": totals["pairs_matched"],
        "order_pairs_correct": totals["pairs_correct"],
        "order_pairs_tied_in_ground_truth": totals["pairs_tied"],
        "order_clusters": totals["clusters"],
        "order_clusters_matched": totals["clusters_matched"],
        "order_clusters_correct": totals["clusters_correct"],
        "order_detections": int(sum(len(v) for v in dets.values())),
        "order_score_threshold": float(score_threshold),
        "order_min_pixels": int(min_pixels),
        "order_iou_match": float(iou_match),
        "order_definition": ORDER_DEFINITION,
    }


def orders_of(entries: Iterable[Mapping]) -> list[tuple[int, int]]:
    """``(oco_id, ico_id)`` of each entry (0, 0 where absent): for overlays and the viewer."""
    return [(int(e.get("oco_id") or 0), int(e.get("ico_id") or 0)) for e in entries]
