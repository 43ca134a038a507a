"""Scene flow baseline (OpenCV SGBM + DIS) and the ISF-style rigid-instance refinement.

- the camera's backprojection and projection invert each other;
- the rigid fit is exact on noiseless points (also coplanar ones, where a careless Kabsch
  returns a reflection), and RANSAC + refit recovers the motion through 30 % gross outliers;
- on an analytic frame (a background plane and two slanted, overlapping rectangles, each
  moving rigidly) the refinement restores the exact flow and second-frame disparity inside
  the masks from a noisy estimate with 20 % outliers, leaves everything else untouched, and
  gives the overlap to the nearer instance (or to the one the caller's order puts first);
- the baseline finds a known constant disparity and flow on a random-dot pair.
All images are tiny, and OpenCV runs single-threaded.
"""

from __future__ import annotations

import copy
import math

import cv2
import numpy as np
import pytest

from asn.sceneflow.baseline import (
    Camera,
    baseline_estimate,
    estimate_disparity,
    estimate_flow,
    warp_to_reference,
)
from asn.sceneflow.refine import (
    fit_rigid,
    ransac_rigid,
    refine_instances,
    rotation_angle_deg,
)

CAM = Camera(focal=720.0, cx=47.5, cy=31.5, baseline=0.54)  # KITTI-like focal and baseline
H, W = 64, 96


@pytest.fixture(scope="module", autouse=True)
def single_cv2_thread():
    """OpenCV's own thread pool ignores OMP_NUM_THREADS; tiny images gain nothing from it."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(previous)


def rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0],
                     [-math.sin(a), 0.0, math.cos(a)]])


def rot_x(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)],
                     [0.0, math.sin(a), math.cos(a)]])


# --- camera -----------------------------------------------------------------------------------

def test_camera_round_trip_and_depth():
    rng = np.random.default_rng(1)
    u, v = rng.uniform(0, W, 50), rng.uniform(0, H, 50)
    d = rng.uniform(0.5, 60.0, 50)
    P = CAM.backproject(u, v, d)
    assert P.shape == (50, 3)
    np.testing.assert_allclose(P[:, 2], 720.0 * 0.54 / d, rtol=1e-12)
    np.testing.assert_allclose(P[:, 0], (u - 47.5) * P[:, 2] / 720.0, rtol=1e-12)
    np.testing.assert_allclose(P[:, 1], (v - 31.5) * P[:, 2] / 720.0, rtol=1e-12)
    u2, v2, d2 = CAM.project(P)
    np.testing.assert_allclose(u2, u, atol=1e-9)
    np.testing.assert_allclose(v2, v, atol=1e-9)
    np.testing.assert_allclose(d2, d, rtol=1e-12)
    z = CAM.disparity_to_depth(np.array([[10.0, 0.0], [-1.0, np.nan]]))
    assert z[0, 0] == pytest.approx(720.0 * 0.54 / 10.0)
    assert np.isinf(z[0, 1]) and np.isinf(z[1, 0]) and np.isinf(z[1, 1])
    with pytest.raises(ValueError, match="focal"):
        Camera(focal=0.0, cx=1.0, cy=1.0, baseline=0.5)
    with pytest.raises(ValueError, match="baseline"):
        Camera(focal=100.0, cx=1.0, cy=1.0, baseline=-0.5)


# --- rigid fits -------------------------------------------------------------------------------

def test_fit_rigid_exact_including_coplanar_points():
    rng = np.random.default_rng(2)
    R_true, t_true = rot_y(4.0) @ rot_x(1.5), np.array([0.3, -0.1, 1.2])
    P = rng.uniform(-3, 3, (20, 3)) + [0.0, 0.0, 12.0]
    R, t = fit_rigid(P, P @ R_true.T + t_true)
    np.testing.assert_allclose(R, R_true, atol=1e-12)
    np.testing.assert_allclose(t, t_true, atol=1e-12)
    assert rotation_angle_deg(rot_y(4.0)) == pytest.approx(4.0)
    # coplanar points: the SVD has a zero singular value; det(R) must still be +1
    P[:, 2] = 10.0
    R, t = fit_rigid(P, P @ R_true.T + t_true)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(R, R_true, atol=1e-10)
    np.testing.assert_allclose(t, t_true, atol=1e-9)
    with pytest.raises(ValueError, match="at least 3"):
        fit_rigid(P[:2], P[:2])
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        fit_rigid(P, P[:, :2])


def test_ransac_rigid_through_outliers():
    rng = np.random.default_rng(3)
    R_true, t_true = rot_y(3.0), np.array([0.5, 0.02, -0.8])
    P = rng.uniform(-2, 2, (100, 3)) + [0.0, 0.0, 10.0]
    Q = P @ R_true.T + t_true
    outlier = np.zeros(100, bool)
    outlier[rng.choice(100, 30, replace=False)] = True
    Q[outlier] += rng.uniform(1.0, 4.0, (30, 3)) * rng.choice([-1.0, 1.0], (30, 3))
    R, t, inliers = ransac_rigid(P, Q, threshold=0.05, rng=np.random.default_rng(0))
    assert np.abs(R - R_true).max() < 1e-6 and np.abs(t - t_true).max() < 1e-6
    np.testing.assert_array_equal(inliers, ~outlier)
    # deterministic given the generator
    R2, t2, inliers2 = ransac_rigid(P, Q, threshold=0.05, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(R, R2)
    np.testing.assert_array_equal(t, t2)
    np.testing.assert_array_equal(inliers, inliers2)
    # all points on one line: every sample is degenerate and is skipped
    line = np.outer(np.arange(10.0), [1.0, 0.5, 0.2])
    with pytest.raises(ValueError, match="degenerate"):
        ransac_rigid(line, line + 1.0, threshold=0.1, iterations=20)
    with pytest.raises(ValueError, match="positive"):
        ransac_rigid(P, Q, threshold=0.0)


# --- refinement on an analytic frame ----------------------------------------------------------

A_RECT = (slice(16, 48), slice(40, 80))  # nearer object, overlaps B
B_RECT = (slice(8, 40), slice(10, 60))
MOTION = {1: (rot_y(3.0), np.array([0.2, 0.05, -0.6])),  # A
          2: (np.eye(3), np.array([-0.3, 0.0, 0.4]))}  # B


def _scene():
    """Ground truth disp0, flow, disp1 (float64) and the masks of A and B (A in front)."""
    vv, uu = np.mgrid[0:H, 0:W].astype(np.float64)
    label = np.zeros((H, W), int)
    label[B_RECT] = 2
    label[A_RECT] = 1  # A is nearer: it hides B in the overlap
    z = np.full((H, W), 40.0)  # static background plane
    z[label == 2] = (15.0 + 0.03 * (uu - 10))[label == 2]
    z[label == 1] = (8.0 + 0.02 * (uu - 40) + 0.01 * (vv - 16))[label == 1]
    disp0 = CAM.focal * CAM.baseline / z
    flow = np.zeros((H, W, 2))
    disp1 = disp0.copy()
    for lab, (R, t) in MOTION.items():
        sel = label == lab
        u2, v2, d2 = CAM.project(CAM.backproject(uu[sel], vv[sel], disp0[sel]) @ R.T + t)
        flow[sel, 0], flow[sel, 1], disp1[sel] = u2 - uu[sel], v2 - vv[sel], d2
    mask_a = np.zeros((H, W), bool)
    mask_a[A_RECT] = True
    mask_b = np.zeros((H, W), bool)
    mask_b[B_RECT] = True  # the whole rectangle, overlap included
    return disp0, flow, disp1, mask_a, mask_b


def _noisy_estimate(disp0, flow, disp1, objects, rng):
    """Tiny noise everywhere; in ``objects`` 20 % gross outliers of flow and disp1, some
    invalid flow, and a few invalid disp0 pixels."""
    def n(shape):
        return rng.normal(0.0, 1e-5, shape)

    est = {"disp0": (disp0 + n(disp0.shape)).astype(np.float32),
           "flow": (flow + n(flow.shape)).astype(np.float32),
           "disp1": (disp1 + n(disp1.shape)).astype(np.float32),
           "disp0_valid": np.ones((H, W), bool), "flow_valid": np.ones((H, W), bool),
           "disp1_valid": np.ones((H, W), bool)}
    ys, xs = np.nonzero(objects)
    pick = rng.random(ys.size)
    bad = pick < 0.2
    sign = rng.choice([-1.0, 1.0], (bad.sum(), 3))
    est["flow"][ys[bad], xs[bad]] += sign[:, :2] * rng.uniform(30, 50, (bad.sum(), 2))
    est["disp1"][ys[bad], xs[bad]] += sign[:, 2] * rng.uniform(10, 20, bad.sum())
    est["disp1_valid"] &= est["disp1"] > 0
    holes = (pick >= 0.2) & (pick < 0.25)
    est["flow_valid"][ys[holes], xs[holes]] = False
    est["flow"][ys[holes], xs[holes]] = 0.0
    no_depth = pick > 0.99
    est["disp0_valid"][ys[no_depth], xs[no_depth]] = False
    est["disp0"][ys[no_depth], xs[no_depth]] = 0.0
    return est


def test_refine_instances_restores_rigid_motion():
    disp0, flow, disp1, mask_a, mask_b = _scene()
    est = _noisy_estimate(disp0, flow, disp1, mask_a | mask_b, np.random.default_rng(4))
    before = copy.deepcopy(est)
    out, infos = refine_instances(est, CAM, [mask_b, mask_a], rng=np.random.default_rng(5))

    for key in est:  # the input is not modified
        np.testing.assert_array_equal(est[key], before[key])
    # A (index 1) is nearer: it comes first and owns the overlap
    assert [i["rank"] for i in infos] == [1, 0]
    assert [i["status"] for i in infos] == ["refined", "refined"]
    assert infos[1]["pixels"] == mask_a.sum()
    assert infos[0]["pixels"] == (mask_b & ~mask_a).sum()
    assert infos[1]["rotation_deg"] == pytest.approx(3.0, abs=1e-3)
    np.testing.assert_allclose(infos[1]["translation"], MOTION[1][1], atol=1e-3)
    np.testing.assert_allclose(infos[0]["translation"], MOTION[2][1], atol=1e-3)
    for info in infos:
        assert 0.7 * info["used"] < info["inliers"] < 0.85 * info["used"]

    inside = (mask_a | mask_b) & est["disp0_valid"]
    assert np.abs(out["flow"] - flow)[inside].max() < 1e-3
    assert np.abs(out["disp1"] - disp1)[inside].max() < 1e-3
    assert out["flow_valid"][inside].all() and out["disp1_valid"][inside].all()
    # disp0 is never changed; pixels without a valid disp0 and outside all masks are untouched
    untouched = ~inside
    for key in est:
        if key != "disp0" and key != "disp0_valid":
            np.testing.assert_array_equal(out[key][untouched], est[key][untouched])
    np.testing.assert_array_equal(out["disp0"], est["disp0"])
    np.testing.assert_array_equal(out["disp0_valid"], est["disp0_valid"])
    assert out["flow"].dtype == np.float32 and out["disp1"].dtype == np.float32


def test_refine_instances_explicit_order_and_guards():
    disp0, flow, disp1, mask_a, mask_b = _scene()
    est = _noisy_estimate(disp0, flow, disp1, mask_a | mask_b, np.random.default_rng(6))
    # the caller puts B first: B's motion is applied to the overlap (A's surface)
    out, infos = refine_instances(est, CAM, [mask_b, mask_a], order=[0, 1],
                                  rng=np.random.default_rng(7))
    assert [i["rank"] for i in infos] == [0, 1]
    overlap = mask_a & mask_b & est["disp0_valid"]
    vs, us = np.nonzero(overlap)
    R, t = MOTION[2]
    u2, v2, d2 = CAM.project(CAM.backproject(us, vs, disp0[vs, us]) @ R.T + t)
    assert np.abs(out["flow"][vs, us, 0] - (u2 - us)).max() < 1e-3
    assert np.abs(out["flow"][vs, us, 1] - (v2 - vs)).max() < 1e-3
    assert np.abs(out["disp1"][vs, us] - d2).max() < 1e-3
    assert np.abs(out["flow"][overlap] - flow[overlap]).max() > 0.1  # not A's true motion

    # too few pixels: left as it is; no masks: a copy
    tiny = np.zeros((H, W), bool)
    tiny[50:53, 5:8] = True
    out, infos = refine_instances(est, CAM, [tiny])
    assert infos[0]["status"] == "too_few_pixels" and infos[0]["used"] == 9
    for key in est:
        np.testing.assert_array_equal(out[key], est[key])
    out, infos = refine_instances(est, CAM, [])
    assert infos == [] and out["flow"] is not est["flow"]
    np.testing.assert_array_equal(out["flow"], est["flow"])

    with pytest.raises(ValueError, match="mask 0 has shape"):
        refine_instances(est, CAM, [np.zeros((H, W + 1), bool)])
    with pytest.raises(ValueError, match="permutation"):
        refine_instances(est, CAM, [mask_a, mask_b], order=[0, 0])
    with pytest.raises(ValueError, match="lacks disp1"):
        refine_instances({k: v for k, v in est.items() if k != "disp1"}, CAM, [mask_a])
    with pytest.raises(ValueError, match="flow has shape"):
        refine_instances({**est, "flow": est["flow"][:, :, 0]}, CAM, [mask_a])


# --- baseline ---------------------------------------------------------------------------------

def test_warp_to_reference_bilinear_and_validity():
    h, w = 12, 16
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float32)
    disp1 = 5.0 + 0.5 * uu + 0.25 * vv  # linear: bilinear sampling is exact
    valid1 = np.ones((h, w), bool)
    valid1[6, 9] = False
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = 1.5, -0.25  # multiples of 1/32: no remap quantisation
    flow_valid = np.ones((h, w), bool)
    flow_valid[2, 2] = False
    out, valid = warp_to_reference(disp1, valid1, flow, flow_valid)
    expected = 5.0 + 0.5 * (uu + 1.5) + 0.25 * (vv - 0.25)
    inside = (uu + 1.5 <= w - 1) & (vv - 0.25 >= 0)
    # the hole at (row 6, col 9) spoils every target with it among its 4 neighbours:
    # columns floor(u + 1.5) = u + 1 and u + 2, rows v - 1 and v -> u in {7, 8}, v in {6, 7}
    want_valid = inside & flow_valid
    want_valid[6:8, 7:9] = False
    np.testing.assert_array_equal(valid, want_valid)
    np.testing.assert_allclose(out[valid], expected[valid], atol=1e-5)
    assert (out[~valid] == 0).all() and out.dtype == np.float32
    with pytest.raises(ValueError, match="flow"):
        warp_to_reference(disp1, valid1, flow[:, :, 0], flow_valid)


def _random_dots(rng, h, w):
    dots = rng.integers(0, 256, size=(h // 2 + 1, w // 2 + 1), dtype=np.uint8)
    image = cv2.resize(dots, ((w // 2 + 1) * 2, (h // 2 + 1) * 2),
                       interpolation=cv2.INTER_NEAREST)[:h, :w]
    image = cv2.GaussianBlur(image, (0, 0), 0.8)
    return np.repeat(image[:, :, None], 3, axis=2)


def test_baseline_estimate_constant_shift():
    h, w, d, s = 96, 160, 8, 3
    tex = _random_dots(np.random.default_rng(8), h, w + d + s)
    left0 = tex[:, s:s + w]            # right(x - d) = left(x): disparity d
    right0 = tex[:, s + d:s + d + w]
    left1 = tex[:, 0:w]                # left1(x) = left0(x - s): flow u = +s
    right1 = tex[:, d:d + w]
    est = baseline_estimate(*(np.ascontiguousarray(x) for x in (left0, right0, left1, right1)),
                            max_disparity=16)
    assert set(est) == {"disp0", "disp0_valid", "flow", "flow_valid", "disp1", "disp1_valid"}
    core = (slice(12, h - 12), slice(28, w - 12))  # away from the borders and the SGBM band
    for key in ("disp0", "disp1"):
        ok = est[f"{key}_valid"][core]
        assert ok.mean() > 0.5, key
        assert abs(np.median(est[key][core][ok]) - d) < 0.5, key
        assert est[key].dtype == np.float32 and est[key].shape == (h, w)
    assert not est["disp0_valid"][:, :16].any()  # no right-image partner in the left band
    fl = est["flow"][core][est["flow_valid"][core]]
    assert abs(np.median(fl[:, 0]) - s) < 0.5 and abs(np.median(fl[:, 1])) < 0.5
    assert est["flow"].shape == (h, w, 2) and est["flow"].dtype == np.float32


def test_baseline_bad_input():
    img = np.zeros((32, 48, 3), np.uint8)
    with pytest.raises(ValueError, match=r"right must be an HxWx3"):
        estimate_disparity(img, img[:, :, 0])
    with pytest.raises(ValueError, match="second must be uint8"):
        estimate_flow(img, img.astype(np.float32))
    with pytest.raises(ValueError, match=r"right1 is 32x40 but left0 is 32x48"):
        baseline_estimate(img, img, img, img[:, :40])
    with pytest.raises(ValueError, match="block_size"):
        estimate_disparity(img, img, block_size=4)
    with pytest.raises(ValueError, match="max_disparity"):
        estimate_disparity(img, img, max_disparity=0)
