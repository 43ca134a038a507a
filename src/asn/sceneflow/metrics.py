"""The official KITTI 2015 scene flow error metrics D1 / D2 / Fl / SF, vectorized with numpy.

Exactly the rules of the devkit's ``cpp/evaluate_scene_flow.cpp`` (``disparityErrorsOutlier``,
``flowErrorsOutlier``, ``sceneFlowErrorsOutlier``) and ``interpolateBackground()`` of
``io_disp.h`` / ``io_flow.h``:

1. Invalid estimate pixels are filled first (:func:`interpolate_background_disparity`,
   :func:`interpolate_background_flow`), row by row: a run of invalid pixels with a valid
   pixel on BOTH sides takes the smaller of the two bounding values (the background, i.e. the
   farther surface; for flow u and v separately); the invalid pixels before the first / after
   the last valid pixel of a row take that pixel's value. Then, per column, the invalid rows
   above the first / below the last row holding a valid pixel copy that row. A fully invalid
   row between valid rows is NOT filled (the devkit only extrapolates at the top and the
   bottom); it keeps the devkit's in-memory invalid value, -1 for disparity and (0, 0) for flow,
   and is scored with it.
2. A pixel is an outlier iff its error is > 3 px AND > 5 % of the true value, both strict.
   The devkit computes in float32 (``float`` variables, the float overloads of ``fabs`` /
   ``sqrt``) and compares with the double constants 3.0 and 0.05; we do the same. Note that
   float32(0.05) is not 0.05: a float32 ratio of exactly float32(0.05) IS > 0.05 (e.g. an
   error of 3.00390625 px on a true 60.078125 px), so comparing in float32 against
   float32(0.05) would be wrong; we compare against the float32 threshold that is equivalent
   to the double comparison (:func:`_float32_above`).
   Disparity error: ``|d_gt - d_est|``, relative to ``|d_gt|``. Flow error: the euclidean
   norm of the (u, v) difference, relative to the ground-truth flow magnitude.
3. D1: first-frame disparity; D2: second-frame disparity (in the reference frame); Fl: flow;
   SF: outlier in any of D1, D2 and Fl, counted only where all three ground truths are valid.
4. Each metric is counted where its ground truth is valid, split into bg (object map 0, or
   no object map) and fg (object map > 0), plus all.
5. Over several images the counts are POOLED (sum of outliers / sum of valid pixels), as the
   devkit accumulates them, not averaged per image.

Counts are ``{metric: {region: [outliers, pixels]}}`` with metrics from :data:`METRICS` and
regions from :data:`REGIONS`; :func:`error_rates` adds the rates in percent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

ABS_THRESH = 3.0  # px, devkit ABS_THRESH
REL_THRESH = 0.05  # devkit REL_THRESH (a double: compare in float64)
METRICS = ("D1", "D2", "Fl", "SF")
REGIONS = ("bg", "fg", "all")
DISP_INVALID = -1.0  # the devkit's in-memory value of an invalid disparity
FLOW_INVALID = 0.0  # the devkit's in-memory (u, v) of an invalid flow vector

Counts = dict[str, dict[str, list[int]]]
# ((ground truth, its valid mask), (estimate, its valid mask))
Pair = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _float32_above(threshold: float) -> np.float32:
    """The float32 ``t`` with: for every float32 ``x``, ``x > threshold`` (compared in double,
    as the devkit's ``float > 0.05``) iff ``x >= t``. Lets the test run in float32 without
    widening whole images to float64; NaN compares false both ways."""
    t = np.float32(threshold)
    if float(t) <= threshold:
        t = np.nextafter(t, np.float32(np.inf))
    return t


_ABS_F32 = _float32_above(ABS_THRESH)  # the float32 after 3.0
_REL_F32 = _float32_above(REL_THRESH)  # float32(0.05) = 0.0500000007 (> 0.05)


def _interpolate_background(values: np.ndarray, valid: np.ndarray,
                            invalid_value: float) -> tuple[np.ndarray, np.ndarray]:
    """Devkit ``interpolateBackground`` for HxWxC values; returns (filled HxWxC, valid HxW)."""
    h, w, c = values.shape
    out = np.array(values, dtype=np.float32)  # a copy: the caller's array is never changed
    holes = np.flatnonzero(~valid)  # flat indices of the invalid pixels, row-major
    if h == 0 or w == 0 or holes.size == 0:
        return out, valid.copy()
    # per pixel: column of the last valid pixel at or before it (-1: none), and of the first
    # valid pixel at or after it (w: none), by running max / min over the columns; the
    # latter runs on the mirrored image so that both accumulate left to right
    cols = np.arange(w, dtype=np.int32)
    prev = np.where(valid, cols, np.int32(-1))
    np.maximum.accumulate(prev, axis=1, out=prev)
    nxt_mirrored = np.where(valid[:, ::-1], cols[::-1], np.int32(w))
    np.minimum.accumulate(nxt_mirrored, axis=1, out=nxt_mirrored)
    # only the holes are gathered and written (usually a small part of the image)
    hole_cols = holes % w
    row_start = holes - hole_cols
    p = prev.reshape(-1)[holes]
    n = nxt_mirrored.reshape(-1)[row_start + (w - 1 - hole_cols)]
    has_p, has_n = p >= 0, n < w
    flat = out.reshape(-1, c)
    v_prev = flat[row_start + np.maximum(p, 0)]
    v_next = flat[row_start + np.minimum(n, w - 1)]
    # interior run: min of the two bounding values (the background); row ends: the nearest
    # value; holes in rows without any valid pixel get the invalid value for now
    fill = np.where((has_p & has_n)[:, None], np.minimum(v_prev, v_next),
                    np.where(has_p[:, None], v_prev, v_next))
    fill[~(has_p | has_n)] = np.float32(invalid_value)
    flat[holes] = fill
    row_valid = valid.any(axis=1)
    new_valid = np.repeat(row_valid[:, None], w, axis=1)
    if row_valid.any():
        # after the row pass a row is either all valid or all invalid: the column pass copies
        # the first valid row upwards and the last valid row downwards, nothing in between
        valid_rows = np.flatnonzero(row_valid)
        first, last = valid_rows[0], valid_rows[-1]
        out[:first] = out[first]
        out[last + 1:] = out[last]
        new_valid[:first] = True
        new_valid[last + 1:] = True
    return out, new_valid


def interpolate_background_disparity(disp: np.ndarray,
                                     valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill invalid disparities as the devkit: (disp HxW, valid HxW) -> (float32 HxW, valid HxW).

    Pixels the devkit leaves unfilled (no valid pixel in the image, or fully invalid rows
    between valid rows) hold -1 and are reported invalid.
    """
    disp = np.asarray(disp)
    valid = np.asarray(valid, dtype=bool)
    if disp.shape != valid.shape or disp.ndim != 2:
        raise ValueError(f"disparity {disp.shape} and valid {valid.shape} must be the same HxW")
    filled, new_valid = _interpolate_background(disp[:, :, None], valid, DISP_INVALID)
    return filled[:, :, 0], new_valid


def interpolate_background_flow(flow: np.ndarray,
                                valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill invalid flow as the devkit: (flow HxWx2, valid HxW) -> (float32 HxWx2, valid HxW).

    Interior runs take the minimum of the bounding vectors per component (u and v separately,
    as ``FlowImage::interpolateBackground``). Unfilled pixels hold (0, 0) and are invalid.
    """
    flow = np.asarray(flow)
    valid = np.asarray(valid, dtype=bool)
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[:2] != valid.shape:
        raise ValueError(f"flow {flow.shape} must be HxWx2 and valid {valid.shape} HxW")
    return _interpolate_background(flow, valid, FLOW_INVALID)


def disparity_outliers(gt: np.ndarray, est: np.ndarray) -> np.ndarray:
    """Devkit disparity outlier test for HxW maps -> bool HxW (validity not applied here)."""
    gt = np.asarray(gt, dtype=np.float32)
    est = np.asarray(est, dtype=np.float32)
    if gt.shape != est.shape:
        raise ValueError(f"ground truth {gt.shape} and estimate {est.shape} differ in size")
    err = np.abs(gt - est)  # float32, as the devkit
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = err / np.abs(gt)  # float32 division
    return (err >= _ABS_F32) & (rel >= _REL_F32)  # i.e. err > 3.0 and rel > 0.05 in double


def flow_outliers(gt: np.ndarray, est: np.ndarray) -> np.ndarray:
    """Devkit flow outlier test for HxWx2 fields -> bool HxW (validity not applied here)."""
    gt = np.asarray(gt, dtype=np.float32)
    est = np.asarray(est, dtype=np.float32)
    if gt.shape != est.shape or gt.ndim != 3 or gt.shape[2] != 2:
        raise ValueError(f"ground truth {gt.shape} and estimate {est.shape} must be the same HxWx2")
    du = gt[:, :, 0] - est[:, :, 0]
    dv = gt[:, :, 1] - est[:, :, 1]
    dist = np.sqrt(du * du + dv * dv)  # float32 throughout, as the devkit
    mag = np.sqrt(gt[:, :, 0] * gt[:, :, 0] + gt[:, :, 1] * gt[:, :, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = dist / mag  # gt magnitude 0: inf (an outlier if dist > 3) or nan (not)
    return (dist >= _ABS_F32) & (rel >= _REL_F32)  # i.e. dist > 3.0 and rel > 0.05 in double


def _region_counts(outliers: np.ndarray, gt_valid: np.ndarray,
                   foreground: np.ndarray | None) -> dict[str, list[int]]:
    bad = outliers & gt_valid
    n_bad, n_all = int(np.count_nonzero(bad)), int(np.count_nonzero(gt_valid))
    if foreground is None:
        fg_bad = fg_all = 0
    else:
        fg_bad = int(np.count_nonzero(bad & foreground))
        fg_all = int(np.count_nonzero(gt_valid & foreground))
    return {"bg": [n_bad - fg_bad, n_all - fg_all], "fg": [fg_bad, fg_all], "all": [n_bad, n_all]}


def _estimate_valid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    # a non-finite estimate cannot be scored: treat it as a hole to be filled
    finite = (np.isfinite(values) if values.ndim == 2 else
              np.isfinite(values[:, :, 0]) & np.isfinite(values[:, :, 1]))
    return np.asarray(valid, dtype=bool) & finite


def frame_counts(*, disp: Pair | None = None, flow: Pair | None = None,
                 disp1: Pair | None = None, obj_map: np.ndarray | None = None) -> Counts:
    """Outlier and valid-pixel counts of one frame.

    ``disp`` / ``disp1`` = ((gt HxW, gt_valid HxW), (est HxW, est_valid HxW)) for the first /
    second frame disparity, ``flow`` = ((gt HxWx2, gt_valid HxW), (est HxWx2, est_valid HxW)),
    ``obj_map`` HxW (> 0 = foreground; None: all background). Estimates are filled with
    :func:`interpolate_background_disparity` / :func:`interpolate_background_flow` first.
    Returns ``{metric: {region: [outliers, pixels]}}`` for D1 (``disp``), D2 (``disp1``), Fl
    (``flow``) and SF (all three given). All inputs must share one HxW (ValueError otherwise).
    """
    given = {"D1": disp, "D2": disp1, "Fl": flow}
    sizes = {np.shape(part[k])[:2] for pair in given.values() if pair is not None
             for part in pair for k in (0, 1)}
    if obj_map is not None:
        sizes.add(np.shape(obj_map)[:2])
    if len(sizes) > 1:
        raise ValueError(f"all maps must have the same HxW, got {sorted(sizes)}")
    foreground = None if obj_map is None else np.asarray(obj_map) > 0
    outliers: dict[str, np.ndarray] = {}
    gt_valid: dict[str, np.ndarray] = {}
    for name in ("D1", "D2"):
        if given[name] is None:
            continue
        (gt, gt_ok), (est, est_ok) = given[name]
        est = np.asarray(est, dtype=np.float32)
        filled, _ = interpolate_background_disparity(est, _estimate_valid(est, est_ok))
        outliers[name] = disparity_outliers(gt, filled)
        gt_valid[name] = np.asarray(gt_ok, dtype=bool)
    if flow is not None:
        (gt, gt_ok), (est, est_ok) = flow
        est = np.asarray(est, dtype=np.float32)
        filled, _ = interpolate_background_flow(est, _estimate_valid(est, est_ok))
        outliers["Fl"] = flow_outliers(gt, filled)
        gt_valid["Fl"] = np.asarray(gt_ok, dtype=bool)
    if all(name in outliers for name in ("D1", "D2", "Fl")):
        outliers["SF"] = outliers["D1"] | outliers["D2"] | outliers["Fl"]
        gt_valid["SF"] = gt_valid["D1"] & gt_valid["D2"] & gt_valid["Fl"]
    return {name: _region_counts(outliers[name], gt_valid[name], foreground)
            for name in METRICS if name in outliers}


def pool_counts(counts: Iterable[Mapping[str, Mapping[str, list[int]]]]) -> Counts:
    """Sum per-frame counts (metric -> region -> [outliers, pixels]); [] -> {}.

    Only metrics present in every frame are kept, so a pooled rate never mixes image sets.
    """
    counts = list(counts)
    if not counts:
        return {}
    names = [m for m in METRICS if all(m in c for c in counts)]
    return {m: {r: [sum(int(c[m][r][0]) for c in counts), sum(int(c[m][r][1]) for c in counts)]
                for r in REGIONS} for m in names}


def error_rates(counts: Mapping[str, Mapping[str, list[int]]]) -> dict[str, dict[str, dict]]:
    """Counts -> ``{metric: {region: {"outliers", "pixels", "rate"}}}``, rate in percent
    (None where there is no valid ground-truth pixel)."""
    return {m: {r: {"outliers": int(o), "pixels": int(p),
                    "rate": (100.0 * o / p) if p else None}
                for r, (o, p) in counts[m].items()}
            for m in METRICS if m in counts}
