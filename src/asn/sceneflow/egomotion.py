"""Background ego-motion: the static scene moves by the camera's rigid motion (OSF / ISF).

Like the paper's OSF and ISF rows of Table 8, the static background is explained by ONE rigid
motion, the inverse of the camera's, fitted robustly:

- :func:`fit_egomotion`: the pixels of a region (outside the instance masks; the whole image
  for the no-instance baseline, where moving objects are outliers) with a valid first-frame
  disparity, flow and reference-frame second-frame disparity give 3-D pairs ``P =
  backproject(u, v, disp0)`` -> ``Q = backproject(u + fu, v + fv, disp1)``
  (:class:`asn.sceneflow.baseline.Camera`); a seeded 3-point RANSAC (Kabsch,
  :func:`ransac_egomotion`, vectorised, preemptive) scored by the reprojection error in the
  image, then the robust image-space refit (:func:`asn.sceneflow.refine.image_space_refit`);
- :func:`rigid_flow`: the flow and second-frame disparity a rigid motion gives every pixel of
  a disparity map, in inverse depth, so pixels at infinity (disparity 0) are handled too;
- :func:`compensated_flow`: the input side. Dense flow estimators (DIS, Farneback) break down
  on the large, expanding flow of the road near the camera (tens of pixels in a 192-row
  image, with texture that only exists at the finest scale); with a rigid prior flow, the
  second image is warped towards the first and only the residual is estimated, then
  composed with the prior;
- :func:`apply_egomotion`: overwrites flow and second-frame disparity with the rigid ones
  in a region (first-frame disparity is never changed: D1 is scored on it unchanged);
- :func:`egomotion_refine`: fit + overwrite for one arm (masks -> the region outside them;
  no masks -> the whole image, overwriting all but the pixels that contradict the fitted
  motion, :func:`moving_map`);
- :func:`compensated_estimate`: the baseline estimate with compensated DIS flow, its first
  motion chosen by :func:`photometric_cost` among the fit to plain DIS flow and a driving
  prior (:func:`forward_candidates`), then refitted over ``rounds`` compensated passes.

Array conventions are those of :mod:`asn.sceneflow.baseline`: disparity HxW float32 with a
bool HxW valid mask, flow HxWx2 float32 (u, v) with a bool HxW valid mask, an estimate = the
dict of :data:`asn.sceneflow.refine.ESTIMATE_KEYS`. Everything is deterministic given the
``rng`` (a seeded ``numpy.random.Generator``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from asn.sceneflow.baseline import Camera
from asn.sceneflow.refine import (
    DEGENERATE_SIN,
    ESTIMATE_KEYS,
    _check_estimate,
    image_space_refit,
    rotation_angle_deg,
)

# defaults (params.yaml sceneflow.egomotion holds the pipeline's values)
ITERATIONS = 2000
INLIER_PX = 2.0
MIN_PIXELS = 200
MAX_POINTS = 4000
MOVING_PX = 3.0
OPEN_PX = 9
ROUNDS = 2
FB_PX = 1.0
REFITS = 1
FORWARD_MAX_M = 2.5  # the driving prior: forward / backward translations up to this (m)
FORWARD_STEP_M = 0.1
PHOTO_TAU = 20.0  # grey levels: truncation of the photometric cost
PREEMPT_POINTS = 400  # RANSAC scores every hypothesis on this many pairs first,
PREEMPT_KEEP = 100  # then the best this many on all of them


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    return u, v


def rigid_flow(camera: Camera, R: np.ndarray, t: np.ndarray,
               disp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rigid motion ``X -> R X + t`` seen in the image: disparity HxW at t (>= 0; 0 = at
    infinity) -> (flow float32 HxWx2, second-frame disparity float32 HxW in the reference frame,
    ok bool HxW).

    In inverse depth ``rho = d / (focal * baseline)``: with the ray ``r = ((u - cx) / f,
    (v - cy) / f, 1)``, ``q = R r + t rho``, the pixel moves to ``(f q_x / q_z + cx, f q_y / q_z
    + cy)`` with disparity ``d / q_z`` (a point at infinity moves by the rotation alone). A
    pixel is ok iff its disparity is finite and >= 0 and ``q_z > 0`` (the point stays in front
    of the camera); elsewhere flow and disparity are 0.
    """
    disp = np.asarray(disp, dtype=np.float64)
    if disp.ndim != 2:
        raise ValueError(f"disp must be HxW, got shape {disp.shape}")
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if R.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f"R must be (3, 3) and t (3,), got {R.shape} and {t.shape}")
    h, w = disp.shape
    u, v = _grid(h, w)
    f = camera.focal
    with np.errstate(invalid="ignore"):
        good = np.isfinite(disp) & (disp >= 0)
    rho = np.where(good, disp, 0.0) / (f * camera.baseline)
    rx, ry = (u - camera.cx) / f, (v - camera.cy) / f
    qx = R[0, 0] * rx + R[0, 1] * ry + R[0, 2] + t[0] * rho
    qy = R[1, 0] * rx + R[1, 1] * ry + R[1, 2] + t[1] * rho
    qz = R[2, 0] * rx + R[2, 1] * ry + R[2, 2] + t[2] * rho
    ok = good & (qz > 1e-9)
    safe = np.where(ok, qz, 1.0)
    flow = np.stack([np.where(ok, f * qx / safe + camera.cx - u, 0.0),
                     np.where(ok, f * qy / safe + camera.cy - v, 0.0)], axis=2)
    disp1 = np.where(ok, np.where(good, disp, 0.0) / safe, 0.0)
    return flow.astype(np.float32), disp1.astype(np.float32), ok


def _pairs(estimate: dict, region: np.ndarray) -> tuple[np.ndarray, ...]:
    """(vs, us, disp0, flow_u, flow_v, disp1) of the usable pixels of ``region`` (N,) each."""
    disp0, disp1, flow = estimate["disp0"], estimate["disp1"], estimate["flow"]
    with np.errstate(invalid="ignore"):
        ok = (region & estimate["disp0_valid"] & np.isfinite(disp0) & (disp0 > 0)
              & estimate["flow_valid"] & np.isfinite(flow).all(axis=2)
              & estimate["disp1_valid"] & np.isfinite(disp1) & (disp1 > 0))
    vs, us = np.nonzero(ok)
    return (vs, us, disp0[vs, us].astype(np.float64), flow[vs, us, 0].astype(np.float64),
            flow[vs, us, 1].astype(np.float64), disp1[vs, us].astype(np.float64))


def _reprojection_error(camera: Camera, R: np.ndarray, t: np.ndarray, P: np.ndarray,
                        target: np.ndarray) -> np.ndarray:
    """Image-space error of the pairs P (N, 3) -> target (N, 3) = (u', v', d') under one motion
    (R (3, 3), t (3,)) -> (N,), or under K motions at once (R (K, 3, 3), t (K, 3)) -> (K, N);
    ``inf`` where the moved point is not in front of the camera."""
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    r = R[..., None]  # (..., 3, 3, 1): broadcasts against the N points
    mx = r[..., 0, 0, :] * x + r[..., 0, 1, :] * y + r[..., 0, 2, :] * z + t[..., 0, None]
    my = r[..., 1, 0, :] * x + r[..., 1, 1, :] * y + r[..., 1, 2, :] * z + t[..., 1, None]
    mz = r[..., 2, 0, :] * x + r[..., 2, 1, :] * y + r[..., 2, 2, :] * z + t[..., 2, None]
    f = camera.focal
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = 1.0 / mz
        du = f * mx * inv + camera.cx - target[:, 0]
        dv = f * my * inv + camera.cy - target[:, 1]
        dd = f * camera.baseline * inv - target[:, 2]
        err = np.sqrt(du * du + dv * dv + dd * dd)
        return np.where(np.isfinite(err) & (mz > 0), err, np.inf)


def kabsch_batch(P: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares rigid motions of K point sets at once: P, Q (K, M, 3), M >= 3 -> (R (K, 3, 3)
    proper rotations, t (K, 3)) minimising ``sum_i ||R P_i + t - Q_i||^2`` per set (Kabsch, as
    :func:`asn.sceneflow.refine.fit_rigid`, with the reflection fix)."""
    p_mean, q_mean = P.mean(axis=1, keepdims=True), Q.mean(axis=1, keepdims=True)
    H = np.einsum("kmi,kmj->kij", P - p_mean, Q - q_mean)
    U, _, Vt = np.linalg.svd(H)
    V, Ut = np.swapaxes(Vt, 1, 2), np.swapaxes(U, 1, 2)
    sign = np.where(np.linalg.det(V @ Ut) >= 0, 1.0, -1.0)
    D = np.zeros_like(H)
    D[:, 0, 0], D[:, 1, 1], D[:, 2, 2] = 1.0, 1.0, sign
    R = V @ D @ Ut
    return R, q_mean[:, 0] - np.einsum("kij,kj->ki", R, p_mean[:, 0])


def _degenerate_batch(points: np.ndarray) -> np.ndarray:
    """(K, 3, 3) samples -> bool (K,): nearly collinear or coincident (as refine's test)."""
    a, b, c = points[:, 0], points[:, 1], points[:, 2]
    longest = np.maximum.reduce([np.sum((b - a) ** 2, 1), np.sum((c - a) ** 2, 1), np.sum((c - b) ** 2, 1)])
    return np.linalg.norm(np.cross(b - a, c - a), axis=1) <= DEGENERATE_SIN * longest


def ransac_egomotion(P: np.ndarray, Q: np.ndarray, target: np.ndarray, camera: Camera, *,
                     iterations: int, inlier_px: float, rng: np.random.Generator,
                     top: int = 1, chunk: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """3-point RANSAC of one rigid motion, vectorised: P, Q (N, 3) 3-D pairs, target (N, 3) the
    observed (u', v', d') of Q -> (R (K, 3, 3), t (K, 3)): the ``top`` best hypotheses, best
    first (K = ``top``, fewer if fewer samples were usable).

    ``iterations`` samples of 3 indices are drawn at once (``rng.integers``); samples with a
    repeated index or collinear in P or Q are skipped; each of the others gives a Kabsch fit
    (:func:`kabsch_batch`), scored by the MSAC cost of its reprojection errors (squared,
    truncated at ``inlier_px``); equal costs keep the draw order. With more
    than PREEMPT_POINTS pairs the scoring is preemptive: all hypotheses on PREEMPT_POINTS
    evenly spread pairs, the best PREEMPT_KEEP of them on all pairs.
    ValueError when every sample is degenerate."""
    n = P.shape[0]
    idx = rng.integers(0, n, size=(int(iterations), 3))
    usable = (idx[:, 0] != idx[:, 1]) & (idx[:, 0] != idx[:, 2]) & (idx[:, 1] != idx[:, 2])
    usable &= ~_degenerate_batch(P[idx]) & ~_degenerate_batch(Q[idx])
    idx = idx[usable]
    if not len(idx):
        raise ValueError(f"all {iterations} RANSAC samples were degenerate (repeated, collinear or "
                         "coincident points)")
    R, t = kabsch_batch(P[idx], Q[idx])

    def msac(candidates: np.ndarray, rows: np.ndarray) -> np.ndarray:
        costs = np.empty(len(candidates))
        for start in range(0, len(candidates), chunk):
            k = candidates[start:start + chunk]
            err = _reprojection_error(camera, R[k], t[k], P[rows], target[rows])
            costs[start:start + chunk] = np.sum(np.minimum(err, inlier_px) ** 2, axis=1)
        return costs

    candidates = np.arange(len(idx))
    if n > PREEMPT_POINTS and len(idx) > PREEMPT_KEEP:
        # preemptive scoring: every hypothesis on an evenly spread subset of the pairs, the
        # best PREEMPT_KEEP of them (stable order: ties keep the draw order) on all pairs
        subset = np.linspace(0, n - 1, PREEMPT_POINTS).round().astype(np.intp)
        candidates = np.argsort(msac(candidates, subset), kind="stable")[:PREEMPT_KEEP]
        candidates.sort()
    costs = msac(candidates, np.arange(n))
    order = candidates[np.argsort(costs, kind="stable")[:max(int(top), 1)]]
    return R[order], t[order]


def fit_egomotion(estimate: dict, camera: Camera, region: np.ndarray | None = None, *,
                  rng: np.random.Generator | None = None, iterations: int = ITERATIONS,
                  inlier_px: float = INLIER_PX, min_pixels: int = MIN_PIXELS,
                  max_points: int = MAX_POINTS, refits: int = REFITS
                  ) -> tuple[np.ndarray | None, np.ndarray | None, dict]:
    """Robust rigid motion of the static scene from a scene flow estimate.

    ``estimate``: the dict of :data:`~asn.sceneflow.refine.ESTIMATE_KEYS` (HxW disparities,
    HxWx2 flow, bool HxW valid masks); ``region``: bool HxW, the pixels assumed static (None:
    the whole image). Its usable pixels (valid, positive, finite disp0 and disp1, valid
    finite flow) are the 3-D pairs P -> Q; at most ``max_points`` of them, drawn by ``rng``
    without replacement (then sorted), enter ``iterations`` RANSAC samples of 3
    (:func:`ransac_egomotion`, scored by the reprojection error in the image against the
    observed (u + fu, v + fv, disp1)); the ``refits`` best hypotheses are each refitted
    robustly in the image (:func:`asn.sceneflow.refine.image_space_refit`, inlier = within
    ``inlier_px``) and the refit of the smallest MSAC cost wins (locally optimised RANSAC:
    with a fifth of the pairs inliers, the best raw 3-point sample is rarely the one whose
    refit is best).

    Returns (R (3, 3) or None, t (3,) metres or None, info): the motion of static points from
    t to t+1 in the t camera frame (a camera driving forward by s metres: R = I, t = (0, 0,
    -s)). ``info``: ``status`` = "fitted", "too_few_pixels" (fewer than max(min_pixels, 3)
    usable pairs: nothing is fitted, the caller keeps its input) or "fit_failed" (with
    ``reason``); ``pixels`` (region), ``used`` (usable pairs), ``sampled`` (pairs in the fit),
    and when fitted ``inliers`` (among all usable pairs), ``inlier_fraction``,
    ``rotation_deg``, ``translation`` (3 floats), ``R`` (nested lists). Deterministic given
    ``rng`` (None: ``default_rng(0)``).
    """
    h, w = _check_estimate(estimate)
    region = np.ones((h, w), bool) if region is None else np.asarray(region, dtype=bool)
    if region.shape != (h, w):
        raise ValueError(f"region has shape {region.shape}, the estimate is {h}x{w}")
    if not (isinstance(iterations, (int, np.integer)) and iterations >= 1):
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    if not (math.isfinite(inlier_px) and inlier_px > 0):
        raise ValueError(f"inlier_px must be positive, got {inlier_px}")
    if not (isinstance(min_pixels, (int, np.integer)) and min_pixels >= 0):
        raise ValueError(f"min_pixels must be a non-negative integer, got {min_pixels!r}")
    if not (isinstance(max_points, (int, np.integer)) and max_points >= 3):
        raise ValueError(f"max_points must be an integer >= 3, got {max_points!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    vs, us, d0, fu, fv, d1 = _pairs(estimate, region)
    info: dict = {"pixels": int(np.count_nonzero(region)), "used": int(us.size), "sampled": 0}
    if us.size < max(int(min_pixels), 3):
        info["status"] = "too_few_pixels"
        return None, None, info
    pick = np.arange(us.size)
    if us.size > max_points:
        pick = np.sort(rng.choice(us.size, size=int(max_points), replace=False))
    info["sampled"] = int(pick.size)
    P_all = camera.backproject(us, vs, d0)
    target_all = np.stack([us + fu, vs + fv, d1], axis=1)
    P, target = P_all[pick], target_all[pick]
    Q = camera.backproject(target[:, 0], target[:, 1], target[:, 2])
    try:
        Rs, ts = ransac_egomotion(P, Q, target, camera, iterations=int(iterations), inlier_px=inlier_px,
                                  rng=rng, top=refits)
        best_cost = math.inf
        for R0, t0 in zip(Rs, ts):  # locally optimised RANSAC: refit the best few, keep the best
            R1, t1, _ = image_space_refit(P, target, camera, R0, t0, inlier_px=inlier_px)
            cost = float(np.sum(np.minimum(_reprojection_error(camera, R1, t1, P, target), inlier_px) ** 2))
            if cost < best_cost:
                R, t, best_cost = R1, t1, cost
    except ValueError as err:
        info["status"], info["reason"] = "fit_failed", str(err)
        return None, None, info
    inliers = _reprojection_error(camera, R, t, P_all, target_all) < inlier_px
    if np.count_nonzero(inliers) < 3:
        info["status"], info["reason"] = "fit_failed", "the fitted motion explains fewer than 3 pairs"
        return None, None, info
    info.update(status="fitted", inliers=int(np.count_nonzero(inliers)),
                inlier_fraction=float(np.count_nonzero(inliers)) / us.size,
                rotation_deg=rotation_angle_deg(R), translation=[float(x) for x in t],
                R=np.asarray(R).tolist())
    return np.asarray(R, dtype=np.float64), np.asarray(t, dtype=np.float64), info


def moving_map(estimate: dict, camera: Camera, R: np.ndarray, t: np.ndarray, *,
               moving_px: float = MOVING_PX, open_px: int = OPEN_PX) -> np.ndarray:
    """bool HxW: the pixels whose observations contradict the static-scene motion (R, t), i.e.
    the moving objects of the no-instance baseline.

    The rigid flow and second disparity of every pixel come from :func:`prior_disparity`
    (holes in disp0 filled) and :func:`rigid_flow`; a pixel is contradicting when its rigid
    target lies inside the image (else the estimate could not have seen it) and its valid
    estimated flow differs from the rigid one by more than ``moving_px`` pixels (Euclidean),
    or its valid second disparity by more than ``moving_px``. A morphological opening with an
    ``open_px`` x ``open_px`` square (0 or 1: none) then removes thin or isolated
    contradictions (estimation noise), keeping object-sized regions."""
    h, w = _check_estimate(estimate)
    flow_r, disp1_r, ok = rigid_flow(camera, R, t, prior_disparity(estimate["disp0"], estimate["disp0_valid"]))
    u, v = _grid(h, w)
    with np.errstate(invalid="ignore"):
        x, y = u + flow_r[:, :, 0], v + flow_r[:, :, 1]
        seen = ok & (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        flow = np.asarray(estimate["flow"], dtype=np.float64)
        flow_bad = (np.asarray(estimate["flow_valid"], bool) & np.isfinite(flow).all(axis=2)
                    & (np.linalg.norm(flow - flow_r, axis=2) > moving_px))
        disp1 = np.asarray(estimate["disp1"], dtype=np.float64)
        disp1_bad = (np.asarray(estimate["disp1_valid"], bool) & np.isfinite(disp1)
                     & (np.abs(disp1 - disp1_r) > moving_px))
    moving = seen & (flow_bad | disp1_bad)
    if open_px > 1:
        kernel = np.ones((int(open_px), int(open_px)), np.uint8)
        moving = cv2.morphologyEx(moving.astype(np.uint8), cv2.MORPH_OPEN, kernel) > 0
    return moving


def prior_disparity(disp0: np.ndarray, disp0_valid: np.ndarray) -> np.ndarray:
    """A dense disparity for the rigid prior (HxW float64): valid disp0, holes filled as the
    KITTI devkit does (:func:`asn.sceneflow.metrics.interpolate_background_disparity`), and 0
    (at infinity) where nothing can be filled."""
    from asn.sceneflow.metrics import interpolate_background_disparity

    disp0 = np.asarray(disp0, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        valid = np.asarray(disp0_valid, dtype=bool) & np.isfinite(disp0) & (disp0 > 0)
    filled, ok = interpolate_background_disparity(np.where(valid, disp0, 0.0).astype(np.float32), valid)
    with np.errstate(invalid="ignore"):
        return np.where(ok & (filled > 0), filled, 0.0).astype(np.float64)


def compose_flow(prior: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """Flow of ``first -> second`` from a prior ``p`` (HxWx2; the second image was warped to
    ``warped(x) = second(x + p(x))``) and the residual ``r`` (HxWx2) estimated from ``first``
    to ``warped``: ``total(x) = r(x) + p(x + r(x))`` (p sampled bilinearly, border
    replicated). float32 HxWx2."""
    prior = np.asarray(prior, dtype=np.float32)
    residual = np.asarray(residual, dtype=np.float32)
    if prior.ndim != 3 or prior.shape[2] != 2 or prior.shape != residual.shape:
        raise ValueError(f"prior {prior.shape} and residual {residual.shape} must be the same HxWx2")
    h, w = prior.shape[:2]
    u, v = _grid(h, w)
    x = (u + residual[:, :, 0]).astype(np.float32)
    y = (v + residual[:, :, 1]).astype(np.float32)
    sampled = cv2.remap(prior, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return (residual + sampled).astype(np.float32)


def warp_image(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``out(x) = image(x + flow(x))``: image HxW(xC) uint8, flow HxWx2 -> same shape and dtype
    (bilinear, border replicated)."""
    h, w = image.shape[:2]
    flow = np.asarray(flow, dtype=np.float32)
    if flow.shape != (h, w, 2):
        raise ValueError(f"flow {flow.shape} must be HxWx2 with the image's size {h}x{w}")
    u, v = _grid(h, w)
    return cv2.remap(np.ascontiguousarray(image), (u + flow[:, :, 0]).astype(np.float32),
                     (v + flow[:, :, 1]).astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def compensated_flow(first: np.ndarray, second: np.ndarray, prior: np.ndarray,
                     estimator: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Flow first -> second (HxWx3 uint8) with a prior flow (HxWx2): ``second`` is warped by
    the prior, ``estimator(first, warped)`` -> (residual HxWx2, valid HxW) estimates what the
    prior misses, and :func:`compose_flow` gives the total. Returns (float32 HxWx2, bool HxW:
    the residual's validity)."""
    prior = np.asarray(prior, dtype=np.float32)
    residual, valid = estimator(first, warp_image(second, prior))
    total = compose_flow(prior, residual)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(total).all(axis=2)
    total[~valid] = 0.0
    return total, valid


def apply_egomotion(estimate: dict, camera: Camera, R: np.ndarray, t: np.ndarray,
                    where: np.ndarray, *, fill_holes: bool = True) -> tuple[dict, int]:
    """A new estimate whose flow and second-frame disparity are the rigid motion's (R, t)
    (:func:`rigid_flow`) at the pixels of ``where`` (bool HxW); they become valid there.

    The rigid flow of a pixel needs its first-frame disparity: the valid positive disp0, and
    with ``fill_holes`` the devkit fill of the holes (:func:`prior_disparity`; KITTI scores
    D1 on that same fill, and the road's disparity is constant along a row) where disp0 is
    missing (e.g. the left band SGBM cannot match); without it such pixels keep their input.
    Points moved to or behind the camera keep their input. ``disp0`` / ``disp0_valid`` are
    never changed; the input is not modified. Returns (estimate, pixels overwritten)."""
    h, w = _check_estimate(estimate)
    where = np.asarray(where, dtype=bool)
    if where.shape != (h, w):
        raise ValueError(f"where has shape {where.shape}, the estimate is {h}x{w}")
    out = {key: np.array(value, copy=True) for key, value in estimate.items()}
    out["flow"] = np.array(estimate["flow"], dtype=np.float32)
    out["disp1"] = np.array(estimate["disp1"], dtype=np.float32)
    for key in ("disp0_valid", "flow_valid", "disp1_valid"):
        out[key] = np.array(estimate[key], dtype=bool)
    disp0 = np.asarray(estimate["disp0"], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        disp0_ok = out["disp0_valid"] & np.isfinite(disp0) & (disp0 > 0)
    if fill_holes:
        disp = prior_disparity(disp0, disp0_ok)
        have = disp > 0
    else:
        disp, have = np.where(disp0_ok, disp0, 0.0), disp0_ok
    flow, disp1, ok = rigid_flow(camera, R, t, disp)
    write = where & have & ok
    out["flow"][write] = flow[write]
    out["disp1"][write] = disp1[write]
    out["flow_valid"][write] = True
    out["disp1_valid"][write] = True
    return out, int(np.count_nonzero(write))


def egomotion_refine(estimate: dict, camera: Camera, masks: Sequence[np.ndarray] | None = None, *,
                     rng: np.random.Generator | None = None, iterations: int = ITERATIONS,
                     inlier_px: float = INLIER_PX, min_pixels: int = MIN_PIXELS,
                     max_points: int = MAX_POINTS, moving_px: float = MOVING_PX,
                     open_px: int = OPEN_PX, fill_holes: bool = True) -> tuple[dict, dict]:
    """The background ego-motion of one arm: estimate (the dict of
    :data:`~asn.sceneflow.refine.ESTIMATE_KEYS`) -> (new estimate, info).

    ``masks``: bool HxW instance masks (any number, also none): the static region is the
    pixels outside all of them; it is fitted (:func:`fit_egomotion`) and EVERY pixel of it
    gets the rigid flow and second disparity (:func:`apply_egomotion`). ``masks=None`` (the
    no-instance baseline): the whole image is fitted, moving objects being outliers, and
    every pixel except those that contradict the motion (:func:`moving_map`) is
    overwritten. When the fit is not possible (too few usable pixels, or it fails) the
    estimate is returned unchanged (a copy) and ``info["status"]`` says why. ``info``: that
    of :func:`fit_egomotion` plus ``region`` ("outside_masks" / "whole_image"),
    ``overwritten`` (pixels) and, for the baseline, ``moving`` (pixels left to the estimate).
    """
    h, w = _check_estimate(estimate)
    region, name = np.ones((h, w), bool), ("whole_image" if masks is None else "outside_masks")
    for k, mask in enumerate(masks or []):
        mask = np.asarray(mask)
        if mask.shape != (h, w):
            raise ValueError(f"mask {k} has shape {mask.shape}, the estimate is {h}x{w}")
        region &= ~mask.astype(bool)
    R, t, info = fit_egomotion(estimate, camera, region, rng=rng, iterations=iterations,
                               inlier_px=inlier_px, min_pixels=min_pixels, max_points=max_points)
    info["region"] = name
    if R is None:
        info["overwritten"] = 0
        return {key: np.array(value, copy=True) for key, value in estimate.items()}, info
    if masks is None:
        moving = moving_map(estimate, camera, R, t, moving_px=moving_px, open_px=open_px)
        info["moving"] = int(np.count_nonzero(moving))
        region = ~moving
    out, info["overwritten"] = apply_egomotion(estimate, camera, R, t, region, fill_holes=fill_holes)
    return out, info


def forward_backward_ok(flow: np.ndarray, backward: np.ndarray, *, max_px: float) -> np.ndarray:
    """bool HxW: forward flow (HxWx2, first -> second) consistent with the backward flow
    (HxWx2, second -> first): ``|f(x) + b(x + f(x))| < max_px``, b sampled bilinearly at the
    target, which must lie inside the image."""
    flow = np.asarray(flow, dtype=np.float32)
    h, w = flow.shape[:2]
    u, v = _grid(h, w)
    x, y = (u + flow[:, :, 0]).astype(np.float32), (v + flow[:, :, 1]).astype(np.float32)
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    sampled = cv2.remap(np.asarray(backward, dtype=np.float32), x, y, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    with np.errstate(invalid="ignore"):
        return inside & (np.linalg.norm(flow + sampled, axis=2) < max_px)


def photometric_cost(first: np.ndarray, second: np.ndarray, camera: Camera, R: np.ndarray, t: np.ndarray,
                     disp_second: np.ndarray, *, stride: int = 2, tau: float = PHOTO_TAU) -> float:
    """How well the rigid motion (R, t) (static points, t -> t+1) explains the two images, without
    any flow: the mean truncated absolute grey-level difference ``min(|second(x) -
    first(x')|, tau)`` over the pixels x of ``second`` (every ``stride``-th row and column)
    with a positive disparity ``disp_second`` (HxW, the t+1 disparity at t+1 positions), x'
    being x moved back to t by the inverse motion; a point that leaves ``first`` or passes
    behind the camera costs ``tau``. ``first`` / ``second``: HxW grey images (any real dtype).
    Scored from the second image backwards, since a camera driving forward sees everything of
    the second image in the first (not vice versa). ``inf`` when no pixel has a disparity."""
    first = np.asarray(first, dtype=np.float32)
    second = np.asarray(second, dtype=np.float32)
    h, w = first.shape
    v, u = np.mgrid[0:h:stride, 0:w:stride]
    d = np.asarray(disp_second, dtype=np.float64)[v, u]
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(d) & (d > 0)
    if not keep.any():
        return math.inf
    u, v, d = u[keep].astype(np.float64), v[keep].astype(np.float64), d[keep]
    R = np.asarray(R, dtype=np.float64)
    points = camera.backproject(u, v, d)
    back = (points - np.asarray(t, dtype=np.float64)) @ R  # R^T (X - t)
    u0, v0, _ = camera.project(back)
    with np.errstate(invalid="ignore"):
        inside = (back[:, 2] > 0) & np.isfinite(u0) & np.isfinite(v0) & (u0 >= 0) & (u0 <= w - 1) \
            & (v0 >= 0) & (v0 <= h - 1)
    x = np.where(inside, u0, 0.0).astype(np.float32)[None, :]
    y = np.where(inside, v0, 0.0).astype(np.float32)[None, :]
    sampled = cv2.remap(first, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0]
    diff = np.minimum(np.abs(sampled - second[v.astype(np.intp), u.astype(np.intp)]), tau)
    return float(np.mean(np.where(inside, diff, tau)))


def forward_candidates(max_m: float, step_m: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """The driving prior: static-scene motions of a camera going straight forward or back
    by s metres (R = I, t = (0, 0, -s)) for s on a grid of ``step_m`` in [-max_m, max_m];
    [] when ``max_m`` is 0."""
    if not (math.isfinite(max_m) and max_m >= 0 and math.isfinite(step_m) and step_m > 0):
        raise ValueError(f"forward grid needs max_m >= 0 and step_m > 0, got {max_m}, {step_m}")
    if max_m == 0:
        return []
    count = int(math.floor(max_m / step_m + 1e-9))
    return [(np.eye(3), np.array([0.0, 0.0, -k * step_m])) for k in range(-count, count + 1)]


def compensated_estimate(left0: np.ndarray, right0: np.ndarray, left1: np.ndarray, right1: np.ndarray,
                         camera: Camera, *, max_disparity: int = 64, rounds: int = ROUNDS,
                         fb_px: float = FB_PX, forward_max_m: float = FORWARD_MAX_M,
                         forward_step_m: float = FORWARD_STEP_M, rng: np.random.Generator | None = None,
                         iterations: int = ITERATIONS, inlier_px: float = INLIER_PX,
                         min_pixels: int = MIN_PIXELS, max_points: int = MAX_POINTS) -> tuple[dict, dict]:
    """The baseline estimate with ego-motion-compensated flow (the input side): four HxWx3
    uint8 RGB images and the camera -> (estimate, info).

    SGBM disparities at t and t+1 and DIS flow as :func:`asn.sceneflow.baseline.baseline_estimate`
    (``rounds`` = 0: exactly that). Otherwise a first ego-motion is chosen by
    :func:`photometric_cost` (on the grey images, from the t+1 SGBM disparity) among the
    whole-image fit (:func:`fit_egomotion`) to the plain DIS flow (only the pixels that pass
    the forward-backward check within ``fb_px``; 0 = no check) and the driving prior
    :func:`forward_candidates` (``forward_max_m`` 0 = none): DIS misses most of the road's
    large, expanding flow, so that first fit alone is often wrong. Then ``rounds`` times: the
    rigid flow of the current motion (of the filled disp0, :func:`prior_disparity`) is the
    prior of :func:`compensated_flow` (DIS of the residual), the t+1 disparity is warped to
    the reference frame with the new flow, and the whole-image motion is refitted to it; the
    refit replaces the current motion unless its photometric cost is higher.

    The returned estimate has the keys of :data:`~asn.sceneflow.refine.ESTIMATE_KEYS` (disp0
    the SGBM one; nothing is overwritten by a rigid motion here, the arms do that with
    :func:`egomotion_refine`). ``info``: ``status`` ("compensated", or "uncompensated" when
    ``rounds`` is 0 or no candidate exists), ``start`` ("fit" or "forward"),
    ``photometric`` (the cost of the start), ``rounds`` (the fit info of each round) and
    ``translation`` / ``rotation_deg`` of the last prior."""
    from asn.sceneflow.baseline import estimate_disparity, estimate_flow, warp_to_reference

    if not (isinstance(rounds, (int, np.integer)) and rounds >= 0):
        raise ValueError(f"rounds must be a non-negative integer, got {rounds!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    disp0, disp0_valid = estimate_disparity(left0, right0, max_disparity=max_disparity)
    raw1, raw1_valid = estimate_disparity(left1, right1, max_disparity=max_disparity)
    flow, flow_valid = estimate_flow(left0, left1)
    disp1, disp1_valid = warp_to_reference(raw1, raw1_valid, flow, flow_valid)
    estimate = {"disp0": disp0, "disp0_valid": disp0_valid, "flow": flow, "flow_valid": flow_valid,
                "disp1": disp1, "disp1_valid": disp1_valid}
    info: dict = {"status": "uncompensated", "rounds": []}
    if rounds == 0:
        return estimate, info
    fit_kw = dict(iterations=iterations, inlier_px=inlier_px, min_pixels=min_pixels, max_points=max_points)
    grey0 = cv2.cvtColor(np.ascontiguousarray(left0), cv2.COLOR_RGB2GRAY)
    grey1 = cv2.cvtColor(np.ascontiguousarray(left1), cv2.COLOR_RGB2GRAY)
    disp_t1 = np.where(raw1_valid, raw1, 0.0)

    def cost(R, t):
        return photometric_cost(grey0, grey1, camera, R, t, disp_t1)

    fit_input = estimate
    if fb_px > 0:
        backward, _ = estimate_flow(left1, left0)
        fit_input = dict(estimate, flow_valid=flow_valid & forward_backward_ok(flow, backward, max_px=fb_px))
    R, t, fit = fit_egomotion(fit_input, camera, None, rng=rng, **fit_kw)
    info["first_fit"] = fit
    candidates = ([("fit", R, t)] if R is not None else []) + [
        ("forward", Rc, tc) for Rc, tc in forward_candidates(forward_max_m, forward_step_m)]
    if not candidates:
        return estimate, info
    costs = [cost(Rc, tc) for _, Rc, tc in candidates]
    best = int(np.argmin(costs))  # the first of equal costs: the fit
    info["start"], R, t = candidates[best]
    info["photometric"] = current = float(costs[best])
    prior_disp = prior_disparity(disp0, disp0_valid)
    for _ in range(int(rounds)):
        prior, _, _ = rigid_flow(camera, R, t, prior_disp)
        flow, flow_valid = compensated_flow(left0, left1, prior, estimate_flow)
        disp1, disp1_valid = warp_to_reference(raw1, raw1_valid, flow, flow_valid)
        estimate = dict(estimate, flow=flow, flow_valid=flow_valid, disp1=disp1, disp1_valid=disp1_valid)
        R1, t1, fit = fit_egomotion(estimate, camera, None, rng=rng, **fit_kw)
        info["rounds"].append(fit)
        if R1 is not None:
            refit_cost = cost(R1, t1)
            if refit_cost <= current:
                R, t, current = R1, t1, refit_cost
    info.update(status="compensated", translation=[float(x) for x in t], rotation_deg=rotation_angle_deg(R))
    return estimate, info


__all__ = ["ESTIMATE_KEYS", "apply_egomotion", "compensated_estimate", "compensated_flow", "compose_flow",
           "egomotion_refine", "fit_egomotion", "forward_backward_ok", "forward_candidates", "kabsch_batch", "moving_map", "photometric_cost",
           "prior_disparity", "ransac_egomotion", "rigid_flow", "warp_image"]
