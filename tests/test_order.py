"""Occlusion order <-> inmodal masks on hand-made cases (asn.data.order)."""

from __future__ import annotations

import numpy as np
import pytest

from asn.data.order import (
    inmodal_masks_from_order,
    occlusion_ratio,
    order_from_depth,
    overlap_matrix,
)


def _rect_masks(rects, h=10, w=20):
    masks = np.zeros((len(rects), h, w), dtype=bool)
    for k, (y0, y1, x0, x1) in enumerate(rects):
        masks[k, y0:y1, x0:x1] = True
    return masks


def test_chain_of_three_nearest_first():
    # A overlaps B, B overlaps C, A and C disjoint; depth A < B < C.
    masks = _rect_masks([(0, 5, 0, 6), (0, 5, 4, 10), (0, 5, 9, 14)])
    oco, ico = order_from_depth(masks, [1.0, 2.0, 3.0])
    assert oco.tolist() == [1, 1, 1]
    assert ico.tolist() == [1, 2, 3]
    assert oco.dtype == np.int64 and ico.dtype == np.int64
    inmodal = inmodal_masks_from_order(masks, oco, ico)
    assert inmodal[0].sum() == 30
    assert inmodal[1].sum() == 25 - 10 + 5  # columns 6..9 visible (4 cols x 5 rows)
    assert not inmodal[1][:5, 4:6].any() and inmodal[1][:5, 6:10].all()
    assert not inmodal[2][:5, 9].any() and inmodal[2][:5, 10:14].all()


def test_chain_where_middle_is_nearest():
    # B nearest: both A and C are occluded by B only, and get ico 2.
    masks = _rect_masks([(0, 5, 0, 6), (0, 5, 4, 10), (0, 5, 9, 14)])
    oco, ico = order_from_depth(masks, [2.0, 1.0, 3.0])
    assert ico.tolist() == [2, 1, 2]
    inmodal = inmodal_masks_from_order(masks, oco, ico)
    assert inmodal[1].sum() == masks[1].sum()
    assert inmodal[0].sum() == 5 * 4 and inmodal[2].sum() == 5 * 4


def test_two_clusters_and_an_isolated_instance():
    masks = _rect_masks([
        (0, 3, 0, 3),      # 0: isolated
        (5, 9, 0, 5),      # 1: cluster with 3
        (0, 4, 10, 15),    # 2: cluster with 4
        (6, 10, 3, 8),     # 3
        (2, 6, 12, 18),    # 4
    ])
    oco, ico = order_from_depth(masks, [5.0, 1.0, 9.0, 2.0, 3.0])
    assert oco.tolist() == [0, 1, 2, 1, 2]  # numbered by lowest member index
    assert ico.tolist() == [1, 1, 2, 2, 1]
    inmodal = inmodal_masks_from_order(masks, oco, ico)
    assert (inmodal[0] == masks[0]).all()
    assert (inmodal[3] == (masks[3] & ~masks[1])).all()
    assert (inmodal[2] == (masks[2] & ~masks[4])).all()


def test_ties_broken_by_index():
    masks = _rect_masks([(0, 5, 0, 6), (0, 5, 3, 9)])
    oco, ico = order_from_depth(masks, [4.0, 4.0])
    assert ico.tolist() == [1, 2]
    inmodal = inmodal_masks_from_order(masks, oco, ico)
    assert inmodal[0].sum() == 30 and inmodal[1].sum() == 15


def test_longest_path_layers_and_same_order_pairs_do_not_overlap():
    # Random rectangles: inside a cluster, overlapping instances never share an ico_id and the
    # nearer one always has the smaller order; the transformation equals far-to-near painting.
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 9))
        rects = []
        for _ in range(n):
            y0, x0 = int(rng.integers(0, 8)), int(rng.integers(0, 16))
            rects.append((y0, y0 + int(rng.integers(1, 5)), x0, x0 + int(rng.integers(1, 7))))
        masks = _rect_masks(rects)
        depth = rng.uniform(0, 10, n)
        oco, ico = order_from_depth(masks, depth)
        overlap = overlap_matrix(masks)
        for i in range(n):
            for j in range(n):
                if overlap[i, j]:
                    assert oco[i] == oco[j] != 0
                    assert (ico[i] < ico[j]) == (depth[i] < depth[j])
        painted = np.full(masks.shape[1:], -1)
        for i in np.argsort(-depth):
            painted[masks[i]] = i
        inmodal = inmodal_masks_from_order(masks, oco, ico)
        for i in range(n):
            assert (inmodal[i] == (painted == i)).all()


def test_empty_inputs():
    masks = np.zeros((0, 4, 5), dtype=bool)
    oco, ico = order_from_depth(masks, [])
    assert oco.shape == (0,) and ico.shape == (0,)
    assert inmodal_masks_from_order(masks, oco, ico).shape == (0, 4, 5)
    assert occlusion_ratio(np.zeros(0), np.zeros(0)).shape == (0,)


def test_mismatched_shapes_raise():
    masks = _rect_masks([(0, 2, 0, 2), (1, 3, 1, 3)])
    with pytest.raises(ValueError, match="depths"):
        order_from_depth(masks, [1.0])
    with pytest.raises(ValueError, match="oco_ids"):
        inmodal_masks_from_order(masks, [1], [1, 2])
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        order_from_depth(masks[0], [1.0])
    with pytest.raises(ValueError, match="shape"):
        occlusion_ratio([1.0, 2.0], [1.0])


def test_occlusion_ratio_vectorised():
    ratio = occlusion_ratio(np.array([10.0, 4.0, 0.0]), np.array([10.0, 1.0, 0.0]))
    assert ratio.tolist() == [0.0, 0.75, 0.0]
    assert float(occlusion_ratio(8, 2)) == 0.75
