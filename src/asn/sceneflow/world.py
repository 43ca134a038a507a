"""The synthetic stereo / motion world for the scene-flow experiment (paper Table 8).

The same scenes, renderer and look as the synthetic KINS world (:mod:`asn.data.synthetic`), so
the Table 4 checkpoints apply to its left images, seen by a rectified stereo pair at two times:

- camera: KITTI-like pinhole (focal 0.58 x width, principal point at the image centre, horizon
  row = principal row, 1.65 m above the road), stereo baseline 0.54 m;
- geometry: the road is the plane Y = 1.65 m; every object is a fronto-parallel planar
  "billboard" at its depth Z (exactly how the KINS world draws it: one scale per object);
  above the horizon (sky, buildings, trees) lies at infinity (no disparity, no flow, and no
  ground truth, as KITTI has no LiDAR there);
- motion from t to t+1: the ego camera moves forward by ``t_z`` metres; each object moves
  rigidly by its own translation (dx, dz) in metres (vehicles along the road, people slowly,
  misc static);
- views: left / right at t and t+1. Objects are re-rasterised from their outlines at each
  view's position and scale (painted far to near with the same colours), the background is
  the t-left background warped exactly by the road plane's motion.

Ground truth, in the reference frame (left image at t), exact by construction:
disparity at t (``disp0``), disparity at t+1 of the same surface point (``disp1``), optical
flow (``flow``) for every pixel whose surface is on the road or an object (visible at t;
occluded at t+1 or not, as KITTI's "occ" maps), the object map (instance index + 1 of the
visible object), and the instances' amodal / inmodal masks and occlusion order at t.

Deterministic per seed: :func:`render_stereo_scene` is a pure function of (seed, size).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from pycocotools import mask as mask_utils

# the KINS world's own layout, rasterisation and painting (private helpers of one package), so
# that both worlds look alike and the Table 4 checkpoints apply here
from asn.data import synthetic as kins_world
from asn.data.synthetic import SceneInstance
from asn.sceneflow.baseline import Camera

BASELINE_M = 0.54  # KITTI's stereo baseline
# per-frame motion (metres): KITTI records at 10 Hz, so 0.5-1.5 m ego motion per frame
_EGO_TZ = (0.5, 1.5)
_VEHICLES = (4, 5, 6, 7)
_PEOPLE = (1, 2)
_MIN_DEPTH_M = 2.0  # an object never comes closer than this at t+1


@dataclass
class Motion:
    """Rigid translation of one object from t to t+1, in metres, in the t camera frame."""

    dx: float
    dz: float


@dataclass
class StereoScene:
    """One stereo / motion sample (see the module docstring). Images are (H, W, 3) uint8;
    maps are (H, W) float32 with (H, W) bool validity, flow (H, W, 2) float32 (u, v)."""

    seed: int
    camera: Camera
    ego_tz: float
    left0: np.ndarray
    right0: np.ndarray
    left1: np.ndarray
    right1: np.ndarray
    disp0: np.ndarray
    disp0_valid: np.ndarray
    disp1: np.ndarray
    disp1_valid: np.ndarray
    flow: np.ndarray
    flow_valid: np.ndarray
    obj_map: np.ndarray
    instances: list[SceneInstance] = field(default_factory=list)
    motions: list[Motion] = field(default_factory=list)


def camera_for(width: int, height: int) -> Camera:
    """The KINS world's camera at ``width`` x ``height`` with KITTI's stereo baseline."""
    return Camera(focal=kins_world._FOCAL_PER_WIDTH * width, cx=0.5 * width,
                  cy=kins_world._HORIZON_FRACTION * height, baseline=BASELINE_M)


def _sample_motions(rng: np.random.Generator, categories: list[int]) -> list[Motion]:
    motions = []
    for category in categories:
        if category in _VEHICLES and rng.random() < 0.7:
            motions.append(Motion(dx=float(rng.normal(0.0, 0.1)), dz=float(rng.uniform(-1.5, 1.5))))
        elif category in _PEOPLE:
            motions.append(Motion(dx=float(rng.uniform(-0.3, 0.3)), dz=float(rng.uniform(-0.3, 0.3))))
        else:  # parked vehicles and misc objects stand still
            motions.append(Motion(0.0, 0.0))
    return motions


def _placed_in_view(placed, motion: Motion, camera: Camera, *, shift_x: float, ego_tz: float, t: int):
    """The object's outline, scale and foot point seen from a camera shifted right by
    ``shift_x`` metres, at time ``t`` (0 or 1; the camera has moved forward by ``ego_tz`` at 1)."""
    depth = placed.depth + t * (motion.dz - ego_tz)
    lateral = placed.lateral_m + t * motion.dx - shift_x
    scale = placed.scale_px * placed.depth / depth  # the size jitter of the KINS world is kept
    foot_u = camera.cx + camera.focal * lateral / depth
    foot_v = camera.cy + camera.focal * kins_world._CAMERA_HEIGHT_M / depth
    polygon = placed.template.outline * scale + np.array([foot_u, foot_v])
    return kins_world._Placed(
        category_id=placed.category_id, template=placed.template, depth=depth, scale_px=scale,
        foot_u=foot_u, foot_v=foot_v, lateral_m=lateral, rotation_y=placed.rotation_y, polygon_px=polygon)


def _view_masks(views, width: int, height: int) -> np.ndarray:
    masks = np.zeros((len(views), height, width), dtype=bool)
    for k, view in enumerate(views):
        polygons, _ = kins_world._clip_polygons(view.polygon_px, width, height)
        if polygons:
            masks[k] = mask_utils.decode(kins_world._amodal_rle(polygons, width, height)).astype(bool)
    return masks


def _background_map(camera: Camera, width: int, height: int, *, shift_x: float, ego_tz: float):
    """Backward map (map_x, map_y) from a view to the t-left background: the road plane moves
    exactly with the camera; above the horizon (at infinity) nothing moves."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    map_x, map_y = u.copy(), v.copy()
    road = v > camera.cy + 0.5
    depth_view = camera.focal * kins_world._CAMERA_HEIGHT_M / (v[road] - camera.cy)
    lateral = (u[road] - camera.cx) * depth_view / camera.focal + shift_x
    depth0 = depth_view + ego_tz
    map_x[road] = camera.cx + camera.focal * lateral / depth0
    map_y[road] = camera.cy + camera.focal * kins_world._CAMERA_HEIGHT_M / depth0
    return map_x.astype(np.float32), map_y.astype(np.float32)


def _render_view(background: np.ndarray, placed_list, motions, camera: Camera, seed: int, *,
                 shift_x: float, ego_tz: float, t: int, noise_rng: np.random.Generator) -> np.ndarray:
    height, width = background.shape[:2]
    map_x, map_y = _background_map(camera, width, height, shift_x=shift_x, ego_tz=ego_tz * t)
    canvas = cv2.remap(background, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    views = [_placed_in_view(p, m, camera, shift_x=shift_x, ego_tz=ego_tz, t=t) for p, m in zip(placed_list, motions)]
    masks = _view_masks(views, width, height)
    for k in np.argsort([-view.depth for view in views], kind="stable"):  # far to near
        inst = SceneInstance(category_id=views[k].category_id, amodal_polygons=[], amodal_mask=masks[k],
                             inmodal_mask=None, depth=views[k].depth)
        # one generator per object, the same in every view: the same colours everywhere
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 11, int(k)]))
        kins_world._paint_instance(canvas, inst, views[k], rng)
    canvas = canvas + noise_rng.normal(0.0, 2.0, size=canvas.shape).astype(np.float32)  # sensor noise
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def render_stereo_scene(seed: int, width: int = 640, height: int = 192) -> StereoScene:
    """One stereo / motion sample from ``seed`` (see the module docstring)."""
    if width < 32 or height < 32:
        raise ValueError(f"image size must be at least 32x32, got {width}x{height}")
    camera = camera_for(width, height)
    candidates, paint_rng = kins_world._place_and_clip(seed, width, height, kins_world._MEAN_CANDIDATES)
    motion_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 13]))
    ego_tz = float(motion_rng.uniform(*_EGO_TZ))

    # the objects the KINS world keeps at t (visible area >= its minimum), as render_scene does
    idx, _, instances = kins_world.visible_instances(candidates, width, height)
    placed_list = [candidates[k][0] for k in idx]
    motions = _sample_motions(motion_rng, [p.category_id for p in placed_list])
    for placed, motion in zip(placed_list, motions):  # never closer than _MIN_DEPTH_M at t+1
        motion.dz = max(motion.dz, _MIN_DEPTH_M - placed.depth + ego_tz)

    background = kins_world._background(paint_rng, width, height)
    views = {}
    for name, shift, t in (("left0", 0.0, 0), ("right0", camera.baseline, 0), ("left1", 0.0, 1),
                           ("right1", camera.baseline, 1)):
        noise_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 17, len(views)]))
        views[name] = _render_view(background, placed_list, motions, camera, seed, shift_x=shift,
                                   ego_tz=ego_tz, t=t, noise_rng=noise_rng)

    gt = ground_truth(camera, width, height, placed_list, motions, [inst.inmodal_mask for inst in instances],
                      ego_tz)
    return StereoScene(seed=int(seed), camera=camera, ego_tz=ego_tz, **views, **gt, instances=instances,
                       motions=motions)


def ground_truth(camera: Camera, width: int, height: int, placed_list, motions, visible_masks, ego_tz: float) -> dict:
    """Exact disparity at t and t+1 (reference frame), flow and object map of the t-left view.

    ``visible_masks``: each object's visible pixels at t (inmodal masks, disjoint).
    """
    f, cx, cy, b = camera.focal, camera.cx, camera.cy, camera.baseline
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    depth0 = np.full((height, width), np.inf)
    x0 = np.zeros((height, width))
    y0 = np.zeros((height, width))
    moved_x = np.zeros((height, width))
    moved_z = np.zeros((height, width))
    obj_map = np.zeros((height, width), dtype=np.uint16)
    road = v > cy + 0.5
    depth0[road] = f * kins_world._CAMERA_HEIGHT_M / (v[road] - cy)
    for k, (placed, motion, visible) in enumerate(zip(placed_list, motions, visible_masks)):
        depth0[visible] = placed.depth
        moved_x[visible] = motion.dx
        moved_z[visible] = motion.dz
        obj_map[visible] = k + 1
    valid0 = np.isfinite(depth0)
    x0[valid0] = (u[valid0] - cx) * depth0[valid0] / f
    y0[valid0] = (v[valid0] - cy) * depth0[valid0] / f
    depth1 = np.where(valid0, depth0 + moved_z - ego_tz, np.inf)
    valid1 = valid0 & (depth1 > 0.5)  # a road point the camera drives over leaves the view
    x1 = x0 + moved_x
    safe1 = np.where(valid1, depth1, 1.0)
    u1 = cx + f * x1 / safe1
    v1 = cy + f * y0 / safe1
    disp0 = np.where(valid0, f * b / np.where(valid0, depth0, 1.0), 0.0).astype(np.float32)
    disp1 = np.where(valid1, f * b / safe1, 0.0).astype(np.float32)
    flow = np.stack([np.where(valid1, u1 - u, 0.0), np.where(valid1, v1 - v, 0.0)], axis=-1).astype(np.float32)
    return {"disp0": disp0, "disp0_valid": valid0, "disp1": disp1, "disp1_valid": valid1,
            "flow": flow, "flow_valid": valid1, "obj_map": obj_map}
