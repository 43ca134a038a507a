"""The synthetic stereo / motion world (Table 8) and the Table 8 helpers: determinism, exact
ground truth (the images agree with it), the KITTI-layout round trip, occlusion order from
amodal masks, and the bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest

from asn.sceneflow import table8
from asn.sceneflow.world import camera_for, render_stereo_scene

pytestmark = pytest.mark.usefixtures("single_torch_thread")

WIDTH, HEIGHT = 320, 96


@pytest.fixture(scope="module")
def scene():
    return render_stereo_scene(3, WIDTH, HEIGHT)


def test_same_seed_same_scene_other_seed_other_scene(scene):
    again = render_stereo_scene(3, WIDTH, HEIGHT)
    for key in ("left0", "right0", "left1", "right1", "disp0", "disp1", "flow", "obj_map"):
        assert np.array_equal(getattr(scene, key), getattr(again, key)), key
    assert not np.array_equal(render_stereo_scene(4, WIDTH, HEIGHT).left0, scene.left0)


def test_ground_truth_is_the_geometry_of_the_images(scene):
    camera = camera_for(WIDTH, HEIGHT)
    # the road: disparity f * B / Z with Z = f * h / (v - cy), exactly
    v = HEIGHT - 1
    road = scene.disp0_valid[v] & (scene.obj_map[v] == 0)
    expected = camera.focal * camera.baseline * (v - camera.cy) / (camera.focal * 1.65)
    assert np.allclose(scene.disp0[v][road], expected, rtol=1e-5)
    sky = (scene.obj_map == 0)[: int(camera.cy)]
    assert not scene.disp0_valid[: int(camera.cy)][sky].any()  # sky and buildings: no ground truth
    # the right image at the true disparity and the t+1 image at the true flow show the same
    # surfaces (sensor noise and resampling aside), much closer than without the motion
    rows, cols = np.nonzero(scene.disp0_valid & (scene.obj_map > 0))
    right_cols = np.rint(cols - scene.disp0[rows, cols]).astype(int)
    inside = right_cols >= 0
    stereo = np.abs(scene.left0[rows[inside], cols[inside]].astype(int)
                    - scene.right0[rows[inside], right_cols[inside]].astype(int)).mean()
    rows, cols = np.nonzero(scene.flow_valid & (scene.obj_map > 0))
    u1 = np.rint(cols + scene.flow[rows, cols, 0]).astype(int)
    v1 = np.rint(rows + scene.flow[rows, cols, 1]).astype(int)
    inside = (u1 >= 0) & (u1 < WIDTH) & (v1 >= 0) & (v1 < HEIGHT)
    moved = np.abs(scene.left0[rows[inside], cols[inside]].astype(int)
                   - scene.left1[v1[inside], u1[inside]].astype(int)).mean()
    still = np.abs(scene.left0[rows[inside], cols[inside]].astype(int)
                   - scene.left1[rows[inside], cols[inside]].astype(int)).mean()
    assert stereo < 8 and moved < 0.5 * still, (stereo, moved, still)
    # every object moves rigidly: its flow is the projection of one 3-D translation
    for k, motion in enumerate(scene.motions):
        mask = (scene.obj_map == k + 1) & scene.flow_valid
        if mask.sum() < 10:
            continue
        depth0 = camera.focal * camera.baseline / scene.disp0[mask]
        depth1 = camera.focal * camera.baseline / scene.disp1[mask]
        assert np.allclose(depth1 - depth0, motion.dz - scene.ego_tz, atol=1e-3)
    # the instances are the KINS world's: amodal / inmodal masks with the visible parts disjoint
    visible = np.stack([inst.inmodal_mask for inst in scene.instances])
    assert visible.sum(axis=0).max() <= 1
    assert all((inst.inmodal_mask <= inst.amodal_mask).all() for inst in scene.instances)


def test_kitti_layout_round_trip(tmp_path):
    names = table8.write_synthetic_scenes(tmp_path, 2, seed=5, width=WIDTH, height=HEIGHT)
    assert names == ["000000", "000001"]
    for folder in ("image_2", "image_3"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == [
            "000000_10.png", "000000_11.png", "000001_10.png", "000001_11.png"]
    seed = int(np.random.SeedSequence([5, 8, 1]).generate_state(1)[0])
    scene = render_stereo_scene(seed, WIDTH, HEIGHT)
    frame = table8.read_frame(tmp_path, "000001")
    assert np.array_equal(frame["left1"], scene.left1) and np.array_equal(frame["right0"], scene.right0)
    disp, valid = frame["disp0"]
    assert np.array_equal(valid, scene.disp0_valid)
    assert np.abs(disp - scene.disp0)[valid].max() <= 1 / 256 + 1e-6  # KITTI's 1/256 px encoding
    flow, flow_valid = frame["flow"]
    assert np.array_equal(flow_valid, scene.flow_valid)
    assert np.abs(flow - scene.flow)[flow_valid].max() <= 1 / 64 + 1e-6
    assert ((frame["obj_map"] > 0) == (scene.obj_map > 0)).all()


def test_amodal_order_puts_the_occluder_first():
    behind_amodal = np.zeros((10, 10), bool)
    behind_amodal[2:8, 2:8] = True
    front = np.zeros((10, 10), bool)
    front[5:10, 5:10] = True
    behind_visible = behind_amodal & ~front
    assert table8.amodal_order([behind_visible, front], [behind_amodal, front]) == [1, 0]
    assert table8.amodal_order([front, behind_visible], [front, behind_amodal]) == [0, 1]
    assert table8.amodal_order([], []) == []


def test_bootstrap_interval_brackets_the_pooled_rate():
    rng = np.random.default_rng(0)
    counts = np.zeros((3, 20, 4, 3, 2), dtype=np.int64)
    counts[..., 1] = 1000
    counts[..., 0] = rng.binomial(1000, 0.1, size=counts.shape[:-1])
    interval = table8.bootstrap_interval(counts, resamples=300, rng=np.random.default_rng(1))
    pooled = 100 * counts[..., 0].sum() / counts[..., 1].sum() / 1  # same for every metric / region here
    low, high = interval["D1"]["all"]
    assert low < 10.5 and high > 9.5 and low <= high
    assert abs((low + high) / 2 - pooled) < 1.0
    empty = np.zeros((1, 2, 4, 3, 2), dtype=np.int64)
    assert table8.bootstrap_interval(empty, resamples=5, rng=np.random.default_rng(0))["Fl"]["fg"] == [None, None]
