"""Table 2 shape measures and the windowed RLE decoder, checked against independent computations
(pycocotools decoding, shapely geometries built directly from the same coordinates)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import shapely
from pycocotools import mask as mask_utils

from asn.stats.rle import box_windows, decode_counts, window_masks, window_view
from asn.stats.shapes import mean_measures, polygon_segment_measures, rle_segment_measures


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    return rle


def test_windowed_decode_matches_pycocotools_on_random_masks():
    rng = np.random.default_rng(1)
    height, width = 60, 90
    masks = []
    for _ in range(40):
        mask = np.zeros((height, width), np.uint8)
        x0, y0 = rng.integers(0, width - 5), rng.integers(0, height - 5)
        w, h = rng.integers(1, 60), rng.integers(1, 70)
        block = mask[y0 : y0 + h, x0 : x0 + w]
        block[...] = rng.random(block.shape) > 0.4  # ragged: runs cross column boundaries
        masks.append(mask)
    masks.append(np.zeros((height, width), np.uint8))  # empty mask, 1 run
    masks.append(np.ones((height, width), np.uint8))  # full mask, leading run of 0
    rles = [_rle(m) for m in masks]
    runs, offsets = decode_counts([r["counts"] for r in rles])
    for i, rle in enumerate(rles):
        assert runs[offsets[i] : offsets[i + 1]].sum() == height * width
    boxes = np.array([mask_utils.toBbox(r) for r in rles])
    windows = box_windows(boxes, np.full(len(rles), height), np.full(len(rles), width))
    buffer, starts = window_masks(runs, offsets, np.full(len(rles), height), windows)
    for i, mask in enumerate(masks):
        x0, y0, x1, y1 = windows[i]
        np.testing.assert_array_equal(window_view(buffer, starts, windows, i), mask[y0:y1, x0:x1])
        assert window_view(buffer, starts, windows, i).sum() == mask.sum()


def test_convex_square_and_known_l_shape():
    square = [[0, 0, 10, 0, 10, 10, 0, 10]]
    l_shape = [[0, 0, 20, 0, 20, 10, 10, 10, 10, 20, 0, 20]]
    m = polygon_segment_measures([square, l_shape])
    assert m["convexity"][0] == pytest.approx(1.0)
    assert m["simplicity"][0] == pytest.approx(math.sqrt(4 * math.pi * 100) / 40)
    # L: area 300, hull = 400 - the cut-off triangle (10x10/2) = 350, perimeter 80
    assert m["convexity"][1] == pytest.approx(300 / 350)
    assert m["simplicity"][1] == pytest.approx(math.sqrt(4 * math.pi * 300) / 80)
    poly = shapely.Polygon(np.array(l_shape[0]).reshape(-1, 2))
    assert m["convexity"][1] == pytest.approx(poly.area / poly.convex_hull.area)


def test_circle_simplicity_is_about_one():
    t = np.linspace(0, 2 * math.pi, 360, endpoint=False)
    circle = np.stack([50 + 40 * np.cos(t), 50 + 40 * np.sin(t)], axis=1).reshape(-1).tolist()
    m = polygon_segment_measures([[circle]])
    assert m["simplicity"][0] == pytest.approx(1.0, abs=1e-3)
    assert m["convexity"][0] == pytest.approx(1.0, abs=1e-9)


def test_multi_part_segment_uses_total_area_joint_hull_and_total_perimeter():
    part_a = [0, 0, 4, 0, 4, 4, 0, 4]
    part_b = [10, 0, 16, 0, 13, 5]
    degenerate = [30, 30, 31, 31]  # 2 vertices: dropped by the documented rule
    m = polygon_segment_measures([[part_a, part_b, degenerate]])
    a = shapely.Polygon(np.reshape(part_a, (-1, 2)))
    b = shapely.Polygon(np.reshape(part_b, (-1, 2)))
    area = a.area + b.area
    hull = shapely.MultiPolygon([a, b]).convex_hull.area
    assert m["area"][0] == pytest.approx(area)
    assert m["convexity"][0] == pytest.approx(area / hull)
    assert m["simplicity"][0] == pytest.approx(math.sqrt(4 * math.pi * area) / (a.length + b.length))
    assert m["n_parts"][0] == 2
    assert m["n_points"][0] == 9
    stats = mean_measures(m)
    assert stats["n_multi_part"] == 1 and stats["n_measured"] == 1


def test_segment_without_valid_part_is_not_measured():
    m = polygon_segment_measures([[[0, 0, 1, 1]], [[0, 0, 3, 0, 0, 3]]])
    assert np.isnan(m["convexity"][0])
    stats = mean_measures(m)
    assert stats["n_measured"] == 1 and stats["convexity"] == pytest.approx(1.0)


def test_rle_with_hole_and_second_part_matches_independent_shapely():
    mask = np.zeros((80, 100), np.uint8)
    mask[10:30, 10:30] = 1
    mask[15:25, 15:25] = 0  # hole
    mask[40:70, 50:90] = 1  # second part
    rle = _rle(mask)
    m = rle_segment_measures([rle], np.array([mask_utils.toBbox(rle)]))
    # independent: trace the full-size mask, build the shapely geometry by hand
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    hierarchy = hierarchy[0]
    polygons = []
    for i, contour in enumerate(contours):
        if hierarchy[i][3] == -1:
            holes = [contours[j].reshape(-1, 2) for j in range(len(contours)) if hierarchy[j][3] == i]
            polygons.append(shapely.Polygon(contour.reshape(-1, 2), holes))
    geometry = shapely.MultiPolygon(polygons)
    assert len(polygons) == 2 and sum(len(p.interiors) for p in polygons) == 1
    assert m["area"][0] == pytest.approx(geometry.area)
    assert m["convexity"][0] == pytest.approx(geometry.area / geometry.convex_hull.area)
    assert m["simplicity"][0] == pytest.approx(math.sqrt(4 * math.pi * geometry.area) / geometry.length)
    # the hole really is subtracted: area well below the filled outline
    assert m["area"][0] < 19 * 19 + 29 * 39 - 50
    assert m["n_parts"][0] == 2


def test_rle_disc_is_nearly_convex_and_simple():
    yy, xx = np.mgrid[:120, :120]
    disc = ((xx - 60) ** 2 + (yy - 60) ** 2 < 45**2).astype(np.uint8)
    rle = _rle(disc)
    m = rle_segment_measures([rle], np.array([mask_utils.toBbox(rle)]))
    assert m["convexity"][0] > 0.98
    assert 0.9 < m["simplicity"][0] <= 1.0


def test_empty_inputs():
    assert polygon_segment_measures([])["convexity"].size == 0
    assert rle_segment_measures([], np.zeros((0, 4)))["convexity"].size == 0
    runs, offsets = decode_counts([])
    assert runs.size == 0 and offsets.tolist() == [0]


def test_mixed_single_and_multi_part_segments_match_shapely_one_by_one():
    rng = np.random.default_rng(3)
    segmentations = []
    for k in range(12):
        n_parts = 1 + (k % 3 == 1) + (k % 5 == 2)
        parts = []
        for _ in range(n_parts):
            cx, cy = rng.uniform(0, 200, 2)
            t = np.sort(rng.uniform(0, 2 * math.pi, 7))
            r = rng.uniform(5, 20, 7)
            parts.append(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1).reshape(-1).tolist())
        if k == 4:
            parts = [[0, 0, 1, 1]]  # no valid part
        segmentations.append(parts)
    m = polygon_segment_measures(segmentations)
    for k, parts in enumerate(segmentations):
        polygons = [shapely.Polygon(np.reshape(p, (-1, 2))) for p in parts if len(p) >= 6]
        if not polygons:
            assert np.isnan(m["convexity"][k])
            continue
        area = sum(p.area for p in polygons)
        hull = shapely.MultiPolygon(polygons).convex_hull.area
        assert m["convexity"][k] == pytest.approx(area / hull), k
        assert m["simplicity"][k] == pytest.approx(math.sqrt(4 * math.pi * area) / sum(p.length for p in polygons)), k


def test_block_wise_geometry_gives_the_same_measures():
    from asn.stats.shapes import _measures_from_rings

    rng = np.random.default_rng(5)
    masks = []
    for k in range(9):
        mask = np.zeros((60, 80), np.uint8)
        if k != 4:  # one empty segment in the middle
            x, y = rng.integers(0, 50, 2)
            mask[y : y + rng.integers(3, 20), x : x + rng.integers(3, 30)] = 1
            mask[rng.integers(0, 55) :, rng.integers(60, 75) :][:5, :5] = 1  # sometimes a 2nd part
        masks.append(mask)
    rles = [_rle(m) for m in masks]
    boxes = np.array([mask_utils.toBbox(r) for r in rles])
    whole = rle_segment_measures(rles, boxes)
    import asn.stats.shapes as shapes_module

    original = shapes_module._measures_from_rings
    try:
        shapes_module._measures_from_rings = lambda *a, **k: original(*a, **k, segments_per_block=2)
        blocks = rle_segment_measures(rles, boxes)
    finally:
        shapes_module._measures_from_rings = original
    for key in ("area", "hull_area", "perimeter", "n_parts"):
        np.testing.assert_allclose(blocks[key], whole[key], err_msg=key)
    assert np.isnan(whole["convexity"][4]) and np.isfinite(whole["convexity"][0])
    assert _measures_from_rings is original
