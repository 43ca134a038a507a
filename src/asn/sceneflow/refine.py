"""Instance-aware scene flow refinement in the spirit of ISF (Behl et al., ICCV 2017), the
paper's Table 8: every instance mask is assumed to move RIGIDLY between t and t+1.

For each instance the pixels it owns with a valid first-frame disparity, flow and reference-
frame second-frame disparity give 3-D correspondences ``P = backproject(u, v, disp0)`` ->
``Q = backproject(u + fu, v + fv, disp1)`` (:class:`asn.sceneflow.baseline.Camera`). A rigid
motion ``Q ~ R P + t`` is fitted robustly (:func:`ransac_rigid`: 3-point RANSAC scored by the
reprojection error, then :func:`image_space_refit`, a robust least-squares refit in the image
with a weak small-rotation prior), and the flow and second-frame
disparity of EVERY owned pixel with a valid ``disp0`` are replaced by those the rigid motion
predicts (:func:`refine_instances`). The first-frame disparity is kept: the motion model
says nothing about it, and D1 is scored on it unchanged.

Array conventions are those of :mod:`asn.sceneflow.baseline` / :mod:`asn.sceneflow.metrics`:
disparity HxW float32 with a bool HxW valid mask, flow HxWx2 float32 (u, v) with a bool HxW
valid mask; 3-D points are (N, 3) float64 in metres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from asn.sceneflow.baseline import Camera

ESTIMATE_KEYS = ("disp0", "disp0_valid", "flow", "flow_valid", "disp1", "disp1_valid")
DEGENERATE_SIN = 1e-6  # |(b-a) x (c-a)| <= this * (longest edge)^2: a collinear sample


def _check_points(P: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    P = np.asarray(P, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3 or P.shape != Q.shape:
        raise ValueError(f"P {P.shape} and Q {Q.shape} must both be (N, 3)")
    if P.shape[0] < 3:
        raise ValueError(f"a rigid fit needs at least 3 point pairs, got {P.shape[0]}")
    if not (np.isfinite(P).all() and np.isfinite(Q).all()):
        raise ValueError("P and Q must be finite (drop the points without a valid depth)")
    return P, Q


def fit_rigid(P: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares rigid motion: P, Q (N, 3), N >= 3 -> (R (3, 3), t (3,)) minimising
    ``sum ||R P_i + t - Q_i||^2`` with R a proper rotation (det +1; Kabsch / Umeyama without
    scale). Exact for noiseless non-collinear points; for collinear points the rotation about
    their line is arbitrary (use :func:`ransac_rigid`, which skips such samples)."""
    P, Q = _check_points(P, Q)
    p_mean, q_mean = P.mean(axis=0), Q.mean(axis=0)
    H = (P - p_mean).T @ (Q - q_mean)  # 3x3 cross-covariance
    U, _, Vt = np.linalg.svd(H)
    # flip the axis of the smallest singular value if the best orthogonal map is a reflection
    sign = 1.0 if np.linalg.det(Vt.T @ U.T) >= 0 else -1.0
    R = Vt.T @ np.diag([1.0, 1.0, sign]) @ U.T
    return R, q_mean - R @ p_mean


def _degenerate(points: np.ndarray) -> bool:
    """True if the 3 points (3, 3) are (nearly) collinear or coincide."""
    a, b, c = points
    longest = max(np.sum((b - a) ** 2), np.sum((c - a) ** 2), np.sum((c - b) ** 2))
    return bool(np.linalg.norm(np.cross(b - a, c - a)) <= DEGENERATE_SIN * longest)


def _residuals(P: np.ndarray, Q: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.linalg.norm(P @ R.T + t - Q, axis=1)


def ransac_rigid(P: np.ndarray, Q: np.ndarray, *, threshold: float | np.ndarray,
                 iterations: int = 200, rng: np.random.Generator | None = None,
                 residuals=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust rigid motion: P, Q (N, 3) -> (R (3, 3), t (3,), inliers bool (N,)).

    ``iterations`` minimal samples of 3 distinct pairs; samples collinear in P or in Q are
    skipped (they do not fix the rotation). A pair is an inlier of a hypothesis iff
    ``||R P_i + t - Q_i|| < threshold`` (metres; a scalar or one value per pair, (N,), e.g.
    growing with depth). The hypothesis with the smallest MSAC cost wins: the sum of squared
    residuals truncated at the threshold, i.e. the inlier count weighted by how well the
    inliers fit, which still separates hypotheses when a loose (far-depth) threshold makes
    most of them explain nearly all pairs. R, t are then refitted on its inliers with
    :func:`fit_rigid` (the robust refit), and the returned inliers are those of the refitted
    motion. Deterministic given ``rng`` (None: ``default_rng(0)``). ``residuals``: optional
    ``f(R, t) -> (N,)`` replacing the metric residual (then ``threshold`` is in its units, e.g.
    the reprojection error in pixels that :func:`refine_instances` uses).
    ValueError for N < 3, a non-positive threshold, or when no sample is usable.
    """
    P, Q = _check_points(P, Q)
    n = P.shape[0]
    threshold = np.asarray(threshold, dtype=np.float64)
    if threshold.shape not in ((), (n,)):
        raise ValueError(f"threshold must be a scalar or one value per pair ({n},), "
                         f"got shape {threshold.shape}")
    if not (np.isfinite(threshold).all() and (threshold > 0).all()):
        raise ValueError("threshold must be positive and finite")
    if not (isinstance(iterations, (int, np.integer)) and iterations >= 1):
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    best_inliers, best_cost = None, math.inf
    for _ in range(int(iterations)):
        sample = rng.choice(n, size=3, replace=False)
        if _degenerate(P[sample]) or _degenerate(Q[sample]):
            continue
        R, t = fit_rigid(P[sample], Q[sample])
        res = _residuals(P, Q, R, t) if residuals is None else residuals(R, t)
        cost = float(np.sum(np.minimum(res, threshold) ** 2))
        if cost < best_cost:  # strict: the first of equal hypotheses stays
            best_inliers, best_cost = res < threshold, cost
    if best_inliers is None:
        raise ValueError(f"all {iterations} RANSAC samples were degenerate "
                         "(collinear or coincident points)")
    best_count = int(np.count_nonzero(best_inliers))
    if best_count < 3:
        raise ValueError(f"no rigid motion explains 3 or more pairs within the threshold "
                         f"(best: {best_count})")
    R, t = fit_rigid(P[best_inliers], Q[best_inliers])
    return R, t, (_residuals(P, Q, R, t) if residuals is None else residuals(R, t)) < threshold


ROTATION_PRIOR_PX_PER_RAD = 5.0  # 1 degree of rotation costs as much as ~0.09 px of reprojection error


def image_space_refit(P: np.ndarray, target: np.ndarray, camera: Camera, R0: np.ndarray, t0: np.ndarray,
                      *, inlier_px: float, rounds: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The robust refit: (R, t) minimising the reprojection error of P (N, 3) onto ``target``
    (N, 3) = (u', v', d') over its inliers (error < ``inlier_px``), with a weak prior towards
    small rotations. Candidates start from the RANSAC motion and from the median translation;
    each alternates inlier selection and least squares ``rounds`` times; the candidate (or
    start) with the smallest MSAC cost (squared errors truncated at ``inlier_px``) wins.

    Why not a 3-D least-squares refit: on a planar, far instance the depth noise of stereo
    (metres at 30 m) dominates ||R P + t - Q|| and tilts the fitted rotation by tens of degrees,
    which the image cannot see but which then moves every refined pixel. In the image the
    estimates have pixel-sized errors; there the fit is well posed, and the prior pins the
    directions the image does not constrain. Returns (R, t, inliers: reprojection < inlier_px).
    """
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    def project(x, points):
        return camera.project(points @ Rotation.from_rotvec(x[:3]).as_matrix().T + x[3:])

    def error(x):
        u2, v2, d2 = project(x, P)
        with np.errstate(invalid="ignore"):
            e = np.sqrt((u2 - target[:, 0]) ** 2 + (v2 - target[:, 1]) ** 2 + (d2 - target[:, 2]) ** 2)
        return np.where(np.isfinite(e), e, np.inf)

    def cost(x):
        return float(np.sum(np.minimum(error(x), inlier_px) ** 2))

    def fit(x0, keep):
        points, goal = P[keep], target[keep]

        def residuals(x):
            u2, v2, d2 = project(x, points)
            r = np.concatenate([u2 - goal[:, 0], v2 - goal[:, 1], d2 - goal[:, 2]])
            return np.concatenate([np.where(np.isfinite(r), r, 1e3), ROTATION_PRIOR_PX_PER_RAD * x[:3]])

        return least_squares(residuals, x0, max_nfev=50).x

    starts = [np.concatenate([Rotation.from_matrix(R0).as_rotvec(), t0]),
              np.concatenate([np.zeros(3), np.median(
                  camera.backproject(target[:, 0], target[:, 1], target[:, 2]) - P, axis=0)])]
    candidates = [x for x in starts if np.isfinite(x).all()]
    if not candidates:
        raise ValueError("no finite starting motion for the refit")
    for x in list(candidates):
        for _ in range(rounds):
            keep = error(x) < inlier_px
            if np.count_nonzero(keep) < 3:
                break
            x = fit(x, keep)
            candidates.append(x)
    best = min(candidates, key=cost)
    return Rotation.from_rotvec(best[:3]).as_matrix(), best[3:], error(best) < inlier_px


def rotation_angle_deg(R: np.ndarray) -> float:
    """The angle of a rotation matrix (3, 3) in degrees, in [0, 180]."""
    cos = (np.trace(R) - 1.0) / 2.0
    return math.degrees(math.acos(min(1.0, max(-1.0, float(cos)))))


def _check_estimate(estimate: dict) -> tuple[int, int]:
    missing = [k for k in ESTIMATE_KEYS if k not in estimate]
    if missing:
        raise ValueError(f"the estimate lacks {', '.join(missing)} "
                         f"(needs {', '.join(ESTIMATE_KEYS)})")
    if np.ndim(estimate["disp0"]) != 2:
        raise ValueError(f"disp0 must be HxW, got shape {np.shape(estimate['disp0'])}")
    h, w = np.shape(estimate["disp0"])
    for key in ESTIMATE_KEYS:
        want = (h, w, 2) if key == "flow" else (h, w)
        if np.shape(estimate[key]) != want:
            raise ValueError(f"{key} has shape {np.shape(estimate[key])}, expected {want}")
    return h, w


def default_order(disp0: np.ndarray, disp0_ok: np.ndarray,
                  masks: Sequence[np.ndarray]) -> list[int]:
    """Nearest first: instances by decreasing median valid ``disp0`` inside the mask (larger
    disparity = nearer); masks without a valid disparity go last; ties keep the mask order."""
    medians = []
    for mask in masks:
        values = disp0[mask & disp0_ok]
        medians.append(float(np.median(values)) if values.size else -math.inf)
    return sorted(range(len(masks)), key=lambda k: (-medians[k], k))


def refine_instances(estimate: dict, camera: Camera, masks: Sequence[np.ndarray],
                     order: Sequence[int] | None = None, *, min_pixels: int = 50,
                     rng: np.random.Generator | None = None,
                     threshold: float | None = None, inlier_px: float = 2.0,
                     iterations: int = 200) -> tuple[dict, list[dict]]:
    """Rigid-instance refinement of a scene flow estimate.

    ``estimate``: dict with ``disp0`` / ``disp1`` (HxW, disp1 in the reference frame),
    ``flow`` (HxWx2) and their bool HxW ``*_valid`` masks (as
    :func:`asn.sceneflow.baseline.baseline_estimate` returns). ``masks``: one bool HxW mask per
    instance, the VISIBLE pixels it owns. A pixel in several masks belongs to the instance
    that comes first in ``order`` (a permutation of the mask indices, nearest first; None:
    :func:`default_order`, by median disparity).

    Per instance, the owned pixels with a valid, positive, finite ``disp0``, flow and ``disp1``
    give the 3-D pairs P -> Q fitted by :func:`ransac_rigid`. By default a pair is an inlier
    when the motion reprojects it within ``inlier_px`` pixels of its observed (u + flow_u,
    v + flow_v, disp1), the error image-space estimates actually have; ``threshold`` (metres)
    switches to the metric residual ``||R P + t - Q||``. Every owned pixel with a valid ``disp0`` then gets
    flow = (u' - u, v' - v) and disp1 = d' from ``(u', v', d') = project(R P + t)``, and both
    become valid there (pixels moved to or behind the camera are left as they were).
    ``disp0`` is never changed. An instance with fewer than ``min_pixels`` (at least 3)
    usable pixels, or whose fit fails, is left as it is.

    Returns (a new estimate dict, the inputs untouched; flow / disp1 float32, other keys
    copied) and one info dict per mask, in mask order: ``index``, ``rank`` (position in the
    order), ``pixels`` (owned), ``used`` (usable pairs), ``inliers``, ``refined`` (pixels
    overwritten), ``status`` ("refined", "too_few_pixels" or "fit_failed"; the reason of a
    failure in ``reason``), and for refined instances ``rotation_deg``, ``translation``
    (3 floats, metres), ``R`` (3x3 nested list).
    """
    h, w = _check_estimate(estimate)
    out = {key: np.array(value, copy=True) for key, value in estimate.items()}
    for key in ("disp0", "disp1"):
        out[key] = np.array(estimate[key], dtype=np.float32)
    out["flow"] = np.array(estimate["flow"], dtype=np.float32)
    for key in ("disp0_valid", "flow_valid", "disp1_valid"):
        out[key] = np.array(estimate[key], dtype=bool)
    masks = [np.asarray(m) for m in masks]
    for k, mask in enumerate(masks):
        if mask.shape != (h, w):
            raise ValueError(f"mask {k} has shape {mask.shape}, the estimate is {h}x{w}")
    masks = [m.astype(bool, copy=False) for m in masks]
    if not (isinstance(min_pixels, (int, np.integer)) and min_pixels >= 0):
        raise ValueError(f"min_pixels must be a non-negative integer, got {min_pixels!r}")
    if threshold is not None and not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be positive metres, got {threshold}")
    if not (math.isfinite(inlier_px) and inlier_px > 0):
        raise ValueError(f"inlier_px must be positive, got {inlier_px}")
    if not masks:
        return out, []

    disp0, disp1, flow = out["disp0"], out["disp1"], out["flow"]
    with np.errstate(invalid="ignore"):
        disp0_ok = out["disp0_valid"] & np.isfinite(disp0) & (disp0 > 0)
        pair_ok = (disp0_ok & out["flow_valid"] & np.isfinite(flow).all(axis=2)
                   & out["disp1_valid"] & np.isfinite(disp1) & (disp1 > 0))
    # read the pairs from the unrefined estimate: owned regions are disjoint, so refining one
    # instance never feeds another, but copies make that independent of the loop order
    flow_in, disp1_in = flow.copy(), disp1.copy()

    if order is None:
        order = default_order(disp0, disp0_ok, masks)
    else:
        order = [int(k) for k in order]
        if sorted(order) != list(range(len(masks))):
            raise ValueError(f"order must be a permutation of the {len(masks)} mask indices, "
                             f"got {order}")
    rng = np.random.default_rng(0) if rng is None else rng
    taken = np.zeros((h, w), dtype=bool)
    infos: list[dict | None] = [None] * len(masks)
    for rank, k in enumerate(order):
        owned = masks[k] & ~taken
        taken |= masks[k]
        usable = owned & pair_ok
        info = {"index": k, "rank": rank, "pixels": int(np.count_nonzero(owned)),
                "used": int(np.count_nonzero(usable)), "inliers": 0, "refined": 0}
        infos[k] = info
        if info["used"] < max(min_pixels, 3):
            info["status"] = "too_few_pixels"
            continue
        vs, us = np.nonzero(usable)
        P = camera.backproject(us, vs, disp0[vs, us])
        Q = camera.backproject(us + flow_in[vs, us, 0].astype(np.float64),
                               vs + flow_in[vs, us, 1].astype(np.float64), disp1_in[vs, us])
        residual_fn = None
        if threshold is None:
            # score in the image: a pair is an inlier when the motion reprojects it within
            # inlier_px of its observed flow target and second disparity. Metric residuals
            # would let depth noise of far objects (1 px of disparity = metres) pick wrong
            # rotations.
            thr = inlier_px
            target = np.stack([us + flow_in[vs, us, 0], vs + flow_in[vs, us, 1], disp1_in[vs, us]], axis=1)

            def residual_fn(R, t, P=P, target=target):
                u2, v2, d2 = camera.project(P @ R.T + t)
                with np.errstate(invalid="ignore"):
                    res = np.sqrt((u2 - target[:, 0]) ** 2 + (v2 - target[:, 1]) ** 2 + (d2 - target[:, 2]) ** 2)
                return np.where(np.isfinite(res), res, np.inf)
        else:
            thr = threshold
        try:
            R, t, inliers = ransac_rigid(P, Q, threshold=thr, iterations=iterations, rng=rng,
                                         residuals=residual_fn)
            if residual_fn is not None:
                R, t, inliers = image_space_refit(P, target, camera, R, t, inlier_px=inlier_px)
        except ValueError as err:
            info["status"], info["reason"] = "fit_failed", str(err)
            continue
        vt, ut = np.nonzero(owned & disp0_ok)
        moved = camera.backproject(ut, vt, disp0[vt, ut]) @ R.T + t
        u2, v2, d2 = camera.project(moved)
        with np.errstate(invalid="ignore"):
            ok = (moved[:, 2] > 0) & np.isfinite(u2) & np.isfinite(v2) & np.isfinite(d2)
        vt, ut = vt[ok], ut[ok]
        flow[vt, ut, 0] = u2[ok] - ut
        flow[vt, ut, 1] = v2[ok] - vt
        disp1[vt, ut] = d2[ok]
        out["flow_valid"][vt, ut] = True
        out["disp1_valid"][vt, ut] = True
        info.update(status="refined", inliers=int(np.count_nonzero(inliers)),
                    refined=int(ut.size), rotation_deg=rotation_angle_deg(R),
                    translation=[float(x) for x in t], R=R.tolist())
    return out, infos
