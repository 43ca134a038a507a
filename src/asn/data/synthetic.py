"""The embedded synthetic KINS world: KITTI-like street scenes with exact amodal ground truth.

A scene is a road under a sky with a band of buildings and trees, seen by a KITTI-like camera
(horizon about 40 % from the top, focal length 0.58 x image width, camera 1.65 m above the
road). Objects of the 8 KINS categories stand on the road; the depth ``Z`` of an object sets
both the image row of its foot point and its scale, so farther objects are higher and smaller.
Objects are placed in rows and groups so that they occlude each other in clusters.

Exactness by construction: every instance is defined by its amodal polygons (coordinates
rounded to 2 decimals, clipped to the image), its amodal mask is the pycocotools rasterization
of exactly those polygons, and the image is painted far to near with those masks, so the
visible pixels of an instance are its amodal mask minus the nearer overlapping masks, which is
what :func:`asn.data.order.inmodal_masks_from_order` derives from the stored (oco_id, ico_id).

Output (:func:`synthesize`) is the KINS 2020 release layout::

    training/image_2/NNNNNN.png   training/label_2/NNNNNN.txt   update_train_2020.json
    testing/image_2/NNNNNN.png                                  update_test_2020.json
    annotators/annotator_K.json         (optional, perturbed copies for the consistency table:
    annotators/stage2/annotator_K.json   stage 1, and stage 2 = the same annotators' second pass)

Every image is generated from a seed derived from (seed, split, index), so the bytes do not
depend on the number of worker processes.
"""

from __future__ import annotations

import io
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import shapely
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from asn.data import rle as rle_ops
from asn.data.categories import KINS_CATEGORIES, coco_categories
from asn.data.order import occlusion_ratio, order_from_overlap, overlap_matrix
from asn.data.shapes import Template, template_library
from asn.errors import InputError
from asn.io import atomic_dir, write_bytes_atomic, write_json_atomic, write_text_atomic

__all__ = [
    "CLASS_FREQUENCIES",
    "SPLITS",
    "Scene",
    "SceneInstance",
    "image_seed",
    "render_scene",
    "scene_annotations",
    "synthesize",
    "visible_instances",
]

# KINS class frequencies (fraction of instances), from the paper's Table 1 / the public files.
CLASS_FREQUENCIES: dict[int, float] = {4: 0.68, 2: 0.11, 8: 0.10, 7: 0.06, 1: 0.03, 5: 0.01, 6: 0.01}

# split -> (folder, KINS 2020 file name, seed salt)
SPLITS: dict[str, tuple[str, str, int]] = {
    "train": ("training", "update_train_2020.json", 0),
    "test": ("testing", "update_test_2020.json", 1),
}

KITTI_TYPES: dict[int, str] = {
    1: "Cyclist", 2: "Pedestrian", 3: "Person_sitting", 4: "Car",
    5: "Tram", 6: "Truck", 7: "Van", 8: "Misc",
}

# Real-world lateral width and length (metres) for the KITTI label's 3D fields.
_DIMS_WL: dict[int, tuple[float, float]] = {
    1: (0.6, 1.76), 2: (0.66, 0.84), 3: (0.6, 0.8), 4: (1.63, 3.88),
    5: (2.6, 16.0), 6: (2.6, 10.1), 7: (1.9, 5.08), 8: (1.5, 3.0),
}

_MIN_VISIBLE_PIXELS = 12  # fully (or almost fully) occluded objects are not annotated in KINS
_CAMERA_HEIGHT_M = 1.65
_FOCAL_PER_WIDTH = 721.5 / 1242.0  # KITTI's focal length relative to the image width
_HORIZON_FRACTION = 0.40
_MEAN_CANDIDATES = 14.8  # placed objects before clipping and dropping; yields ~12.5 kept
_PNG_COMPRESS_LEVEL = 6
_GROUP_P = 0.6  # geometric group sizes (mean 1/p objects per row or group)
_ROW_SPACING_M = (3.0, 8.0)  # depth step between consecutive objects of a row
_KERB_LATERAL_M = (3.0, 10.0)  # distance of kerb rows from the camera axis
_DEPTH_RANGE_M = (8.0, 80.0)
_KERB_ROW_PROB = 0.3  # share of groups that are rows along a kerb (the rest anywhere in view)  # log-uniform depth of the first object of a row


@dataclass
class SceneInstance:
    """One annotated object. Masks are ``(H, W)`` bool; polygons are flat COCO lists."""

    category_id: int
    amodal_polygons: list[list[float]]
    amodal_mask: np.ndarray | None
    inmodal_mask: np.ndarray | None
    depth: float
    oco_id: int = 0
    ico_id: int = 1
    truncation: float = 0.0
    dims_hwl: tuple[float, float, float] = (0.0, 0.0, 0.0)
    location_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation_y: float = 0.0


@dataclass
class Scene:
    """A rendered scene: ``image`` ``(H, W, 3)`` uint8 (None in geometry-only mode) and its
    instances in a fixed order (the index used to break depth ties)."""

    seed: int
    width: int
    height: int
    image: np.ndarray | None
    instances: list[SceneInstance] = field(default_factory=list)


def image_seed(seed: int, split: str, index: int) -> int:
    """The per-image seed for image ``index`` of ``split``: independent of worker count."""
    salt = SPLITS[split][2] if split in SPLITS else 99
    return int(np.random.SeedSequence([int(seed), salt, int(index)]).generate_state(1)[0])


# ----------------------------------------------------------------------------------------------
# Layout: where the objects are
# ----------------------------------------------------------------------------------------------

@dataclass
class _Placed:
    category_id: int
    template: Template
    depth: float
    scale_px: float  # pixels per metre at this depth (with a small size jitter)
    foot_u: float
    foot_v: float
    lateral_m: float
    rotation_y: float
    polygon_px: np.ndarray  # (K, 2) unclipped outline in pixels


# Placement weights: small classes (pedestrians) are dropped as fully occluded more often than
# vans, so they are drawn a little more often to end up at CLASS_FREQUENCIES after dropping.
_SAMPLING_WEIGHTS: dict[int, float] = {4: 0.68, 2: 0.125, 8: 0.10, 7: 0.052, 1: 0.03, 5: 0.01, 6: 0.01}


_SAMPLING_CATS = np.array(list(_SAMPLING_WEIGHTS), dtype=np.int64)
_SAMPLING_CDF = np.cumsum(list(_SAMPLING_WEIGHTS.values())) / sum(_SAMPLING_WEIGHTS.values())


def _sample_category(rng: np.random.Generator) -> int:
    k = int(np.searchsorted(_SAMPLING_CDF, rng.random(), side="right"))
    return int(_SAMPLING_CATS[min(k, len(_SAMPLING_CATS) - 1)])


def _sample_layout(rng: np.random.Generator, width: int, height: int, mean_candidates: float) -> list[_Placed]:
    """Objects in rows (parked along the kerbs, receding into the distance) and in-lane groups.

    Rows recede along the street, so with perspective each object partly hides the next one:
    this gives KINS-like occlusion chains. Returns the placed objects in generation order.
    """
    library = template_library()
    focal = _FOCAL_PER_WIDTH * width
    cx = 0.5 * width
    horizon = _HORIZON_FRACTION * height
    n_total = int(rng.poisson(mean_candidates))
    placed: list[_Placed] = []
    while len(placed) < n_total:
        group = min(int(rng.geometric(_GROUP_P)), n_total - len(placed))
        depth = float(np.exp(rng.uniform(np.log(_DEPTH_RANGE_M[0]), np.log(_DEPTH_RANGE_M[1]))))
        if rng.random() < _KERB_ROW_PROB:  # a row along a kerb
            side = -1.0 if rng.random() < 0.5 else 1.0
            lateral0 = side * rng.uniform(*_KERB_LATERAL_M)
        else:  # anywhere across the view (traffic, crossings, parking lots)
            lateral0 = (rng.uniform(-0.05, 1.05) * width - cx) * depth / focal
        for _ in range(group):
            cat = _sample_category(rng)
            template = library[cat][int(rng.integers(len(library[cat])))]
            lateral = lateral0 + rng.normal(0.0, 0.8 if cat in (1, 2) else 0.5)
            scale = focal / depth * rng.uniform(0.94, 1.06)
            foot_v = horizon + focal * _CAMERA_HEIGHT_M / depth
            foot_u = cx + focal * lateral / depth
            polygon = template.outline * scale + np.array([foot_u, foot_v])
            placed.append(_Placed(
                category_id=cat, template=template, depth=depth, scale_px=scale,
                foot_u=foot_u, foot_v=foot_v, lateral_m=lateral,
                rotation_y=float(rng.uniform(-math.pi, math.pi)), polygon_px=polygon,
            ))
            # The next member stands a bit farther along the street.
            depth = depth + rng.uniform(*_ROW_SPACING_M) * (1.0 if cat not in (1, 2) else 0.4)
    return placed


def _clip_polygons(polygon_px: np.ndarray, width: int, height: int) -> tuple[list[list[float]], float]:
    """Clip an outline to the image; returns (flat COCO polygons rounded to 2 decimals, truncation).

    Truncation = fraction of the outline's area outside the image, as KITTI's ``truncated``.
    """
    x0, y0 = polygon_px.min(axis=0)
    x1, y1 = polygon_px.max(axis=0)
    rounded = np.round(polygon_px, 2)
    if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
        return [rounded.reshape(-1).tolist()], 0.0
    poly = shapely.make_valid(shapely.Polygon(rounded))
    full_area = poly.area
    clipped = shapely.intersection(poly, shapely.box(0, 0, width, height))
    parts = [g for g in shapely.get_parts(clipped) if g.geom_type == "Polygon" and g.area > 0.5]
    polygons = []
    for part in parts:
        coords = np.round(np.asarray(part.exterior.coords)[:-1], 2)
        if len(coords) >= 3:
            polygons.append(coords.reshape(-1).tolist())
    truncation = 1.0 - (clipped.area / full_area) if full_area > 0 else 1.0
    return polygons, float(min(max(truncation, 0.0), 1.0))


def _amodal_rle(polygons: list[list[float]], width: int, height: int) -> dict:
    # The project's one rasterization, so that convert reproduces these masks bit for bit.
    return rle_ops.polygons_to_rle(polygons, height, width)


def _placed_to_instance(p: _Placed, polygons: list[list[float]], truncation: float, width: int) -> SceneInstance:
    wl = _DIMS_WL[p.category_id]
    height_m = p.template.height
    location = (round(p.lateral_m, 2), _CAMERA_HEIGHT_M, round(p.depth, 2))
    alpha = p.rotation_y - math.atan2(p.lateral_m, p.depth)
    alpha = (alpha + math.pi) % (2 * math.pi) - math.pi
    inst = SceneInstance(
        category_id=p.category_id, amodal_polygons=polygons, amodal_mask=None, inmodal_mask=None,
        depth=float(p.depth), truncation=truncation,
        dims_hwl=(round(height_m, 2), wl[0], wl[1]), location_xyz=location,
        rotation_y=p.rotation_y,
    )
    inst._alpha = alpha  # type: ignore[attr-defined]  # kept for the KITTI label
    return inst


# ----------------------------------------------------------------------------------------------
# Pixels: background and objects
# ----------------------------------------------------------------------------------------------

_PALETTES: dict[int, list[tuple[int, int, int]]] = {
    4: [(200, 200, 205), (40, 42, 48), (150, 25, 30), (35, 60, 130), (120, 124, 130), (230, 230, 225),
        (30, 80, 50), (170, 150, 110)],
    7: [(225, 225, 222), (190, 192, 196), (60, 80, 120), (200, 180, 60)],
    6: [(230, 230, 230), (200, 60, 40), (40, 90, 160), (90, 120, 60)],
    5: [(235, 200, 40), (210, 40, 40), (230, 230, 230)],
    2: [(50, 50, 70), (120, 40, 40), (70, 90, 60), (30, 30, 30), (150, 130, 100), (60, 80, 140)],
    1: [(40, 40, 60), (160, 50, 30), (40, 110, 160), (230, 190, 30)],
    8: [(120, 90, 60), (80, 110, 60), (210, 120, 30), (140, 140, 150)],
}
_DETAIL_COLOURS = {
    "wheel": (22, 22, 24), "window": (70, 95, 120), "light": (240, 230, 190), "stripe": (245, 245, 245),
    "skin": (215, 170, 140), "legs": (35, 40, 60), "frame": (90, 90, 95),
}


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Sky gradient, a band of buildings and trees, road with kerbs and perspective lane marks."""
    horizon = int(round(_HORIZON_FRACTION * height))
    img = Image.new("RGB", (width, height))
    px = np.zeros((height, width, 3), dtype=np.float32)
    t = np.linspace(0.0, 1.0, max(horizon, 1))[:, None]
    sky_top = np.array([110, 150, 205]) + rng.uniform(-15, 15, 3)
    sky_bottom = np.array([200, 215, 230]) + rng.uniform(-10, 10, 3)
    px[:horizon] = (sky_top * (1 - t) + sky_bottom * t)[:, None, :]
    road = rng.uniform(85, 115)
    rows = np.arange(horizon, height, dtype=np.float32)
    shade = (0.85 + 0.15 * (rows - horizon) / max(height - horizon, 1))[:, None, None]
    px[horizon:] = road * shade * np.array([1.0, 1.0, 1.03])
    img = Image.fromarray(np.clip(px, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    cx = width * rng.uniform(0.45, 0.55)
    # Kerbs and sidewalks: lines from the vanishing point.
    for side in (-1, 1):
        kerb_x = cx + side * width * rng.uniform(0.55, 0.8)
        far = cx + side * 2
        walk = [(far, horizon), (kerb_x, height), (cx + side * width * 2.5, height), (cx + side * width, horizon)]
        draw.polygon(walk, fill=tuple(int(v) for v in rng.uniform(120, 150, 3)))
    # Buildings and trees above the horizon.
    x = -rng.uniform(0, 40)
    while x < width:
        bw = rng.uniform(0.06, 0.2) * width
        bh = rng.uniform(0.08, 0.32) * height
        if rng.random() < 0.3:  # a tree
            crown = tuple(int(v) for v in (rng.uniform(30, 70), rng.uniform(80, 130), rng.uniform(30, 60)))
            draw.rectangle([x + bw * 0.45, horizon - bh * 0.5, x + bw * 0.55, horizon], fill=(80, 60, 40))
            draw.ellipse([x, horizon - bh * 1.1, x + bw, horizon - bh * 0.35], fill=crown)
        else:
            colour = tuple(int(v) for v in rng.uniform(110, 200, 3) * np.array([1.0, 0.95, 0.85]))
            draw.rectangle([x, horizon - bh, x + bw, horizon], fill=colour)
            win = tuple(int(c * 0.55) for c in colour)
            step = max(4.0, 0.03 * height)
            wy = horizon - bh + step * 0.6
            while wy < horizon - step:
                wx = x + step * 0.5
                while wx < x + bw - step * 0.8:
                    draw.rectangle([wx, wy, wx + step * 0.5, wy + step * 0.45], fill=win)
                    wx += step
                wy += step
        x += bw + rng.uniform(0, 0.03) * width
    # Lane marks: dashes whose length and spacing follow the perspective.
    focal = _FOCAL_PER_WIDTH * width
    for lane_x in (-1.8, 1.8):
        z = 4.0
        while z < 80.0:
            z2 = z + 3.0
            v1 = horizon + focal * _CAMERA_HEIGHT_M / z
            v2 = horizon + focal * _CAMERA_HEIGHT_M / z2
            u1, u2 = cx + focal * lane_x / z, cx + focal * lane_x / z2
            half1, half2 = max(0.6, focal * 0.07 / z), max(0.4, focal * 0.07 / z2)
            draw.polygon([(u1 - half1, v1), (u1 + half1, v1), (u2 + half2, v2), (u2 - half2, v2)],
                         fill=(225, 225, 215))
            z += 9.0
    out = np.asarray(img, dtype=np.float32)
    out += rng.normal(0.0, 5.0, size=(height, width, 1)).astype(np.float32)
    return out


def _paint_instance(canvas: np.ndarray, inst: SceneInstance, placed: _Placed, rng: np.random.Generator) -> None:
    """Paint one object (far-to-near order is the caller's job) inside its amodal mask."""
    mask = inst.amodal_mask
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    palette = _PALETTES[inst.category_id]
    base = np.array(palette[int(rng.integers(len(palette)))], dtype=np.float32) + rng.uniform(-12, 12, 3)
    patch = Image.new("RGB", (int(x1 - x0), int(y1 - y0)), tuple(int(v) for v in np.clip(base, 0, 255)))
    draw = ImageDraw.Draw(patch)
    offset = np.array([placed.foot_u - x0, placed.foot_v - y0])
    for role, pts in placed.template.details:
        if len(pts) < 3:
            continue
        xy = pts * placed.scale_px + offset
        draw.polygon([tuple(p) for p in xy.tolist()], fill=_DETAIL_COLOURS.get(role, (200, 200, 200)))
    arr = np.asarray(patch, dtype=np.float32)
    # Top-lit shading plus per-object texture noise.
    rows = np.linspace(1.08, 0.82, arr.shape[0], dtype=np.float32)[:, None, None]
    arr = arr * rows + rng.normal(0.0, 4.0, size=(arr.shape[0], arr.shape[1], 1)).astype(np.float32)
    region = mask[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1][region] = arr[region]


# ----------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------

def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    layout, paint = np.random.SeedSequence(int(seed)).spawn(2)
    return np.random.default_rng(layout), np.random.default_rng(paint)


def _place_and_clip(seed: int, width: int, height: int, mean_candidates: float):
    layout_rng, paint_rng = _rngs(seed)
    candidates = []
    for p in _sample_layout(layout_rng, width, height, mean_candidates):
        polygons, truncation = _clip_polygons(p.polygon_px, width, height)
        if polygons:
            candidates.append((p, polygons, truncation))
    return candidates, paint_rng


def render_scene(
    seed: int,
    width: int = 640,
    height: int = 192,
    *,
    mean_candidates: float = _MEAN_CANDIDATES,
    min_visible_pixels: int = _MIN_VISIBLE_PIXELS,
    render_pixels: bool = True,
) -> Scene:
    """Generate one scene from ``seed`` at ``width`` x ``height``.

    Instances whose visible area is below ``min_visible_pixels`` are dropped (and not painted),
    and the order is recomputed until stable, so the stored (oco_id, ico_id) and inmodal masks
    are exact for what is stored. ``render_pixels=False`` skips the image (masks still exact).
    """
    if width < 16 or height < 16:
        raise ValueError(f"image size must be at least 16x16, got {width}x{height}")
    candidates, paint_rng = _place_and_clip(seed, width, height, mean_candidates)
    idx, depth, instances = visible_instances(candidates, width, height, min_visible_pixels)

    image = None
    if render_pixels:
        canvas = _background(paint_rng, width, height)
        # Far to near: nearer objects overwrite farther ones, as the visible masks say.
        for j in np.lexsort((np.arange(len(idx)), depth[idx]))[::-1]:
            _paint_instance(canvas, instances[j], candidates[idx[j]][0], paint_rng)
        canvas += paint_rng.normal(0.0, 2.0, size=canvas.shape).astype(np.float32)  # sensor noise
        image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return Scene(seed=int(seed), width=width, height=height, image=image, instances=instances)


def visible_instances(
    candidates: list, width: int, height: int, min_visible_pixels: int = _MIN_VISIBLE_PIXELS
) -> tuple[np.ndarray, np.ndarray, list[SceneInstance]]:
    """The candidates a scene keeps, with exact masks and occlusion order.

    ``candidates``: ``(placed, polygons, truncation)`` from :func:`_place_and_clip`. A candidate
    whose visible area is below ``min_visible_pixels`` is dropped and the order recomputed until
    stable (dropping one can uncover another). Shared by :func:`render_scene` and the stereo
    world (:mod:`asn.sceneflow.world`), so both keep the same objects.

    Returns:
        ``(idx, depth, instances)``: kept candidate indices [K], every candidate's depth [N],
        and the kept instances (amodal / inmodal masks, oco_id / ico_id), in ``idx`` order.
    """
    masks = np.zeros((len(candidates), height, width), dtype=bool)
    for k, (_, polygons, _) in enumerate(candidates):
        masks[k] = mask_utils.decode(_amodal_rle(polygons, width, height)).astype(bool)
    depth = np.array([c[0].depth for c in candidates], dtype=np.float64)
    keep = masks.reshape(len(candidates), -1).any(axis=1) if len(candidates) else np.zeros(0, bool)
    while True:
        idx = np.flatnonzero(keep)
        overlap = overlap_matrix(masks[idx])
        oco, ico = order_from_overlap(overlap, depth[idx])
        inmodal = _visible_masks(masks[idx], overlap, depth[idx])
        small = inmodal.reshape(len(idx), -1).sum(axis=1) < min_visible_pixels
        if not small.any():
            break
        keep[idx[small]] = False
    instances = []
    for j, k in enumerate(idx):
        p, polygons, truncation = candidates[k]
        inst = _placed_to_instance(p, polygons, truncation, width)
        inst.amodal_mask = masks[k]
        inst.inmodal_mask = inmodal[j]
        inst.oco_id, inst.ico_id = int(oco[j]), int(ico[j])
        instances.append(inst)
    return idx, depth, instances


def _visible_masks(masks: np.ndarray, overlap: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """``[N, H, W]`` amodal -> visible: each mask minus the nearer overlapping masks (ties by index)."""
    n = masks.shape[0]
    visible = masks.copy()
    for i in range(n):
        nearer = overlap[i] & ((depth < depth[i]) | ((depth == depth[i]) & (np.arange(n) < i)))
        if nearer.any():
            visible[i] &= ~masks[nearer].any(axis=0)
    return visible


# ----------------------------------------------------------------------------------------------
# Annotation records
# ----------------------------------------------------------------------------------------------

def _bbox_list(bbox) -> list[float]:
    return [round(float(v), 2) for v in bbox]


def _mask_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer contours of a bool mask as flat polygons (>= 3 points each, 2 decimals).

    Informational (COCO polygons cannot express holes). Contours are traced on the mask
    upsampled 2x, so they run a quarter pixel inside the pixel edges rather than through the
    boundary pixels' centres: pycocotools then rasterizes them back to almost exactly the
    mask (mean IoU 0.9996 on the default world, against 0.80 for centre-line contours, which
    drop half of every boundary pixel and lose small objects).
    """
    upsampled = np.repeat(np.repeat(mask.astype(np.uint8), 2, axis=0), 2, axis=1)
    contours, _ = cv2.findContours(upsampled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        # 0.7 upsampled pixels = 0.35 pixels: about 30 points per instance.
        approx = cv2.approxPolyDP(contour, 0.7, True).reshape(-1, 2).astype(np.float64)
        if len(approx) < 3:
            xa, ya = contour.reshape(-1, 2).min(axis=0)
            xb, yb = contour.reshape(-1, 2).max(axis=0)
            approx = np.array([[xa, ya], [xb + 1, ya], [xb + 1, yb + 1], [xa, yb + 1]],
                              dtype=np.float64)
        # Upsampled pixel c covers [c/2, (c+1)/2): its centre is (c + 0.5) / 2.
        polygons.append(np.round((approx + 0.5) / 2.0, 2).reshape(-1).tolist())
    return polygons


def _instance_record(inst: SceneInstance, width: int, height: int) -> dict[str, Any]:
    """KINS 2020 annotation fields of a rendered instance (no ids)."""
    a_rle = mask_utils.encode(np.asfortranarray(inst.amodal_mask.astype(np.uint8)))
    i_rle = mask_utils.encode(np.asfortranarray(inst.inmodal_mask.astype(np.uint8)))
    return {
        "category_id": inst.category_id,
        "a_segm": inst.amodal_polygons,
        "i_segm": _mask_polygons(inst.inmodal_mask),
        "a_bbox": _bbox_list(mask_utils.toBbox(a_rle)),
        "i_bbox": _bbox_list(mask_utils.toBbox(i_rle)),
        "a_area": float(mask_utils.area(a_rle)),
        "i_area": float(mask_utils.area(i_rle)),
        "oco_id": inst.oco_id,
        "ico_id": inst.ico_id,
        "iscrowd": 0,
    }


def scene_annotations(
    seed: int,
    width: int = 1242,
    height: int = 375,
    *,
    mean_candidates: float = _MEAN_CANDIDATES,
    min_visible_pixels: int = _MIN_VISIBLE_PIXELS,
) -> list[dict[str, Any]]:
    """Geometry-only annotations of the scene ``render_scene(seed, ...)`` would draw (no pixels).

    Amodal area/box, overlaps, order and visible area are exact (pycocotools RLE of the same
    polygons); ``i_segm`` and ``i_bbox`` come from shapely polygon differences, so they may
    differ from the pixel-exact ones by about a pixel. Used for KINS-scale benchmark files.
    Each record has the KINS 2020 fields plus ``_extra`` (instance data for labels).
    """
    candidates, _ = _place_and_clip(seed, width, height, mean_candidates)
    n = len(candidates)
    rles = [_amodal_rle(polys, width, height) for _, polys, _ in candidates]
    areas = np.array([mask_utils.area(r) for r in rles], dtype=np.float64) if n else np.zeros(0)
    boxes = np.array([mask_utils.toBbox(r) for r in rles], dtype=np.float64).reshape(n, 4)
    depth = np.array([c[0].depth for c in candidates], dtype=np.float64)
    overlap = np.zeros((n, n), dtype=bool)
    bx0, by0 = boxes[:, 0], boxes[:, 1]
    bx1, by1 = bx0 + boxes[:, 2], by0 + boxes[:, 3]
    # Exact pixel overlap only where the boxes overlap (the RLE intersection is the costly part).
    boxes_meet = ((bx0[:, None] < bx1[None, :]) & (bx0[None, :] < bx1[:, None])
                  & (by0[:, None] < by1[None, :]) & (by0[None, :] < by1[:, None]))
    for i, j in zip(*np.nonzero(np.triu(boxes_meet, 1))):
        inter = mask_utils.merge([rles[i], rles[j]], intersect=True)
        overlap[i, j] = overlap[j, i] = mask_utils.area(inter) > 0
    keep = areas > 0
    order = np.arange(n)
    while True:
        idx = np.flatnonzero(keep)
        sub = overlap[np.ix_(idx, idx)]
        oco, ico = order_from_overlap(sub, depth[idx])
        visible = areas[idx].copy()
        occluders: list[np.ndarray] = []
        for a, i in enumerate(idx):
            d = depth[idx]
            nearer = sub[a] & ((d < d[a]) | ((d == d[a]) & (order[idx] < i)))
            occluders.append(idx[nearer])
            if nearer.any():
                union = mask_utils.merge([rles[j] for j in idx[nearer]])
                visible[a] -= mask_utils.area(mask_utils.merge([rles[i], union], intersect=True))
        small = visible < min_visible_pixels
        if not small.any():
            break
        keep[idx[small]] = False

    # Shapely outlines (one geometry per instance) for the visible polygons only.
    geoms = np.empty(n, dtype=object)
    needed = set(int(j) for occ in occluders for j in occ)
    needed.update(int(i) for a, i in enumerate(idx) if len(occluders[a]))
    for i in sorted(needed):
        parts = [shapely.Polygon(np.reshape(q, (-1, 2))) for q in candidates[i][1]]
        geom = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
        geoms[i] = geom if geom.is_valid else shapely.make_valid(geom)
    records = []
    for a, i in enumerate(idx):
        p, polys, truncation = candidates[i]
        inst = _placed_to_instance(p, polys, truncation, width)
        if len(occluders[a]):
            amodal_geom = geoms[i]
            front = shapely.union_all(geoms[occluders[a]])
            visible_geom = shapely.difference(amodal_geom, front)
            parts = [g for g in shapely.get_parts(visible_geom) if g.geom_type == "Polygon" and g.area > 0]
            i_segm = [np.round(np.asarray(g.exterior.coords)[:-1], 2).reshape(-1).tolist() for g in parts]
            i_segm = [q for q in i_segm if len(q) >= 6]
            if parts:
                part_bounds = shapely.bounds(parts)
                gx0, gy0 = part_bounds[:, :2].min(axis=0).tolist()
                gx1, gy1 = part_bounds[:, 2:].max(axis=0).tolist()
                i_bbox = [round(gx0, 2), round(gy0, 2), round(gx1 - gx0, 2), round(gy1 - gy0, 2)]
            else:
                i_bbox = _bbox_list(boxes[i])
        else:
            i_segm = polys
            i_bbox = _bbox_list(boxes[i])
        records.append({
            "category_id": p.category_id,
            "a_segm": polys,
            "i_segm": i_segm,
            "a_bbox": _bbox_list(boxes[i]),
            "i_bbox": i_bbox,
            "a_area": float(areas[i]),
            "i_area": float(visible[a]),
            "oco_id": int(oco[a]),
            "ico_id": int(ico[a]),
            "iscrowd": 0,
            "_extra": inst,
        })
    return records


# ----------------------------------------------------------------------------------------------
# KITTI labels and annotator copies
# ----------------------------------------------------------------------------------------------

def _occluded_level(ratio: float) -> int:
    """KITTI-like occlusion level from the occlusion ratio (0 visible ... 3 mostly hidden)."""
    if ratio <= 0.01:
        return 0
    if ratio < 0.4:
        return 1
    if ratio < 0.8:
        return 2
    return 3


def _kitti_label(records: list[dict], label_seed: int, width: int, height: int) -> str:
    """KITTI ``label_2`` text: the visible box with small annotator-like noise, one line each."""
    rng = np.random.default_rng(np.random.SeedSequence([int(label_seed), 2]))
    lines = []
    for rec in records:
        inst: SceneInstance = rec["_extra"]
        x, y, w, h = rec["i_bbox"]
        box = np.array([x, y, x + w, y + h], dtype=np.float64)
        noise = rng.normal(0.0, 0.9, 4)
        wide = rng.random(4) < 0.05  # occasionally a sloppier click
        noise[wide] = rng.uniform(-5.0, 5.0, int(wide.sum()))
        box = box + noise
        box[[0, 2]] = np.clip(box[[0, 2]], 0, width - 1)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, height - 1)
        x1, y1 = min(box[0], box[2]), min(box[1], box[3])
        x2, y2 = max(box[0], box[2]), max(box[1], box[3])
        ratio = float(occlusion_ratio(rec["a_area"], rec["i_area"]))
        hh, ww, ll = inst.dims_hwl
        lx, ly, lz = inst.location_xyz
        alpha = getattr(inst, "_alpha", 0.0)
        lines.append(
            f"{KITTI_TYPES[rec['category_id']]} {inst.truncation:.2f} {_occluded_level(ratio)} {alpha:.2f} "
            f"{x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} {hh:.2f} {ww:.2f} {ll:.2f} "
            f"{lx:.2f} {ly:.2f} {lz:.2f} {inst.rotation_y:.2f}"
        )
    return "".join(line + "\n" for line in lines)


# The synthetic annotators of Table 3. Each annotator k draws the same outlines twice (stage 1
# and stage 2, like KINS's two annotation stages 4 months apart). A vertex's error is
#   persistent (the annotator's habit, the same in both stages):
#     - a systematic offset of the whole outline along its outward normal, d_k px, drawn once per
#       annotator from U(-ANNOTATOR_OFFSET_PX, +ANNOTATOR_OFFSET_PX) (some draw just outside the
#       edge, some just inside);
#     - a per-(annotator, instance) vertex error, N(0, ANNOTATOR_HABIT_SHARE * sigma) per
#       coordinate, drawn from a generator keyed by (seed, annotator, annotation id) only, so both
#       stages get the same draw (where this annotator tends to put this object's corners);
#   fresh (drawn independently per stage): N(0, ANNOTATOR_FRESH_SHARE * sigma) per coordinate in
#     stage 1, times ANNOTATOR_REVIEW_KEEP in stage 2 (reviewed, more careful).
# sigma = care_k * (0.25 + 0.03 * sqrt(amodal area)) px with care_k ~ U(0.5, 1.6) per annotator:
# for a typical 20 px object at 640x192, sigma = 0.85 care_k px, i.e. a persistent vertex error
# of about 0.5 px, a fresh one of about 0.7 px (stage 1) / 0.24 px (stage 2), and an outline
# offset of up to 0.6 px. These are plausible click errors, not tuned to any Table 3 outcome.
ANNOTATOR_OFFSET_PX = 0.6
ANNOTATOR_HABIT_SHARE = 0.6
ANNOTATOR_FRESH_SHARE = 0.8
ANNOTATOR_REVIEW_KEEP = 0.35


def _annotator_habits(seed: int, k: int) -> tuple[float, float]:
    """``(care, outline offset in px)`` of annotator ``k``: the same in both stages."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7, k]))
    care = float(rng.uniform(0.5, 1.6))
    offset = float(rng.uniform(-ANNOTATOR_OFFSET_PX, ANNOTATOR_OFFSET_PX))
    return care, offset


def _outward_normals(pts: np.ndarray) -> np.ndarray:
    """Unit outward normal at each vertex of a closed polygon (the mean of its two edges'
    normals); zeros for a degenerate polygon (fewer than 3 vertices or no area)."""
    n = len(pts)
    if n < 3:
        return np.zeros_like(pts)
    nxt = np.roll(pts, -1, axis=0)
    signed_area = 0.5 * float(np.sum(pts[:, 0] * nxt[:, 1] - nxt[:, 0] * pts[:, 1]))
    if abs(signed_area) < 1e-9:
        return np.zeros_like(pts)
    edges = nxt - pts
    lengths = np.linalg.norm(edges, axis=1, keepdims=True)
    edge_normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1) / np.where(lengths > 0, lengths, 1.0)
    edge_normals *= 1.0 if signed_area > 0 else -1.0
    normals = edge_normals + np.roll(edge_normals, 1, axis=0)  # edge i-1 and edge i meet at vertex i
    norms = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.where(norms > 0, norms, 1.0)


def _annotator_copy(
    k: int, seed: int, images: list[dict], annotations: list[dict], width_of: dict, height_of: dict,
    stage: int = 1,
) -> dict:
    """Annotator ``k``'s plain COCO file of annotation ``stage`` (1 or 2): the source's amodal
    polygons with the annotator's persistent error (outline offset + per-instance habit, the same
    in both stages) and a fresh per-stage error (see the comment above); the same annotation ids
    as the source.
    """
    if stage not in (1, 2):
        raise ValueError(f"annotation stage must be 1 or 2, got {stage}")
    fresh_scale = ANNOTATOR_FRESH_SHARE * (1.0 if stage == 1 else ANNOTATOR_REVIEW_KEEP)
    care, offset = _annotator_habits(seed, k)
    out = []
    for ann in annotations:
        habit_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7, k, int(ann["id"])]))
        fresh_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7, k, int(ann["id"]), stage]))
        w_img, h_img = width_of[ann["image_id"]], height_of[ann["image_id"]]
        size = math.sqrt(max(ann["a_area"], 1.0))
        sigma = care * (0.25 + 0.03 * size)
        polys = []
        for poly in ann["a_segm"]:
            pts = np.reshape(np.asarray(poly, dtype=np.float64), (-1, 2))
            habit = habit_rng.normal(0.0, ANNOTATOR_HABIT_SHARE * sigma, pts.shape)
            fresh = fresh_rng.normal(0.0, fresh_scale * sigma, pts.shape)
            pts = pts + offset * _outward_normals(pts) + habit + fresh
            pts[:, 0] = np.clip(pts[:, 0], 0, w_img)
            pts[:, 1] = np.clip(pts[:, 1], 0, h_img)
            polys.append(np.round(pts, 2).reshape(-1).tolist())
        rle = _amodal_rle(polys, w_img, h_img)
        out.append({
            "id": ann["id"], "image_id": ann["image_id"], "category_id": ann["category_id"],
            "segmentation": polys, "bbox": _bbox_list(mask_utils.toBbox(rle)),
            "area": float(mask_utils.area(rle)), "iscrowd": 0,
        })
    return {"images": images, "categories": coco_categories(), "annotations": out}


# ----------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------

def _png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=_PNG_COMPRESS_LEVEL, optimize=False)
    return buf.getvalue()


def _generate_image(job: tuple) -> dict[str, Any]:
    """One image: writes its PNG (and KITTI label) under ``root``; returns records without ids."""
    seed, split, index, width, height, root, annotations_only = job
    s = image_seed(seed, split, index)
    name = f"{index:06d}"
    folder = SPLITS[split][0]
    if annotations_only:
        records = scene_annotations(s, width, height)
    else:
        scene = render_scene(s, width, height)
        records = []
        for inst in scene.instances:
            rec = _instance_record(inst, width, height)
            rec["_extra"] = inst
            records.append(rec)
        write_bytes_atomic(Path(root) / folder / "image_2" / f"{name}.png", _png_bytes(scene.image))
    if split == "train" and not annotations_only:
        write_text_atomic(Path(root) / folder / "label_2" / f"{name}.txt", _kitti_label(records, s, width, height))
    for rec in records:
        rec.pop("_extra", None)
    return {"index": index, "file_name": f"{name}.png", "records": records}


def _check_arguments(n_train, n_test, width, height, annotators, annotator_images, workers, out_dir) -> None:
    for flag, value, low in (("--train", n_train, 0), ("--test", n_test, 0), ("--width", width, 16),
                             ("--height", height, 16), ("--annotators", annotators, 0),
                             ("--annotator-images", annotator_images, 0), ("--workers", workers, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise InputError(flag, f"must be an integer >= {low}, got {value!r}")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise InputError(out_dir, "exists and is not a folder")


def synthesize(
    out_dir: str | os.PathLike,
    *,
    n_train: int = 200,
    n_test: int = 50,
    seed: int = 0,
    width: int | None = None,
    height: int | None = None,
    annotations_only: bool = False,
    annotators: int = 0,
    annotator_images: int = 50,
    workers: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the synthetic KINS 2020-layout dataset to ``out_dir`` atomically; return a summary.

    ``width``/``height`` default to 640x192 (KITTI's aspect at reduced resolution), or to
    KITTI's 1242x375 with ``annotations_only`` (KINS-scale JSON, no pixels, no images or labels).
    ``annotators`` > 0 also writes ``annotators/annotator_{k}.json`` over the first
    ``annotator_images`` training images (stage 1) and ``annotators/stage2/annotator_{k}.json``
    (the same annotators' second pass: same habits, fresh noise; Table 3's second stage).
    ``workers`` processes render images; the output bytes do not depend on it. An existing ``out_dir`` is replaced only when everything succeeded.
    """
    if width is None:
        width = 1242 if annotations_only else 640
    if height is None:
        height = 375 if annotations_only else 192
    _check_arguments(n_train, n_test, width, height, annotators, annotator_images, workers, out_dir)
    start = time.perf_counter()
    out_dir = Path(out_dir)
    summary: dict[str, Any] = {"seed": int(seed), "width": width, "height": height,
                               "annotations_only": bool(annotations_only), "workers": workers}
    hist = {KINS_CATEGORIES[c][0]: 0 for c in KINS_CATEGORIES}
    n_instances = n_occluded = n_points = 0
    with atomic_dir(out_dir) as tmp:
        train_records: tuple[list, list] | None = None
        jobs = []
        for split, n_images in (("train", n_train), ("test", n_test)):
            folder = SPLITS[split][0]
            if not annotations_only:
                (tmp / folder / "image_2").mkdir(parents=True, exist_ok=True)
                if split == "train":
                    (tmp / folder / "label_2").mkdir(parents=True, exist_ok=True)
            jobs += [(seed, split, i, width, height, str(tmp), annotations_only) for i in range(n_images)]
        # One pool for both splits; results come back in job order whatever the worker count.
        results = _run_jobs(jobs, workers=workers, progress=progress, desc="synth")
        for split, lo, hi in (("train", 0, n_train), ("test", n_train, n_train + n_test)):
            json_name = SPLITS[split][1]
            images, annotations = [], []
            for image_id, res in enumerate(results[lo:hi], start=1):
                images.append({"id": image_id, "file_name": res["file_name"], "width": width, "height": height})
                for rec in res["records"]:
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id, **rec})
                    hist[KINS_CATEGORIES[rec["category_id"]][0]] += 1
                    n_points += sum(len(q) // 2 for q in rec["a_segm"])
                    n_occluded += rec["i_area"] < rec["a_area"]
            n_instances += len(annotations)
            write_json_atomic(tmp / json_name, {"images": images, "annotations": annotations,
                                                "categories": coco_categories()})
            summary[f"{split}_images"] = hi - lo
            summary[f"{split}_instances"] = len(annotations)
            if split == "train":
                train_records = (images, annotations)
        if annotators > 0 and train_records is not None:
            images, annotations = train_records
            first = images[:annotator_images]
            ids = {im["id"] for im in first}
            sub = [a for a in annotations if a["image_id"] in ids]
            w_of = {im["id"]: im["width"] for im in first}
            h_of = {im["id"]: im["height"] for im in first}
            for k in range(1, annotators + 1):
                write_json_atomic(tmp / "annotators" / f"annotator_{k}.json",
                                  _annotator_copy(k, seed, first, sub, w_of, h_of))
                write_json_atomic(tmp / "annotators" / "stage2" / f"annotator_{k}.json",
                                  _annotator_copy(k, seed, first, sub, w_of, h_of, stage=2))
    n_images = n_train + n_test
    summary.update({
        "instances": n_instances,
        "instances_per_image": n_instances / n_images if n_images else 0.0,
        "occluded_fraction": n_occluded / n_instances if n_instances else 0.0,
        "points_per_instance": n_points / n_instances if n_instances else 0.0,
        "class_histogram": hist,
        "seconds": round(time.perf_counter() - start, 3),
    })
    return summary


def _run_jobs(jobs: list[tuple], *, workers: int, progress: bool, desc: str) -> list[dict]:
    """Run :func:`_generate_image` over ``jobs`` in order, in ``workers`` processes."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, unit="img", leave=False)
    try:
        if workers <= 1 or len(jobs) < 4:
            results = []
            for job in jobs:
                results.append(_generate_image(job))
                bar.update(1)
            return results
        # fork shares the already built template library and starts at once; when torch is
        # loaded (its thread pools do not survive fork safely) spawn instead. Same output.
        template_library()
        method = "fork" if "torch" not in sys.modules and os.name == "posix" else "spawn"
        chunk = max(1, min(64, len(jobs) // (workers * 8)))
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context(method)) as pool:
            results = []
            for res in pool.map(_generate_image, jobs, chunksize=chunk):
                results.append(res)
                bar.update(1)
            return results
    finally:
        bar.close()
