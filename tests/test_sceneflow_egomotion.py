"""Background ego-motion of the Table 8 arms (asn.sceneflow.egomotion).

- the rigid flow of a motion equals projecting the moved 3-D points, pixels at infinity move
  by the rotation alone, the batched Kabsch equals the single one;
- on an analytic frame (road plane and a far wall seen by a camera that turns and drives
  forward, a moving block, noisy flow with 25 % gross outliers) the fit recovers the camera's
  motion, the no-instance arm rewrites the background with near-exact flow and leaves the
  moving block to the estimate, the masked arm rewrites exactly the pixels outside the mask;
- too few pixels, or collinear ones, leave the estimate unchanged and say why; a seed gives
  the same result twice;
- flow composition and the compensated flow on a shifted random-dot pair;
- on the synthetic stereo world, the photometric cost prefers the true motion, the
  compensated estimate finds it, and the arms keep their order (ground-truth masks best,
  then the ego-motion baseline, then the plain DIS baseline).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from asn.sceneflow import egomotion as eg
from asn.sceneflow.baseline import Camera, baseline_estimate, estimate_disparity
from asn.sceneflow.metrics import error_rates, frame_counts, pool_counts
from asn.sceneflow.refine import fit_rigid, refine_instances, rotation_angle_deg

CAM = Camera(focal=300.0, cx=79.5, cy=30.0, baseline=0.54)
H, W = 72, 160
OBJECT = (slice(38, 60), slice(100, 130))
OBJECT_Z = 9.0
OBJECT_T = np.array([0.3, 0.0, 0.8])  # the block's own motion, in the t camera frame (m)


@pytest.fixture(scope="module", autouse=True)
def single_cv2_thread():
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(previous)


def rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])


R_TRUE = rot_y(0.8)
T_TRUE = np.array([0.05, 0.01, -1.1])  # static points: the camera drives forward ~1.1 m and turns


def _frame():
    """Ground truth disp0, flow, disp1 (float64) of the analytic frame and the block's mask."""
    vv, uu = np.mgrid[0:H, 0:W].astype(np.float64)
    z = np.where(vv > CAM.cy + 2, CAM.focal * 1.65 / np.maximum(vv - CAM.cy, 1e-9), 30.0)  # road, wall
    z = np.minimum(z, 30.0)
    mask = np.zeros((H, W), bool)
    mask[OBJECT] = True
    z[mask] = OBJECT_Z
    disp0 = CAM.focal * CAM.baseline / z
    flow, disp1, ok = eg.rigid_flow(CAM, R_TRUE, T_TRUE, disp0)
    assert ok.all()
    flow, disp1 = flow.astype(np.float64), disp1.astype(np.float64)
    u2, v2, d2 = CAM.project(CAM.backproject(uu[mask], vv[mask], disp0[mask]) @ R_TRUE.T + T_TRUE + OBJECT_T)
    flow[mask, 0], flow[mask, 1], disp1[mask] = u2 - uu[mask], v2 - vv[mask], d2
    return disp0, flow, disp1, mask


def _estimate(disp0, flow, disp1, rng, outliers=0.25):
    est = {"disp0": (disp0 + rng.normal(0, 0.03, disp0.shape)).astype(np.float32),
           "flow": (flow + rng.normal(0, 0.15, flow.shape)).astype(np.float32),
           "disp1": (disp1 + rng.normal(0, 0.05, disp1.shape)).astype(np.float32),
           "disp0_valid": np.ones((H, W), bool), "flow_valid": np.ones((H, W), bool),
           "disp1_valid": np.ones((H, W), bool)}
    bad = rng.random((H, W)) < outliers
    est["flow"][bad] += (rng.choice([-1.0, 1.0], (bad.sum(), 2)) * rng.uniform(8, 25, (bad.sum(), 2))).astype(np.float32)
    est["disp0_valid"][:, :6] = False  # a band without disparity, as SGBM's left border
    est["disp0"][:, :6] = 0.0
    return est, bad


def test_rigid_flow_is_the_projection_of_the_moved_points():
    rng = np.random.default_rng(0)
    disp = rng.uniform(0.5, 40.0, (H, W))
    disp[:5] = 0.0  # at infinity
    flow, disp1, ok = eg.rigid_flow(CAM, R_TRUE, T_TRUE, disp)
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32 and disp1.dtype == np.float32 and ok.all()
    vv, uu = np.mgrid[5:H, 0:W].astype(np.float64)
    u2, v2, d2 = CAM.project(CAM.backproject(uu, vv, disp[5:]) @ R_TRUE.T + T_TRUE)
    np.testing.assert_allclose(flow[5:, :, 0].reshape(-1), u2 - uu.reshape(-1), atol=2e-3)
    np.testing.assert_allclose(flow[5:, :, 1].reshape(-1), v2 - vv.reshape(-1), atol=2e-3)
    np.testing.assert_allclose(disp1[5:].reshape(-1), d2, rtol=1e-5)
    # at infinity only the rotation moves a pixel, and the disparity stays 0
    vv, uu = np.mgrid[0:5, 0:W].astype(np.float64)
    u2, v2, _ = CAM.project(CAM.backproject(uu, vv, 1e-9) @ R_TRUE.T)
    np.testing.assert_allclose(flow[:5, :, 0].reshape(-1), u2 - uu.reshape(-1), atol=1e-3)
    assert (disp1[:5] == 0).all()
    # a point the camera drives past (behind it at t+1) is not ok; a negative disparity neither
    disp[10, 10], disp[11, 11] = CAM.focal * CAM.baseline / 0.5, -1.0
    _, _, ok = eg.rigid_flow(CAM, np.eye(3), np.array([0.0, 0.0, -1.0]), disp)
    assert not ok[10, 10] and not ok[11, 11]
    with pytest.raises(ValueError, match="HxW"):
        eg.rigid_flow(CAM, np.eye(3), np.zeros(3), disp[0])


def test_kabsch_batch_equals_the_single_fit():
    rng = np.random.default_rng(1)
    P = rng.uniform(-3, 3, (5, 6, 3)) + [0, 0, 10]
    Q = P @ R_TRUE.T + T_TRUE + rng.normal(0, 0.05, P.shape)
    P[4, :, 2] = 10.0  # a coplanar set: still a proper rotation
    R, t = eg.kabsch_batch(P, Q)
    for k in range(5):
        R1, t1 = fit_rigid(P[k], Q[k])
        np.testing.assert_allclose(R[k], R1, atol=1e-10)
        np.testing.assert_allclose(t[k], t1, atol=1e-9)
        assert np.linalg.det(R[k]) == pytest.approx(1.0)


def test_fit_recovers_the_camera_motion_through_outliers_and_a_moving_object():
    disp0, flow, disp1, mask = _frame()
    est, bad = _estimate(disp0, flow, disp1, np.random.default_rng(2))
    R, t, info = eg.fit_egomotion(est, CAM, None, rng=np.random.default_rng(3))
    assert info["status"] == "fitted" and info["sampled"] == eg.MAX_POINTS
    assert rotation_angle_deg(R.T @ R_TRUE) < 0.05
    np.testing.assert_allclose(t, T_TRUE, atol=0.02)
    # the moving block and the gross outliers are not inliers
    assert 0.6 < info["inlier_fraction"] < 0.75

    # the no-instance arm: everything but the moving block gets the rigid flow
    out, info = eg.egomotion_refine(est, CAM, None, rng=np.random.default_rng(3))
    assert info["region"] == "whole_image" and info["status"] == "fitted"
    background = ~mask
    error = np.linalg.norm(out["flow"] - flow, axis=2)
    assert np.median(error[background]) < 0.1 and np.quantile(error[background], 0.99) < 0.5
    assert np.abs(out["disp1"] - disp1)[background].max() < 0.2
    # the band without disp0 is filled (the devkit's fill) and gets the rigid flow too
    assert error[:, :6][background[:, :6]].max() < 0.5
    # the block contradicts the motion: kept as the estimate gave it (its own flow)
    kept = np.all(out["flow"] == est["flow"], axis=2)
    assert kept[mask].mean() > 0.95 and info["moving"] >= 0.95 * mask.sum()
    np.testing.assert_array_equal(out["disp0"], est["disp0"])
    np.testing.assert_array_equal(out["disp0_valid"], est["disp0_valid"])

    # with the block's mask: exactly the outside is rewritten, the inside is untouched
    out, info = eg.egomotion_refine(est, CAM, [mask], rng=np.random.default_rng(3))
    assert info["region"] == "outside_masks" and info["overwritten"] == background.sum()
    np.testing.assert_array_equal(out["flow"][mask], est["flow"][mask])
    np.testing.assert_array_equal(out["disp1"][mask], est["disp1"][mask])
    assert np.linalg.norm(out["flow"] - flow, axis=2)[background].max() < 0.5
    # then the rigid refinement of the block restores its own motion
    refined, infos = refine_instances(out, CAM, [mask], rng=np.random.default_rng(4))
    assert infos[0]["status"] == "refined"
    assert np.linalg.norm(refined["flow"] - flow, axis=2)[mask].max() < 0.5


def test_same_seed_same_result_and_the_input_is_not_changed():
    disp0, flow, disp1, _ = _frame()
    est, _ = _estimate(disp0, flow, disp1, np.random.default_rng(5))
    copy = {k: v.copy() for k, v in est.items()}
    a, info_a = eg.egomotion_refine(est, CAM, None, rng=np.random.default_rng(6))
    b, info_b = eg.egomotion_refine(est, CAM, None, rng=np.random.default_rng(6))
    for key in est:
        np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_array_equal(est[key], copy[key])
    assert info_a == info_b


def test_degenerate_input_keeps_the_estimate_and_says_why():
    disp0, flow, disp1, _ = _frame()
    est, _ = _estimate(disp0, flow, disp1, np.random.default_rng(7), outliers=0.0)
    no_depth = dict(est, disp0_valid=np.zeros((H, W), bool))
    out, info = eg.egomotion_refine(no_depth, CAM, None)
    assert info["status"] == "too_few_pixels" and info["used"] == 0 and info["overwritten"] == 0
    for key in est:
        np.testing.assert_array_equal(out[key], no_depth[key])
    # one road row of exact values: every 3-D point on one line, so no sample fixes the rotation
    est = {"disp0": disp0.astype(np.float32), "flow": flow.astype(np.float32), "disp1": disp1.astype(np.float32),
           "disp0_valid": np.ones((H, W), bool), "flow_valid": np.ones((H, W), bool),
           "disp1_valid": np.ones((H, W), bool)}
    row = np.zeros((H, W), bool)
    row[60] = True
    R, t, info = eg.fit_egomotion(est, CAM, row, min_pixels=10)
    assert R is None and t is None and info["status"] == "fit_failed" and "degenerate" in info["reason"]
    out, info = eg.egomotion_refine(est, CAM, [~row], min_pixels=10)
    assert info["status"] == "fit_failed" and info["overwritten"] == 0
    np.testing.assert_array_equal(out["flow"], est["flow"])
    # a tiny region: fewer pixels than min_pixels
    _, _, info = eg.fit_egomotion(est, CAM, row, min_pixels=W + 1)
    assert info["status"] == "too_few_pixels" and info["used"] == W
    with pytest.raises(ValueError, match="region"):
        eg.fit_egomotion(est, CAM, row[:10])
    with pytest.raises(ValueError, match="mask 0"):
        eg.egomotion_refine(est, CAM, [row[:10]])
    with pytest.raises(ValueError, match="inlier_px"):
        eg.fit_egomotion(est, CAM, inlier_px=0.0)


def _random_dots(rng, h, w):
    image = (rng.random((h, w)) * 255).astype(np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 1.0)
    return np.repeat(image[:, :, None], 3, axis=2)


def test_compose_and_compensated_flow_on_a_shifted_texture():
    prior = np.zeros((20, 30, 2), np.float32)
    prior[..., 0] = 2.0
    residual = np.zeros_like(prior)
    residual[..., 0], residual[..., 1] = 1.0, 1.0
    total = eg.compose_flow(prior, residual)
    np.testing.assert_allclose(total[..., 0], 3.0)
    np.testing.assert_allclose(total[..., 1], 1.0)

    h, w, s = 96, 160, 14
    tex = _random_dots(np.random.default_rng(8), h, w + s)
    first, second = np.ascontiguousarray(tex[:, s:]), np.ascontiguousarray(tex[:, :w])  # flow u = +s
    from asn.sceneflow.baseline import estimate_flow

    prior = np.zeros((h, w, 2), np.float32)
    prior[..., 0] = s - 3.0  # a prior 3 px off
    flow, valid = eg.compensated_flow(first, second, prior, estimate_flow)
    core = (slice(10, h - 10), slice(20, w - 20))
    assert valid[core].all()
    assert abs(np.median(flow[core][..., 0]) - s) < 0.3 and abs(np.median(flow[core][..., 1])) < 0.3


def _counts(scene, est):
    return frame_counts(disp=((scene.disp0, scene.disp0_valid), (est["disp0"], est["disp0_valid"])),
                        disp1=((scene.disp1, scene.disp1_valid), (est["disp1"], est["disp1_valid"])),
                        flow=((scene.flow, scene.flow_valid), (est["flow"], est["flow_valid"])), obj_map=scene.obj_map)


def test_synthetic_world_motion_found_and_the_arms_order():
    from asn.sceneflow.world import render_stereo_scene

    rows = {"plain": [], "baseline": [], "gt": []}
    for seed in (3, 4):
        scene = render_stereo_scene(seed, 320, 96)
        cam = scene.camera
        grey = [cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) for img in (scene.left0, scene.left1)]
        truth = np.array([0.0, 0.0, -scene.ego_tz])
        d1, v1 = estimate_disparity(scene.left1, scene.right1, max_disparity=32)
        disp_t1 = np.where(v1, d1, 0.0)
        assert (eg.photometric_cost(*grey, cam, np.eye(3), truth, disp_t1)
                < eg.photometric_cost(*grey, cam, np.eye(3), np.zeros(3), disp_t1))
        rng = np.random.default_rng(0)
        est, info = eg.compensated_estimate(scene.left0, scene.right0, scene.left1, scene.right1, cam,
                                            max_disparity=32, rng=rng)
        assert info["status"] == "compensated"
        assert abs(info["translation"][2] - truth[2]) < 0.05
        rows["plain"].append(_counts(scene, baseline_estimate(scene.left0, scene.right0, scene.left1, scene.right1,
                                                              max_disparity=32)))
        base, _ = eg.egomotion_refine(est, cam, None, rng=rng)
        rows["baseline"].append(_counts(scene, base))
        masks = [inst.inmodal_mask for inst in scene.instances]
        gt, _ = eg.egomotion_refine(est, cam, masks, rng=rng)
        gt, _ = refine_instances(gt, cam, masks, rng=rng)
        rows["gt"].append(_counts(scene, gt))
    rates = {arm: error_rates(pool_counts(counts)) for arm, counts in rows.items()}
    fl = {arm: r["Fl"]["all"]["rate"] for arm, r in rates.items()}
    assert fl["gt"] < fl["baseline"] < fl["plain"]
    assert rates["gt"]["SF"]["all"]["rate"] < rates["baseline"]["SF"]["all"]["rate"]
    assert rates["baseline"]["Fl"]["bg"]["rate"] < 0.5 * rates["plain"]["Fl"]["bg"]["rate"]
