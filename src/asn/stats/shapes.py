"""Shape statistics of Table 2: convexity and simplicity of amodal and inmodal segments.

Definitions (paper section 3.3):
    convexity  = area / area(convex hull)
    simplicity = sqrt(4 * pi * area) / perimeter          (1 for a disc, smaller when jagged)

Multi-part rule, the same for amodal and inmodal segments: a segment is the set of its parts
(polygons, each possibly with holes).
    area      = sum of the part areas (holes subtracted; parts are taken as disjoint)
    hull      = convex hull of all parts together
    perimeter = sum of the boundary lengths of all parts, hole boundaries included
A ring with fewer than 3 distinct vertices has no area and is dropped; a segment left with no
ring, or with zero area, gets NaN and is left out of the means (the count is reported).

Amodal segments are the annotation polygons as given. Inmodal segments are RLE masks (they may
have holes): each mask's box window is decoded (:mod:`asn.stats.rle`), traced with
``cv2.findContours(RETR_CCOMP, CHAIN_APPROX_SIMPLE)`` (outer boundaries and their holes, vertex =
pixel centre), and the rings become shapely Polygons with holes. Pixel-centre outlines enclose
about half a pixel less than the pixel count along the boundary; that bias is the same as
tracing a mask in any polygon tool and is documented rather than corrected.

Everything after the contour tracing is vectorised shapely 2 (``linearrings``, ``polygons``,
``multipolygons``, ``area``, ``length``, ``convex_hull``).
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Sequence

import cv2
import numpy as np
import shapely

from asn.stats.rle import box_windows, chunk_bounds, decode_counts, window_masks


def _measures_block(
    ring_coords: np.ndarray,
    ring_sizes: np.ndarray,
    ring_polygon: np.ndarray,
    polygon_segment: np.ndarray,
    n_segments: int,
    hull_rings: list[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Area, hull area and perimeter per segment from flat ring data.

    Args:
        ring_coords: float [sum(ring_sizes), 2] ring vertices, rings back to back.
        ring_sizes: int [r] vertices per ring (each >= 3); the first ring of every polygon is
            its shell, the following ones (same ``ring_polygon``) its holes.
        ring_polygon: int [r] polygon index of each ring (non-decreasing).
        polygon_segment: int [p] segment index of each polygon (non-decreasing).
        n_segments: number of segments.
        hull_rings: optional, per segment that has a polygon (in segment order), the vertices
            of its convex hull computed elsewhere (OpenCV for traced masks: the hull of the
            pixel-centre outer contours, the same set shapely would get); its area is then
            taken with shapely instead of running GEOS' hull on every traced vertex.
    Returns:
        dict of float64 [n_segments] arrays: area, hull_area, perimeter, convexity, simplicity,
        n_parts (polygons per segment).
    """
    area = np.zeros(n_segments)
    hull_area = np.zeros(n_segments)
    perimeter = np.zeros(n_segments)
    n_parts = np.bincount(polygon_segment, minlength=n_segments).astype(np.int64)
    if ring_sizes.size:
        ring_index = np.repeat(np.arange(ring_sizes.size), ring_sizes)
        rings = shapely.linearrings(ring_coords, indices=ring_index)
        polygons = shapely.polygons(rings, indices=ring_polygon)
        area = np.bincount(polygon_segment, weights=shapely.area(polygons), minlength=n_segments)
        perimeter = np.bincount(
            polygon_segment, weights=shapely.length(polygons), minlength=n_segments
        )
        present, dense = np.unique(polygon_segment, return_inverse=True)
        if hull_rings is not None:
            hull_sizes = np.fromiter(map(len, hull_rings), np.int64, len(hull_rings))
            hull_coords = np.concatenate(hull_rings).astype(np.float64) if hull_rings else np.zeros((0, 2))
            # shoelace area of each (convex, ordered) hull ring, vectorised with numpy
            hull_area[present] = _ring_areas(hull_coords, hull_sizes)
        else:
            # GEOS' hull is much cheaper on a Polygon than on a MultiPolygon: wrap only the
            # segments that really have several parts
            single = n_parts[present] == 1
            hull_geometries = np.empty(present.size, dtype=object)
            first_polygon = np.searchsorted(dense, np.arange(present.size))
            hull_geometries[single] = polygons[first_polygon[single]]
            if not single.all():
                multi_polygon = ~single[dense]
                _, multi_dense = np.unique(dense[multi_polygon], return_inverse=True)
                hull_geometries[~single] = shapely.multipolygons(polygons[multi_polygon], indices=multi_dense)
            hull_area[present] = shapely.area(shapely.convex_hull(hull_geometries))
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = (area > 0) & (hull_area > 0) & (perimeter > 0)
        convexity = np.where(ok, area / np.where(ok, hull_area, 1), np.nan)
        simplicity = np.where(ok, np.sqrt(4 * math.pi * area) / np.where(ok, perimeter, 1), np.nan)
    return {
        "area": area,
        "hull_area": hull_area,
        "perimeter": perimeter,
        "convexity": convexity,
        "simplicity": simplicity,
        "n_parts": n_parts,
    }


def _measures_from_rings(
    ring_coords: np.ndarray,
    ring_sizes: np.ndarray,
    ring_polygon: np.ndarray,
    polygon_segment: np.ndarray,
    n_segments: int,
    hull_rings: list[np.ndarray] | None = None,
    segments_per_block: int = 16384,
) -> dict[str, np.ndarray]:
    """:func:`_measures_block` over blocks of consecutive segments.

    GEOS geometries cost several times the memory of their coordinates (a KINS split traces
    about 15M inmodal vertices); building them a block at a time bounds the peak memory
    without changing any result.
    """
    if n_segments <= segments_per_block:
        return _measures_block(ring_coords, ring_sizes, ring_polygon, polygon_segment, n_segments, hull_rings)
    ring_starts = np.zeros(ring_sizes.size + 1, np.int64)
    np.cumsum(ring_sizes, out=ring_starts[1:])
    polygon_bounds = np.searchsorted(polygon_segment, np.arange(0, n_segments + segments_per_block, segments_per_block).clip(max=n_segments))
    ring_bounds = np.searchsorted(ring_polygon, polygon_bounds)
    hull_bounds = None
    if hull_rings is not None:
        # hull_rings has one entry per segment that has a polygon, in segment order
        present = np.unique(polygon_segment)
        hull_bounds = np.searchsorted(present, np.arange(0, n_segments + segments_per_block, segments_per_block).clip(max=n_segments))
    blocks = []
    for b in range(polygon_bounds.size - 1):
        s0 = b * segments_per_block
        s1 = min(s0 + segments_per_block, n_segments)
        p0, p1 = polygon_bounds[b], polygon_bounds[b + 1]
        r0, r1 = ring_bounds[b], ring_bounds[b + 1]
        blocks.append(_measures_block(
            ring_coords[ring_starts[r0] : ring_starts[r1]],
            ring_sizes[r0:r1],
            ring_polygon[r0:r1] - p0,
            polygon_segment[p0:p1] - s0,
            s1 - s0,
            hull_rings[hull_bounds[b] : hull_bounds[b + 1]] if hull_bounds is not None else None,
        ))
    return {key: np.concatenate([block[key] for block in blocks]) for key in blocks[0]}


def _ring_areas(coords: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Absolute shoelace area of consecutive rings (float [sum(sizes), 2], sizes [r])."""
    if sizes.size == 0:
        return np.zeros(0)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    following = np.arange(coords.shape[0]) + 1
    following[ends - 1] = starts  # each ring closes on its first vertex
    x, y = coords[:, 0], coords[:, 1]
    cross = x * y[following] - x[following] * y
    sums = np.add.reduceat(cross, starts) if coords.shape[0] else np.zeros(sizes.size)
    sums[sizes == 0] = 0.0
    return np.abs(sums) / 2.0


def polygon_segment_measures(segmentations: Sequence[Sequence[Sequence[float]]]) -> dict[str, np.ndarray]:
    """Table 2 measures of polygon segments (COCO ``segmentation`` lists of flat x,y lists).

    Args:
        segmentations: n segments, each a list of parts ``[x0, y0, x1, y1, ...]``.
    Returns:
        dict of [n] arrays (see :func:`_measures_from_rings`) plus ``n_points`` (vertices over
        all parts, before dropping degenerate parts).
    """
    n = len(segmentations)
    part_counts = np.fromiter(map(len, segmentations), np.int64, n)
    parts = list(itertools.chain.from_iterable(segmentations))
    coord_counts = np.fromiter(map(len, parts), np.int64, len(parts))
    coords = np.fromiter(itertools.chain.from_iterable(parts), np.float64, int(coord_counts.sum()))
    part_segment = np.repeat(np.arange(n), part_counts)
    n_points = np.bincount(part_segment, weights=coord_counts // 2, minlength=n).astype(np.int64)
    # an odd trailing coordinate cannot be a vertex: drop it
    point_counts = coord_counts // 2
    odd = coord_counts % 2 == 1
    if odd.any():
        keep = np.ones(coords.size, bool)
        keep[np.cumsum(coord_counts)[odd] - 1] = False
        coords = coords[keep]
    xy = coords.reshape(-1, 2)
    valid = point_counts >= 3
    if not valid.all():
        keep_pt = np.repeat(valid, point_counts)
        xy = xy[keep_pt]
    ring_sizes = point_counts[valid]
    polygon_segment = part_segment[valid]
    ring_polygon = np.arange(ring_sizes.size)
    result = _measures_from_rings(xy, ring_sizes, ring_polygon, polygon_segment, n)
    result["n_points"] = n_points
    return result


def trace_mask_rings(
    mask: np.ndarray, x0: int = 0, y0: int = 0, swap_xy: bool = False
) -> tuple[list[np.ndarray], list[int]]:
    """Outer boundaries and holes of a binary mask as pixel-centre rings.

    Args:
        mask: uint8 [h, w] (C-contiguous), nonzero = foreground.
        x0, y0: offset added to the vertex coordinates (window origin in the image).
        swap_xy: return (y, x) vertices, for a mask given transposed.
    Returns:
        ``(rings, polygon_of_ring)``: int32 [k, 2] rings with k >= 3, ordered shell first then
        its holes, and the local polygon number of each ring.
    """
    if mask.size == 0 or not mask.any():
        return [], []
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return [], []
    hierarchy = hierarchy[0]
    rings: list[np.ndarray] = []
    polygon_of_ring: list[int] = []
    n_polygons = 0
    offset = np.array([x0, y0], np.float64)

    offset = offset.astype(np.int32)

    def ring(contour: np.ndarray) -> np.ndarray:
        # integer pixel centres: int32 keeps the 15M vertices of a KINS split small
        points = contour.reshape(-1, 2) + offset
        return points[:, ::-1] if swap_xy else points

    for i, contour in enumerate(contours):
        if hierarchy[i][3] != -1 or len(contour) < 3:
            continue  # holes are visited from their outer contour; tiny outers have no area
        rings.append(ring(contour))
        polygon_of_ring.append(n_polygons)
        child = hierarchy[i][2]
        while child != -1:
            if len(contours[child]) >= 3:
                rings.append(ring(contours[child]))
                polygon_of_ring.append(n_polygons)
            child = hierarchy[child][0]
        n_polygons += 1
    return rings, polygon_of_ring


def rle_segment_measures(
    rles: Sequence[dict],
    boxes_xywh: np.ndarray,
    chunk_pixels: int = 20_000_000,
    timings: dict | None = None,
) -> dict[str, np.ndarray]:
    """Table 2 measures of compressed-RLE segments (inmodal masks, holes allowed).

    Args:
        rles: n COCO RLE dicts ``{"size": [H, W], "counts": str}``.
        boxes_xywh: float [n, 4] boxes that contain each mask (the tight inmodal box).
        chunk_pixels: window pixels decoded at once (bounds memory, about 5 bytes a pixel).
        timings: if given, seconds are added under ``mask_decode`` and ``shapely``.
    Returns:
        dict of [n] arrays as :func:`polygon_segment_measures` (``n_points`` = traced vertices).
    """
    n = len(rles)
    timings = timings if timings is not None else {}
    if n == 0:
        return _measures_from_rings(
            np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), 0
        ) | {"n_points": np.zeros(0, np.int64)}
    t0 = time.perf_counter()
    heights = np.fromiter((r["size"][0] for r in rles), np.int64, n)
    widths = np.fromiter((r["size"][1] for r in rles), np.int64, n)
    windows = box_windows(np.asarray(boxes_xywh, np.float64).reshape(-1, 4), heights, widths)
    window_sizes = (windows[:, 2] - windows[:, 0]) * (windows[:, 3] - windows[:, 1] + 1)
    ring_arrays: list[np.ndarray] = []
    hull_rings: list[np.ndarray] = []
    ring_polygon: list[int] = []
    polygon_segment: list[int] = []
    n_polygons = 0
    seconds_rle = seconds_paint = 0.0
    for start, end in chunk_bounds(window_sizes, chunk_pixels):
        t_chunk = time.perf_counter()
        runs, offsets = decode_counts([r["counts"] for r in rles[start:end]])
        t_decoded = time.perf_counter()
        chunk_windows = windows[start:end]
        buffer, starts = window_masks(runs, offsets, heights[start:end], chunk_windows)
        seconds_rle += t_decoded - t_chunk
        seconds_paint += time.perf_counter() - t_decoded
        win_w = chunk_windows[:, 2] - chunk_windows[:, 0]
        win_h = chunk_windows[:, 3] - chunk_windows[:, 1]
        for j in range(end - start):
            w, h = int(win_w[j]), int(win_h[j])
            if w == 0 or h == 0:
                continue
            # The window is stored column-major with a spare all-zero row: traced as it is
            # (no transposed copy), its contours come out with x and y swapped.
            block = buffer[starts[j] : starts[j + 1]].reshape(w, h + 1)
            rings, local_polygon = trace_mask_rings(
                block, int(chunk_windows[j, 1]), int(chunk_windows[j, 0]), swap_xy=True
            )
            if not rings:
                continue
            # hull of the outer rings' vertices (holes lie inside their shell)
            shells = [r for k, r in enumerate(rings) if k == 0 or local_polygon[k] != local_polygon[k - 1]]
            hull_points = np.concatenate(shells) if len(shells) > 1 else shells[0]
            hull_rings.append(cv2.convexHull(hull_points).reshape(-1, 2))
            ring_arrays.extend(rings)
            ring_polygon.extend(p + n_polygons for p in local_polygon)
            n_local = local_polygon[-1] + 1
            polygon_segment.extend([start + j] * n_local)
            n_polygons += n_local
    t1 = time.perf_counter()
    ring_sizes = np.fromiter(map(len, ring_arrays), np.int64, len(ring_arrays))
    coords = np.concatenate(ring_arrays).astype(np.float64) if ring_arrays else np.zeros((0, 2))
    del ring_arrays
    ring_polygon_arr = np.asarray(ring_polygon, np.int64)
    polygon_segment_arr = np.asarray(polygon_segment, np.int64)
    result = _measures_from_rings(coords, ring_sizes, ring_polygon_arr, polygon_segment_arr, n, hull_rings)
    ring_segment = polygon_segment_arr[ring_polygon_arr] if ring_sizes.size else np.zeros(0, np.int64)
    result["n_points"] = np.bincount(ring_segment, weights=ring_sizes, minlength=n).astype(np.int64)
    t2 = time.perf_counter()
    timings["mask_decode"] = timings.get("mask_decode", 0.0) + (t1 - t0)
    # the parts of mask_decode: counts strings -> runs, runs -> window pixels, the rest is
    # contour tracing
    timings["mask_decode.rle_counts"] = timings.get("mask_decode.rle_counts", 0.0) + seconds_rle
    timings["mask_decode.paint_windows"] = timings.get("mask_decode.paint_windows", 0.0) + seconds_paint
    timings["shapely"] = timings.get("shapely", 0.0) + (t2 - t1)
    return result


def mean_measures(measures: dict[str, np.ndarray]) -> dict[str, float]:
    """Means of convexity and simplicity over the segments that have them (NaN-free)."""
    convexity = measures["convexity"]
    simplicity = measures["simplicity"]
    finite = np.isfinite(convexity) & np.isfinite(simplicity)
    return {
        "convexity": float(convexity[finite].mean()) if finite.any() else float("nan"),
        "simplicity": float(simplicity[finite].mean()) if finite.any() else float("nan"),
        "n_segments": int(convexity.size),
        "n_measured": int(finite.sum()),
        "n_multi_part": int((measures["n_parts"] > 1).sum()),
    }
