"""Occlusion order <-> inmodal masks (DESIGN.md section 2, paper section 3.2).

KINS 2020 stores, per instance, an occlusion cluster ``oco_id`` (0 = overlaps nothing) and an
order inside the cluster ``ico_id`` (1 = not occluded by anyone in it, +1 each time occluded).
The paper's *segmentation transformation* turns amodal masks plus that order into inmodal
(visible) masks: inside a cluster, the intersection of two instances belongs to the one with the
smaller order. This module implements the transformation and its reverse (order from amodal masks
plus a depth order), as pure numpy functions.

Shapes: ``N`` instances, masks ``[N, H, W]`` bool; ids ``(N,)`` int64.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "overlap_matrix",
    "order_from_overlap",
    "order_from_depth",
    "inmodal_masks_from_order",
    "occlusion_ratio",
]


def _check_masks(amodal_masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(amodal_masks)
    if masks.ndim != 3:
        raise ValueError(f"amodal_masks must have shape [N, H, W], got {masks.shape}")
    return masks.astype(bool, copy=False)


def overlap_matrix(amodal_masks: np.ndarray) -> np.ndarray:
    """``[N, H, W]`` bool -> ``[N, N]`` bool: True where two masks share at least one pixel.

    The diagonal is False (an instance does not overlap itself).
    """
    masks = _check_masks(amodal_masks)
    n = masks.shape[0]
    if n == 0:
        return np.zeros((0, 0), dtype=bool)
    flat = masks.reshape(n, -1)
    # Restrict to pixels covered by at least two masks: the product is then small and exact.
    shared = flat.sum(axis=0) >= 2
    if not shared.any():
        return np.zeros((n, n), dtype=bool)
    sub = flat[:, shared].astype(np.float32)
    overlap = (sub @ sub.T) > 0.5
    np.fill_diagonal(overlap, False)
    return overlap


def _component_labels(overlap: np.ndarray) -> np.ndarray:
    """Connected-component labels of a symmetric ``[N, N]`` bool graph, ``(N,)`` int64."""
    n = overlap.shape[0]
    if n > 64:  # scipy pays off on large graphs; the label propagation below on small ones
        return connected_components(csr_matrix(overlap), directed=False)[1].astype(np.int64)
    labels = np.arange(n, dtype=np.int64)
    while True:
        # Each node takes the smallest label among itself and its neighbours, until stable.
        neighbour_min = np.where(overlap, labels[None, :], n).min(axis=1)
        new = np.minimum(labels, neighbour_min)
        if (new == labels).all():
            return labels
        labels = new


def order_from_overlap(overlap: np.ndarray, depth: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Cluster and order ids from a symmetric ``[N, N]`` bool overlap graph and ``(N,)`` depths.

    ``depth``: smaller = nearer the camera; ties are broken by index (lower index nearer).
    Clusters are the connected components of the overlap graph. A component of size 1 gets
    ``oco_id`` 0 and ``ico_id`` 1; larger ones are numbered 1, 2, ... by their lowest member
    index. ``ico_id`` is 1 when no nearer overlapping instance exists, else 1 + the largest
    ``ico_id`` among the nearer overlapping instances (a longest-path layer number), so every
    overlapping instance with a smaller order is in front.

    Returns ``(oco_ids, ico_ids)``, both ``(N,)`` int64.
    """
    overlap = np.asarray(overlap, dtype=bool)
    depth_arr = np.asarray(depth, dtype=np.float64).reshape(-1)
    n = depth_arr.shape[0]
    if overlap.shape != (n, n):
        raise ValueError(f"overlap must have shape ({n}, {n}) for {n} depths, got {overlap.shape}")
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if np.isnan(depth_arr).any():
        raise ValueError("depth contains NaN")
    overlap = overlap | overlap.T
    np.fill_diagonal(overlap, False)

    labels = _component_labels(overlap)
    sizes = np.bincount(labels)
    oco_ids = np.zeros(n, dtype=np.int64)
    next_id = 1
    seen: dict[int, int] = {}
    for i in range(n):  # ascending index: clusters numbered by their lowest member
        label = int(labels[i])
        if sizes[label] < 2:
            continue
        if label not in seen:
            seen[label] = next_id
            next_id += 1
        oco_ids[i] = seen[label]

    # Nearest first; lexsort's last key is primary, the index breaks ties.
    near_to_far = np.lexsort((np.arange(n), depth_arr))
    ico_ids = np.ones(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    for i in near_to_far:
        nearer = overlap[i] & done
        if nearer.any():
            ico_ids[i] = 1 + int(ico_ids[nearer].max())
        done[i] = True
    return oco_ids, ico_ids


def order_from_depth(amodal_masks: np.ndarray, depth: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Occlusion clusters and orders from ``[N, H, W]`` bool amodal masks and ``(N,)`` depths.

    Two instances overlap iff their amodal masks share >= 1 pixel; see
    :func:`order_from_overlap` for the numbering. Returns ``(oco_ids, ico_ids)`` ``(N,)`` int64.
    """
    masks = _check_masks(amodal_masks)
    depth_arr = np.asarray(depth, dtype=np.float64).reshape(-1)
    if depth_arr.shape[0] != masks.shape[0]:
        raise ValueError(f"got {masks.shape[0]} masks but {depth_arr.shape[0]} depths")
    return order_from_overlap(overlap_matrix(masks), depth_arr)


def inmodal_masks_from_order(
    amodal_masks: np.ndarray, oco_ids: Sequence[int], ico_ids: Sequence[int]
) -> np.ndarray:
    """The paper's segmentation transformation: ``[N, H, W]`` amodal -> ``[N, H, W]`` inmodal.

    ``inmodal_i = amodal_i - union(amodal_j : oco_j == oco_i != 0, ico_j < ico_i)``;
    an instance with ``oco_id`` 0 keeps its amodal mask.
    """
    masks = _check_masks(amodal_masks)
    oco = np.asarray(oco_ids, dtype=np.int64).reshape(-1)
    ico = np.asarray(ico_ids, dtype=np.int64).reshape(-1)
    n = masks.shape[0]
    if oco.shape[0] != n or ico.shape[0] != n:
        raise ValueError(f"got {n} masks but {oco.shape[0]} oco_ids and {ico.shape[0]} ico_ids")
    inmodal = masks.copy()
    for i in range(n):
        if oco[i] == 0:
            continue
        front = (oco == oco[i]) & (ico < ico[i])
        if front.any():
            inmodal[i] &= ~masks[front].any(axis=0)
    return inmodal


def occlusion_ratio(amodal_area, inmodal_area) -> np.ndarray:
    """``1 - inmodal_area / amodal_area`` elementwise (0 where the amodal area is 0).

    Accepts scalars or arrays of matching shape; returns a float64 array (0-d for scalars).
    """
    amodal = np.asarray(amodal_area, dtype=np.float64)
    inmodal = np.asarray(inmodal_area, dtype=np.float64)
    if amodal.shape != inmodal.shape:
        raise ValueError(f"amodal_area shape {amodal.shape} != inmodal_area shape {inmodal.shape}")
    ratio = np.zeros(amodal.shape, dtype=np.float64)
    positive = amodal > 0
    np.divide(inmodal, amodal, out=ratio, where=positive)
    return np.where(positive, 1.0 - ratio, 0.0)
