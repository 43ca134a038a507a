"""The no-instance scene flow baseline of the paper's Table 8, built from OpenCV.

Per KITTI 2015 frame pair (left / right camera at times t and t+1) it estimates the three
maps the devkit scores (:mod:`asn.sceneflow.metrics`):

- ``disp0``: first-frame disparity, semi-global matching (:func:`estimate_disparity`,
  ``cv2.StereoSGBM``) on the t stereo pair;
- ``flow``: optical flow of the left camera from t to t+1 (:func:`estimate_flow`, dense
  inverse search ``cv2.DISOpticalFlow``, preset MEDIUM);
- ``disp1``: second-frame disparity IN THE REFERENCE FRAME, as KITTI defines D2: SGBM on the
  t+1 pair gives disparities at t+1 pixel positions; they are looked up at the flow target of
  every reference pixel (:func:`warp_to_reference`).

Array conventions are those of :func:`asn.sceneflow.metrics.frame_counts`: disparity HxW
float32 with a separate bool HxW valid mask, flow HxWx2 float32 (u, v) with a bool HxW valid
mask. Invalid pixels hold 0. Images are HxWx3 uint8 RGB; they are matched in grayscale.

:class:`Camera` is the rectified pinhole stereo camera that turns (u, v, disparity) into 3-D
points and back; :mod:`asn.sceneflow.refine` uses it for the instance-aware refinement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Camera:
    """Rectified pinhole stereo camera: ``focal``, principal point ``cx`` / ``cy`` in pixels,
    ``baseline`` in metres (KITTI 2015 ``calib_cam_to_cam``: ``P_rect_02[0, 0]``, ...,
    baseline about 0.54 m). Depth ``Z = focal * baseline / disparity``."""

    focal: float
    cx: float
    cy: float
    baseline: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.focal) and self.focal > 0):
            raise ValueError(f"camera focal length must be a positive number, got {self.focal}")
        if not (math.isfinite(self.baseline) and self.baseline > 0):
            raise ValueError(f"camera baseline must be a positive number, got {self.baseline}")
        if not (math.isfinite(self.cx) and math.isfinite(self.cy)):
            raise ValueError(f"camera principal point must be finite, got ({self.cx}, {self.cy})")

    def disparity_to_depth(self, d: np.ndarray) -> np.ndarray:
        """Disparity (any shape, px) -> depth Z (same shape, float64, metres); ``inf`` where
        ``d <= 0`` or ``d`` is not a number (no finite depth)."""
        d = np.asarray(d, dtype=np.float64)
        positive = d > 0  # False for NaN too
        with np.errstate(divide="ignore"):
            return np.where(positive, self.focal * self.baseline / np.where(positive, d, 1.0),
                            np.inf)

    def backproject(self, u: np.ndarray, v: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Pixels (u, v) with disparity d (broadcast together, any shape) -> points (N, 3)
        float64 in camera coordinates (X right, Y down, Z forward, metres), N = the broadcast
        size, row-major. Only ``d > 0`` gives a finite point (else Z = inf)."""
        u, v, d = np.broadcast_arrays(np.asarray(u, dtype=np.float64),
                                      np.asarray(v, dtype=np.float64),
                                      np.asarray(d, dtype=np.float64))
        z = self.disparity_to_depth(d.reshape(-1))
        with np.errstate(invalid="ignore"):  # 0 * inf at the principal point of a hole
            x = (u.reshape(-1) - self.cx) * z / self.focal
            y = (v.reshape(-1) - self.cy) * z / self.focal
        return np.stack([x, y, z], axis=1)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points (..., 3) -> (u, v, d), each float64 of shape ``points.shape[:-1]``; the
        inverse of :meth:`backproject`. Points with Z <= 0 (at or behind the camera) give
        ``d <= 0`` or non-finite values: treat them as invalid."""
        points = np.asarray(points, dtype=np.float64)
        if points.shape[-1:] != (3,):
            raise ValueError(f"points must be (..., 3), got {points.shape}")
        x, y, z = points[..., 0], points[..., 1], points[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.focal * x / z + self.cx
            v = self.focal * y / z + self.cy
            d = self.focal * self.baseline / z
        return u, v, d


def _check_images(**images: np.ndarray) -> tuple[int, int]:
    """All images HxWx3 uint8 of one size (ValueError naming the culprit) -> (H, W)."""
    size = None
    for name, image in images.items():
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{name} must be an HxWx3 RGB image, got shape {image.shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"{name} must be uint8, got {image.dtype}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"{name} is empty, shape {image.shape}")
        if size is None:
            size, first = image.shape[:2], name
        elif image.shape[:2] != size:
            raise ValueError(f"{name} is {image.shape[0]}x{image.shape[1]} but {first} is "
                             f"{size[0]}x{size[1]}: all images must have the same size")
    return size


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def estimate_disparity(left: np.ndarray, right: np.ndarray, *, max_disparity: int = 64,
                       block_size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Semi-global matching: left, right HxWx3 uint8 RGB -> (disp float32 HxW, valid bool HxW).

    ``cv2.StereoSGBM`` in 3-way mode on the grayscale images, disparities 0 ..
    ``numDisparities - 1`` with ``numDisparities`` the multiple of 16 >= ``max_disparity``;
    smoothness penalties P1 = 8*3*bs^2, P2 = 32*3*bs^2 (OpenCV's recommended values for 3
    channels, kept for grayscale too: stronger smoothing suits KITTI's weak texture);
    uniqueness ratio 10 %, left-right check (1 px) and speckle filtering. OpenCV returns
    fixed point (1/16 px); a result <= 0 is invalid (unmatched, filtered, or the left band of
    ``numDisparities`` columns that has no partner in the right image). Invalid pixels hold 0.
    """
    _check_images(left=left, right=right)
    if not (isinstance(max_disparity, (int, np.integer)) and max_disparity >= 1):
        raise ValueError(f"max_disparity must be a positive integer, got {max_disparity!r}")
    if not (isinstance(block_size, (int, np.integer)) and block_size >= 1 and block_size % 2):
        raise ValueError(f"block_size must be a positive odd integer, got {block_size!r}")
    num = 16 * math.ceil(max_disparity / 16)
    bs = int(block_size)
    sgbm = cv2.StereoSGBM_create(minDisparity=0, numDisparities=num, blockSize=bs,
                                 P1=8 * 3 * bs * bs, P2=32 * 3 * bs * bs, disp12MaxDiff=1,
                                 preFilterCap=63, uniquenessRatio=10, speckleWindowSize=100,
                                 speckleRange=2, mode=cv2.StereoSGBM_MODE_SGBM_3WAY)
    raw = sgbm.compute(_gray(left), _gray(right))  # int16, disparity * 16; -16 = invalid
    valid = raw > 0
    disp = np.where(valid, raw.astype(np.float32) / np.float32(16.0), np.float32(0.0))
    return disp.astype(np.float32, copy=False), valid


def estimate_flow(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense optical flow first -> second (HxWx3 uint8 RGB) -> (flow float32 HxWx2 (u, v),
    valid bool HxW): ``cv2.DISOpticalFlow`` preset MEDIUM on grayscale. DIS is dense, so every
    finite vector is valid (non-finite ones are set to 0 and invalid)."""
    _check_images(first=first, second=second)
    dis = cv2.DISOpticalFlow_create(cv2.DISOpticalFlow_PRESET_MEDIUM)
    flow = dis.calc(_gray(first), _gray(second), None).astype(np.float32, copy=False)
    valid = np.isfinite(flow).all(axis=2)
    flow[~valid] = 0.0
    return flow, valid


def warp_to_reference(disp1: np.ndarray, valid1: np.ndarray, flow: np.ndarray,
                      flow_valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Second-frame disparity at t+1 pixel positions -> second-frame disparity in the reference
    frame (KITTI's D2): ``out[v, u] = disp1[v + fv, u + fu]``.

    ``disp1`` / ``valid1`` HxW (the t+1 SGBM result), ``flow`` HxWx2 / ``flow_valid`` HxW
    (t -> t+1) -> (float32 HxW, bool HxW). The sample is bilinear (``cv2.remap``,
    INTER_LINEAR; OpenCV quantises the sub-pixel position to 1/32 px). A reference pixel is
    valid iff its flow is valid, the target (u+fu, v+fv) lies inside the image
    (0 <= x <= W-1, 0 <= y <= H-1) and ALL FOUR bilinear neighbours of the target are valid in
    ``valid1``, so a hole never leaks into an interpolated value (at the last row / column the
    missing neighbour is not needed). Invalid pixels hold 0.
    """
    disp1 = np.asarray(disp1, dtype=np.float32)
    valid1 = np.asarray(valid1, dtype=bool)
    flow = np.asarray(flow, dtype=np.float32)
    flow_valid = np.asarray(flow_valid, dtype=bool)
    if disp1.ndim != 2:
        raise ValueError(f"disp1 must be HxW, got shape {disp1.shape}")
    h, w = disp1.shape
    if valid1.shape != (h, w):
        raise ValueError(f"valid1 {valid1.shape} must match disp1 {disp1.shape}")
    if flow.shape != (h, w, 2):
        raise ValueError(f"flow {flow.shape} must be HxWx2 with the size of disp1 {disp1.shape}")
    if flow_valid.shape != (h, w):
        raise ValueError(f"flow_valid {flow_valid.shape} must match disp1 {disp1.shape}")
    if h == 0 or w == 0:
        return np.zeros((h, w), np.float32), np.zeros((h, w), bool)
    valid1 = valid1 & np.isfinite(disp1)
    cols = np.arange(w, dtype=np.float32)[None, :]
    rows = np.arange(h, dtype=np.float32)[:, None]
    x = cols + flow[:, :, 0]
    y = rows + flow[:, :, 1]
    with np.errstate(invalid="ignore"):  # NaN targets compare False: outside
        inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    # outside targets are parked at (0, 0): always a legal address, masked out below
    x = np.where(inside, x, np.float32(0.0))
    y = np.where(inside, y, np.float32(0.0))
    source = np.where(valid1, disp1, np.float32(0.0))
    sampled = cv2.remap(source, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                        borderValue=0.0)
    # the four neighbours of each target; clipping the +1 neighbour at the last column / row
    # is exact since its weight is 0 there (x == W-1). remap rounds positions to 1/32 px, which
    # may move a weight-1 neighbour from floor(x) to floor(x) + 1: both are checked.
    x0 = np.floor(x).astype(np.intp)
    y0 = np.floor(y).astype(np.intp)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    neighbours_ok = valid1[y0, x0] & valid1[y0, x1] & valid1[y1, x0] & valid1[y1, x1]
    valid = flow_valid & inside & neighbours_ok & np.isfinite(sampled)
    return np.where(valid, sampled, np.float32(0.0)).astype(np.float32, copy=False), valid


def baseline_estimate(left0: np.ndarray, right0: np.ndarray, left1: np.ndarray,
                      right1: np.ndarray, *, max_disparity: int = 64) -> dict[str, np.ndarray]:
    """The no-instance baseline for one frame pair: four HxWx3 uint8 RGB images (left / right
    camera at t and t+1) -> dict with ``disp0`` (float32 HxW) and ``disp0_valid`` (bool HxW),
    ``flow`` (float32 HxWx2) and ``flow_valid``, ``disp1`` (float32 HxW, second-frame disparity
    in the REFERENCE frame, see :func:`warp_to_reference`) and ``disp1_valid``."""
    _check_images(left0=left0, right0=right0, left1=left1, right1=right1)
    disp0, disp0_valid = estimate_disparity(left0, right0, max_disparity=max_disparity)
    disp1_raw, disp1_raw_valid = estimate_disparity(left1, right1, max_disparity=max_disparity)
    flow, flow_valid = estimate_flow(left0, left1)
    disp1, disp1_valid = warp_to_reference(disp1_raw, disp1_raw_valid, flow, flow_valid)
    return {"disp0": disp0, "disp0_valid": disp0_valid, "flow": flow, "flow_valid": flow_valid,
            "disp1": disp1, "disp1_valid": disp1_valid}
