"""KITTI 2015 scene flow: PNG encodings and the official devkit metrics (D1 / D2 / Fl / SF).

- the devkit demo pair (../shared/fixtures/kitti2015_devkit_demo, real KITTI data) gives the
  reference counts of the compiled C++ devkit, and the variants the fixture's README names
  (no fill, ``>=``) give different counts, so the rules are really exercised;
- an independent, loop-based transcription of the devkit C++ (``interpolateBackground``,
  ``*ErrorsOutlier``) agrees with the vectorized code on small random frames;
- PNG round trips, the devkit's write rules, and one-line errors naming the bad file.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from asn.cli import main
from asn.errors import InputError
from asn.sceneflow import io
from asn.sceneflow.evaluate import evaluate_paths
from asn.sceneflow.metrics import (
    _ABS_F32,
    _REL_F32,
    METRICS,
    REGIONS,
    disparity_outliers,
    error_rates,
    frame_counts,
    interpolate_background_disparity,
    interpolate_background_flow,
    pool_counts,
)

FIXTURE = Path(__file__).parents[1] / ".." / "shared" / "fixtures" / "kitti2015_devkit_demo"
D1_REFERENCE = (15164, 111326)
FL_REFERENCE = (23031, 111326)


def fixture_args(**override) -> list[str]:
    files = {"disp-gt": FIXTURE / "disp_gt.png", "disp-est": FIXTURE / "disp_est.png",
             "flow-gt": FIXTURE / "flow_gt.png", "flow-est": FIXTURE / "flow_est.png", **override}
    return ["sceneflow-eval", *[a for k, v in files.items() for a in (f"--{k}", str(v))]]


# --------------------------------------------------------------------------------------------
# the devkit demo pair: reference counts, and the rules that would change them


def test_devkit_demo_pair_reference_counts():
    counts = frame_counts(disp=(io.read_disparity(FIXTURE / "disp_gt.png"),
                                io.read_disparity(FIXTURE / "disp_est.png")),
                          flow=(io.read_flow(FIXTURE / "flow_gt.png"),
                                io.read_flow(FIXTURE / "flow_est.png")))
    assert set(counts) == {"D1", "Fl"}  # no second-frame disparity: no D2, no SF
    assert tuple(counts["D1"]["all"]) == D1_REFERENCE
    assert tuple(counts["Fl"]["all"]) == FL_REFERENCE
    # no object map: everything is background
    assert counts["D1"]["bg"] == counts["D1"]["all"] and counts["D1"]["fg"] == [0, 0]
    assert counts["Fl"]["bg"] == counts["Fl"]["all"] and counts["Fl"]["fg"] == [0, 0]
    rates = error_rates(counts)
    assert rates["D1"]["all"]["rate"] == pytest.approx(13.6213, abs=5e-5)
    assert rates["Fl"]["all"]["rate"] == pytest.approx(20.6879, abs=5e-5)
    assert rates["D1"]["fg"]["rate"] is None


def test_devkit_demo_pair_rule_variants_change_the_count():
    gt, gt_valid = io.read_disparity(FIXTURE / "disp_gt.png")
    est, est_valid = io.read_disparity(FIXTURE / "disp_est.png")
    assert not est_valid.all()  # the estimate has holes, so the fill matters
    filled, filled_valid = interpolate_background_disparity(est, est_valid)
    assert filled_valid.all()
    assert int(np.count_nonzero(disparity_outliers(gt, filled) & gt_valid)) == 15164
    # without the fill (holes keep the devkit's -1, or the PNG's 0): 15166
    for hole in (-1.0, 0.0):
        raw = np.where(est_valid, est, np.float32(hole))
        assert int(np.count_nonzero(disparity_outliers(gt, raw) & gt_valid)) == 15166
    # >= instead of > (same float32 arithmetic): 15168
    err = np.abs(gt - filled)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = err / np.abs(gt)
    loose = (err.astype(np.float64) >= 3.0) & (rel.astype(np.float64) >= 0.05) & gt_valid
    assert int(np.count_nonzero(loose)) == 15168


# --------------------------------------------------------------------------------------------
# fill: hand-made cases of the devkit's interpolateBackground


def test_fill_rows_columns_and_unfilled_rows():
    nan = np.nan
    disp = np.array([[nan, nan, nan, nan, nan],   # leading invalid row: copy of row 1
                     [nan, 5.0, nan, nan, 3.0],   # left end, interior run -> min(5, 3), right end
                     [nan, nan, nan, nan, nan],   # interior invalid row: NOT filled (-1)
                     [2.0, nan, 7.0, nan, nan],   # interior run of one -> min(2, 7)
                     [nan, nan, nan, nan, nan]],  # trailing invalid row: copy of row 3
                    np.float32)
    valid = ~np.isnan(disp)
    filled, ok = interpolate_background_disparity(np.nan_to_num(disp), valid)
    expected = np.array([[5, 5, 3, 3, 3], [5, 5, 3, 3, 3], [-1, -1, -1, -1, -1],
                         [2, 2, 7, 7, 7], [2, 2, 7, 7, 7]], np.float32)
    np.testing.assert_array_equal(filled, expected)
    np.testing.assert_array_equal(ok, [[True] * 5, [True] * 5, [False] * 5, [True] * 5, [True] * 5])
    # flow: component-wise minimum of the two bounding vectors
    flow = np.zeros((1, 4, 2), np.float32)
    flow[0, 0] = (1.0, -4.0)
    flow[0, 3] = (-2.0, 6.0)
    f_filled, f_ok = interpolate_background_flow(flow, np.array([[True, False, False, True]]))
    np.testing.assert_array_equal(f_filled[0, 1], [-2.0, -4.0])
    assert f_ok.all()
    # nothing valid: nothing filled; empty images are fine
    none, none_ok = interpolate_background_flow(np.ones((3, 4, 2), np.float32), np.zeros((3, 4), bool))
    assert not none_ok.any() and (none == 0).all()
    assert interpolate_background_disparity(np.zeros((0, 7)), np.zeros((0, 7), bool))[0].shape == (0, 7)
    assert frame_counts(disp=((np.zeros((0, 3)), np.zeros((0, 3), bool)),) * 2)["D1"]["all"] == [0, 0]


# --------------------------------------------------------------------------------------------
# an independent loop-based transcription of the devkit C++, compared on random frames


def devkit_fill(values: np.ndarray, valid: np.ndarray, invalid_value: float):
    """Line-by-line port of DisparityImage / FlowImage::interpolateBackground (C = channels)."""
    h, w = valid.shape
    data = [[[float(np.float32(x)) for x in values[v, u]] if valid[v, u] else
             [invalid_value] * values.shape[2] for u in range(w)] for v in range(h)]
    ok = [[bool(valid[v, u]) for u in range(w)] for v in range(h)]
    for v in range(h):
        count = 0
        for u in range(w):
            if ok[v][u]:
                if count >= 1:
                    u1, u2 = u - count, u - 1
                    if u1 > 0 and u2 < w - 1:
                        ipol = [min(a, b) for a, b in zip(data[v][u1 - 1], data[v][u2 + 1])]
                        for uc in range(u1, u2 + 1):
                            data[v][uc] = list(ipol)
                            ok[v][uc] = True
                count = 0
            else:
                count += 1
        for u in range(w):  # extrapolate to the left
            if ok[v][u]:
                for u2 in range(u):
                    data[v][u2], ok[v][u2] = list(data[v][u]), True
                break
        for u in range(w - 1, -1, -1):  # extrapolate to the right
            if ok[v][u]:
                for u2 in range(u + 1, w):
                    data[v][u2], ok[v][u2] = list(data[v][u]), True
                break
    for u in range(w):
        for v in range(h):  # extrapolate to the top
            if ok[v][u]:
                for v2 in range(v):
                    data[v2][u], ok[v2][u] = list(data[v][u]), True
                break
        for v in range(h - 1, -1, -1):  # extrapolate to the bottom
            if ok[v][u]:
                for v2 in range(v + 1, h):
                    data[v2][u], ok[v2][u] = list(data[v][u]), True
                break
    return data


F32 = np.float32


def devkit_disp_err(d_gt: float, d_est: float) -> bool:
    # float arithmetic as in the C++ (float variables), comparisons with the double constants
    diff = abs(F32(d_gt) - F32(d_est))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = diff / abs(F32(d_gt))
    return float(diff) > 3.0 and float(rel) > 0.05


def devkit_flow_err(gt_uv, est_uv) -> bool:
    fu = F32(gt_uv[0]) - F32(est_uv[0])
    fv = F32(gt_uv[1]) - F32(est_uv[1])
    dist = np.sqrt(fu * fu + fv * fv)
    mag = np.sqrt(F32(gt_uv[0]) * F32(gt_uv[0]) + F32(gt_uv[1]) * F32(gt_uv[1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = dist / mag
    return float(dist) > 3.0 and float(rel) > 0.05


def devkit_counts(d0, d1, fl, obj):
    """Counts by per-pixel loops: {metric: {region: [outliers, pixels]}}."""
    (g0, g0ok), (e0, e0ok) = d0
    (g1, g1ok), (e1, e1ok) = d1
    (gf, gfok), (ef, efok) = fl
    i0 = devkit_fill(e0[:, :, None], e0ok, -1.0)
    i1 = devkit_fill(e1[:, :, None], e1ok, -1.0)
    iflow = devkit_fill(ef, efok, 0.0)
    counts = {m: {r: [0, 0] for r in REGIONS} for m in METRICS}
    h, w = g0.shape
    for v in range(h):
        for u in range(w):
            err0 = devkit_disp_err(g0[v, u], i0[v][u][0])
            err1 = devkit_disp_err(g1[v, u], i1[v][u][0])
            errf = devkit_flow_err(gf[v, u], iflow[v][u])
            cases = {"D1": (g0ok[v, u], err0), "D2": (g1ok[v, u], err1), "Fl": (gfok[v, u], errf),
                     "SF": (g0ok[v, u] and g1ok[v, u] and gfok[v, u], err0 or err1 or errf)}
            region = "bg" if obj[v, u] == 0 else "fg"
            for name, (counted, bad) in cases.items():
                if counted:
                    for r in (region, "all"):
                        counts[name][r][0] += int(bad)
                        counts[name][r][1] += 1
    return counts


def random_frame(rng: np.random.Generator, h: int = 20, w: int = 30):
    """Disparity / flow ground truth and estimates at the PNG precision, with holes, exact
    3 px / 5 % boundary cases, invalid estimate rows and zero flow; an object map."""
    def disparity_pair():
        # error exactly 3 px, or exactly 5 % of the truth (60.078125 * 0.05 = 3 + 1/256: the
        # float32 ratio rounds to float32(0.05) > 0.05, an outlier for the devkit)
        gt = rng.choice([20.0, 40.0, 60.0, 64.0, 61.5, 60.078125, 80.0, 100.0], size=(h, w))
        gt = np.where(rng.random((h, w)) < 0.5, gt, rng.integers(1, 30000, (h, w)) / 256.0)
        offset = rng.choice([0.0, 3.0, -3.0, 3.0 + 1 / 256, -3.0 - 1 / 256, 4.0, -4.0, 5.0, -5.0,
                             1.0, 10.0], size=(h, w))
        est = np.maximum(gt + offset + np.where(rng.random((h, w)) < 0.2,
                                                rng.integers(-2000, 2000, (h, w)) / 256.0, 0.0), 1 / 256)
        gt_ok = rng.random((h, w)) > 0.25
        est_ok = rng.random((h, w)) > 0.3
        est_ok[rng.integers(0, h, 2)] = False  # whole invalid rows (interior or ends)
        if rng.random() < 0.3:
            est_ok[0] = False
            est_ok[-1] = False
        return ((gt.astype(F32), gt_ok), (est.astype(F32), est_ok))

    gt_flow = rng.integers(-3000, 3000, (h, w, 2)) / 64.0
    gt_flow[rng.random((h, w)) < 0.1] = 0.0  # zero ground-truth flow: 0 / 0 and x / 0
    offset = rng.choice([0.0, 3.0, -3.0, 2.5, 5.0], size=(h, w, 2))
    est_flow = gt_flow + offset + np.where(rng.random((h, w, 1)) < 0.2,
                                           rng.integers(-800, 800, (h, w, 2)) / 64.0, 0.0)
    # on-axis vectors whose error is exactly 5 % of the magnitude (all multiples of 1/64)
    boundary = rng.random((h, w)) < 0.3
    pick = rng.integers(0, 3, (h, w))
    magnitude = np.array([60.3125, 80.0, 100.0])[pick] * rng.choice([-1.0, 1.0], (h, w))
    error = np.array([3.015625, 4.0, 5.0])[pick] * rng.choice([-1.0, 1.0], (h, w))
    axis = rng.integers(0, 2, (h, w))
    on_axis = np.stack([axis == 0, axis == 1], axis=2)
    gt_flow = np.where(boundary[:, :, None], np.where(on_axis, magnitude[:, :, None], 0.0), gt_flow)
    est_flow = np.where(boundary[:, :, None], gt_flow + np.where(on_axis, error[:, :, None], 0.0),
                        est_flow)
    flow_est_ok = rng.random((h, w)) > 0.3
    flow_est_ok[rng.integers(0, h)] = False
    flow = ((gt_flow.astype(F32), rng.random((h, w)) > 0.2), (est_flow.astype(F32), flow_est_ok))
    obj = (rng.random((h, w)) < 0.3).astype(np.uint8) * rng.integers(1, 5, (h, w)).astype(np.uint8)
    return disparity_pair(), disparity_pair(), flow, obj


def test_vectorized_matches_loop_transcription_of_the_devkit():
    rng = np.random.default_rng(2015)
    ours, theirs = [], []
    for _ in range(12):
        d0, d1, fl, obj = random_frame(rng)
        expected = devkit_counts(d0, d1, fl, obj)
        got = frame_counts(disp=d0, disp1=d1, flow=fl, obj_map=obj)
        assert got == expected
        ours.append(got)
        theirs.append(expected)
    # the random frames exercise what they should: fg pixels, outliers in every metric
    pooled = pool_counts(ours)
    assert all(pooled[m]["fg"][1] > 0 and 0 < pooled[m]["all"][0] < pooled[m]["all"][1]
               for m in METRICS)
    assert pooled == {m: {r: [sum(c[m][r][0] for c in theirs), sum(c[m][r][1] for c in theirs)]
                          for r in REGIONS} for m in METRICS}


def test_fill_matches_loop_transcription_with_empty_rows():
    rng = np.random.default_rng(7)
    for _ in range(20):
        h, w = rng.integers(1, 9, 2)
        values = rng.normal(size=(h, w, 2)).astype(F32)
        valid = rng.random((h, w)) < rng.random()
        filled, _ = interpolate_background_flow(values, valid)
        np.testing.assert_array_equal(filled, np.array(devkit_fill(values, valid, 0.0), F32))


def test_pooled_not_averaged():
    small = {m: {"bg": [1, 2], "fg": [0, 0], "all": [1, 2]} for m in ("D1",)}
    large = {m: {"bg": [0, 98], "fg": [0, 0], "all": [0, 98]} for m in ("D1",)}
    rate = error_rates(pool_counts([small, large]))["D1"]["all"]
    assert rate == {"outliers": 1, "pixels": 100, "rate": 1.0}  # not (50 % + 0 %) / 2
    assert pool_counts([]) == {}
    # a metric missing in one frame is not pooled
    assert "Fl" not in pool_counts([small, {**large, "Fl": large["D1"]}])


def test_strict_thresholds_and_float32_relative_test():
    gt = np.array([[60.0, 100.0, 60.0, 1.0, 60.078125]], F32)
    est = np.array([[63.0, 103.0, 63.0 + 1 / 256, 4.0 + 1 / 256, 63.08203125]], F32)
    # 60 vs 63: error 3.0, not > 3; 100 vs 103: 3 % only; 60 vs 63.0039: 3.0039 px and
    # 0.0500651 > 0.05; 1 vs 4.0039: both exceeded; last: exactly 5 % in real numbers, but the
    # devkit's float32 ratio is float32(0.05) = 0.0500000007 > 0.05 (double): an outlier
    np.testing.assert_array_equal(disparity_outliers(gt, est), [[False, False, True, True, True]])
    # the float32 thresholds used internally are equivalent to comparing in double
    for threshold, t in ((3.0, _ABS_F32), (0.05, _REL_F32)):
        x = np.float32(threshold)
        near = [x, np.nextafter(x, F32(0)), np.nextafter(x, F32(np.inf)),
                np.nextafter(np.nextafter(x, F32(0)), F32(0)), F32(np.inf), F32(np.nan)]
        for value in near:
            assert bool(value >= t) == (float(value) > threshold)


# --------------------------------------------------------------------------------------------
# PNG encodings


def png_header(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return data[24], data[25]  # IHDR bit depth, colour type (0 gray, 2 RGB)


def test_disparity_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    disp = (rng.integers(1, 65536, (37, 53)) / 256.0).astype(F32)
    valid = rng.random((37, 53)) > 0.3
    path = io.write_disparity(tmp_path / "d.png", disp, valid)
    assert png_header(path) == (16, 0)
    back, back_valid = io.read_disparity(path)
    np.testing.assert_array_equal(back_valid, valid)
    np.testing.assert_array_equal(back[valid], disp[valid])
    assert back.dtype == np.float32 and (back[~valid] == 0).all()
    # devkit writeDisparityMap: truncation, at least 1 where valid, (saturated) 16 bits
    disp = np.array([[0.0, 0.001, 1.999 / 256, 3.7, 300.0, -2.0, np.nan]], F32)
    raw = io.encode_disparity(disp, np.ones(disp.shape, bool))
    np.testing.assert_array_equal(raw, [[1, 1, 1, 947, 65535, 1, 0]])


def test_flow_round_trip_and_channel_order(tmp_path):
    rng = np.random.default_rng(1)
    flow = ((rng.integers(0, 65536, (29, 41, 2)) - 32768) / 64.0).astype(F32)
    valid = rng.random((29, 41)) > 0.3
    path = io.write_flow(tmp_path / "f.png", flow, valid)
    assert png_header(path) == (16, 2)
    back, back_valid = io.read_flow(path)
    np.testing.assert_array_equal(back_valid, valid)
    np.testing.assert_array_equal(back[valid], flow[valid])
    assert (back[~valid] == 0).all()
    # R holds u, G holds v, B the valid flag (OpenCV reads BGR)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    r, c = np.argwhere(valid)[0]
    assert raw[r, c, 2] == flow[r, c, 0] * 64 + 32768 and raw[r, c, 1] == flow[r, c, 1] * 64 + 32768
    assert raw[r, c, 0] == 1
    # devkit writeFlowField: clipped to [0, 65535], truncated
    enc = io.encode_flow(np.array([[[1000.0, -1000.0], [0.01, -0.01]]], F32), np.ones((1, 2), bool))
    np.testing.assert_array_equal(enc, [[[65535, 0, 1], [32768, 32767, 1]]])


def test_object_map_round_trip(tmp_path):
    fg = np.random.default_rng(2).random((11, 13)) < 0.4
    path = io.write_object_map(tmp_path / "o.png", fg)
    assert png_header(path) == (8, 0)
    np.testing.assert_array_equal(io.read_object_map(path), fg)


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.png: file not found"):
        io.read_disparity(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(InputError, match="text.png: not a PNG file"):
        io.read_flow(tmp_path / "text.png")
    with pytest.raises(InputError, match="image.png: expected a 16-bit 1-channel"):
        io.read_disparity(FIXTURE / "image.png")
    with pytest.raises(InputError, match="disp_gt.png: expected a 16-bit 3-channel"):
        io.read_flow(FIXTURE / "disp_gt.png")
    with pytest.raises(InputError, match="flow_gt.png: expected an 8-bit 1-channel"):
        io.read_object_map(FIXTURE / "flow_gt.png")


# --------------------------------------------------------------------------------------------
# the command


def test_cli_json_on_the_devkit_demo_pair(capsys):
    import json

    assert main([*fixture_args(), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frames"] == ["disp_gt.png"]
    assert set(out["metrics"]) == {"D1", "Fl"}
    d1, fl = out["metrics"]["D1"]["all"], out["metrics"]["Fl"]["all"]
    assert (d1["outliers"], d1["pixels"]) == D1_REFERENCE
    assert (fl["outliers"], fl["pixels"]) == FL_REFERENCE
    assert main(fixture_args()) == 0
    table = capsys.readouterr().out
    assert "15164 / 111326" in table and "23031 / 111326" in table and "SF" not in table


def test_cli_folders_pool_frames_with_object_map_and_second_frame(tmp_path, capsys):
    import json

    roles = {"disp-gt": "disp_gt.png", "disp-est": "disp_est.png", "flow-gt": "flow_gt.png",
             "flow-est": "flow_est.png", "disp1-gt": "disp_gt.png", "disp1-est": "disp_est.png"}
    for role, name in roles.items():
        for frame in ("000000_10.png", "000001_10.png"):
            (tmp_path / role).mkdir(exist_ok=True)
            shutil.copy(FIXTURE / name, tmp_path / role / frame)
    h, w = io.read_disparity(FIXTURE / "disp_gt.png")[0].shape
    fg = np.zeros((h, w), bool)
    fg[:, w // 2:] = True
    (tmp_path / "obj-map").mkdir()
    io.write_object_map(tmp_path / "obj-map" / "000000_10.png", fg)
    io.write_object_map(tmp_path / "obj-map" / "000001_10.png", fg)
    args = ["sceneflow-eval", *[a for role in [*roles, "obj-map"]
                                for a in (f"--{role}", str(tmp_path / role))], "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frames"] == ["000000_10.png", "000001_10.png"]
    m = out["metrics"]
    assert (m["D1"]["all"]["outliers"], m["D1"]["all"]["pixels"]) == (2 * 15164, 2 * 111326)
    assert m["D2"]["all"] == m["D1"]["all"]
    assert m["D1"]["bg"]["pixels"] > 0 and m["D1"]["fg"]["pixels"] > 0
    assert m["D1"]["bg"]["outliers"] + m["D1"]["fg"]["outliers"] == 2 * 15164
    # SF: outlier in D1 (= D2 here) or Fl, where all three ground truths are valid
    assert m["SF"]["all"]["outliers"] >= max(m["D1"]["all"]["outliers"], m["Fl"]["all"]["outliers"])
    # the same through the library: per frame, then pooled
    result = evaluate_paths({r.replace("-", "_"): tmp_path / r for r in [*roles, "obj-map"]})
    assert result["metrics"] == m
    # a missing partner file is named
    (tmp_path / "flow-est" / "000001_10.png").unlink()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.endswith("000001_10.png: file not found")


def test_cli_bad_input_exits_2_naming_the_file(tmp_path, capsys):
    disp, valid = io.read_disparity(FIXTURE / "disp_est.png")
    cropped = io.write_disparity(tmp_path / "cropped.png", disp[:, :-2], valid[:, :-2])
    assert main(fixture_args(**{"disp-est": cropped})) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(f"asn sceneflow-eval: error: {cropped}: size 1240x375 px does not match")
    assert main(fixture_args(**{"flow-est": FIXTURE / "disp_est.png"})) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "disp_est.png: expected a 16-bit 3-channel" in err
    assert main(fixture_args(**{"disp-est": FIXTURE / "image.png"})) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "image.png: expected a 16-bit 1-channel disparity PNG, got 8-bit" in err
    assert main([*fixture_args(), "--disp1-gt", str(FIXTURE / "disp_gt.png")]) == 2
    assert "--disp1-gt and --disp1-est" in capsys.readouterr().err
    assert main(fixture_args(**{"flow-gt": tmp_path})) == 2
    assert "must be a PNG file like --disp-gt" in capsys.readouterr().err


def test_rates_are_percent_and_math_consistent():
    rates = error_rates({"Fl": {"bg": [3, 4], "fg": [0, 0], "all": [3, 4]}})
    assert rates["Fl"]["bg"]["rate"] == 75.0 and rates["Fl"]["fg"]["rate"] is None
    assert not any(isinstance(c["rate"], float) and math.isnan(c["rate"])
                   for c in rates["Fl"].values())
