"""Figure 5 measured (asn.figure5, bench/figure5.py): the predicted / true amodal area of matched
occluded instances and the covered share of their invisible part, on hand-made masks; matching by
amodal box IoU keeps a shrunk mask matched; the bench script runs end to end on a tiny world."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from asn.figure5 import area_ratios
from engine_helpers import ROOT, TINY_SETS, env, make_world

H, W = 40, 60


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _mask(y0, y1, x0, x1):
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _world():
    """Image 1: car A (20x20, its right half hidden: occlusion 0.5), car B (not occluded), pedestrian C
    (10x10, its bottom 4 rows hidden: occlusion 0.4)."""
    a, b, c = _mask(5, 25, 5, 25), _mask(5, 25, 35, 55), _mask(28, 38, 40, 50)
    visible = {1: _mask(5, 25, 5, 15), 2: b, 3: _mask(28, 34, 40, 50)}
    amodal = {1: a, 2: b, 3: c}
    ratios = {1: 0.5, 2: 0.0, 3: 0.4}
    cats = {1: 4, 2: 4, 3: 2}

    def file(masks):
        return {"images": [{"id": 1, "width": W, "height": H, "file_name": "000001.png"}],
                "categories": [{"id": 4, "name": "car"}, {"id": 2, "name": "pedestrian"}],
                "annotations": [{"id": i, "image_id": 1, "category_id": cats[i], "segmentation": _rle(m),
                                 "bbox": _box(amodal[i]), "area": int(m.sum()), "iscrowd": 0,
                                 "occlusion_ratio": ratios[i]} for i, m in masks.items()]}

    return file(amodal), file(visible), amodal


def test_area_ratio_and_hidden_coverage_of_hand_made_masks():
    amodal_gt, inmodal_gt, amodal = _world()
    predictions = [
        # car A: the visible half only (shrunk to 0.5), in A's full amodal box
        {"image_id": 1, "category_id": 4, "bbox": _box(amodal[1]), "score": 0.9, "segmentation": _rle(_mask(5, 25, 5, 15))},
        # car B: exact, not occluded: matched but not measured
        {"image_id": 1, "category_id": 4, "bbox": _box(amodal[2]), "score": 0.8, "segmentation": _rle(amodal[2])},
        # pedestrian C: the whole amodal mask plus 2 more rows (1.2), covering the hidden part
        {"image_id": 1, "category_id": 2, "bbox": _box(amodal[3]), "score": 0.7, "segmentation": _rle(_mask(26, 38, 40, 50))},
        # a car far away (no ground truth of IoU >= 0.5) and a duplicate of A with a lower score
        {"image_id": 1, "category_id": 4, "bbox": [0.0, 30.0, 5.0, 5.0], "score": 0.95, "segmentation": _rle(_mask(30, 35, 0, 5))},
        {"image_id": 1, "category_id": 4, "bbox": _box(amodal[1]), "score": 0.1, "segmentation": _rle(amodal[1])},
    ]
    result = area_ratios(amodal_gt, inmodal_gt, predictions)
    assert result["n_occluded"] == 2 and result["n_matched"] == 2 and result["matched_fraction"] == 1.0
    by_id = {row["annotation_id"]: row for row in result["instances"]}
    assert by_id[1]["ratio"] == pytest.approx(0.5) and by_id[1]["hidden_coverage"] == pytest.approx(0.0)
    assert by_id[3]["ratio"] == pytest.approx(1.2) and by_id[3]["hidden_coverage"] == pytest.approx(1.0)
    assert result["mean_ratio"] == pytest.approx(0.85) and result["mean_hidden_coverage"] == pytest.approx(0.5)
    assert sorted(result["ratios"]) == pytest.approx([0.5, 1.2])
    # the shrunk mask of A has mask IoU 0.5 with it: above that, mask matching drops it and measures
    # the low-score full-size duplicate instead; box matching keeps the shrunk one (the figure is about it)
    masked = area_ratios(amodal_gt, inmodal_gt, predictions, match="mask", iou_match=0.55)
    assert {row["annotation_id"]: row["ratio"] for row in masked["instances"]}[1] == pytest.approx(1.0)
    boxed = area_ratios(amodal_gt, inmodal_gt, predictions, iou_match=0.55)
    assert {row["annotation_id"]: row["ratio"] for row in boxed["instances"]}[1] == pytest.approx(0.5)
    assert area_ratios(amodal_gt, inmodal_gt, predictions, match="mask")["mean_ratio"] == pytest.approx(0.85)
    # the threshold of "occluded", a score floor, and nothing predicted
    assert area_ratios(amodal_gt, inmodal_gt, predictions, occluded_above=0.45)["n_occluded"] == 1
    assert area_ratios(amodal_gt, inmodal_gt, predictions, score_threshold=0.75)["n_matched"] == 1
    empty = area_ratios(amodal_gt, inmodal_gt, [])
    assert empty["n_matched"] == 0 and empty["mean_ratio"] is None and empty["n_occluded"] == 2
    with pytest.raises(ValueError, match="match"):
        area_ratios(amodal_gt, inmodal_gt, predictions, match="polygon")


def test_plot_writes_a_png(tmp_path):
    from asn.figure5 import plot

    runs = [{"variant": "mrcnn", "snapshots": [
        {"iteration": it, "mean_ratio": m, "q25_ratio": m - 0.1, "q75_ratio": m + 0.1, "mean_hidden_coverage": m / 2}
        for it, m in ((200, 0.7), (400, 0.9))]}]
    plot(runs, tmp_path / "figure5.png", title="t")
    assert (tmp_path / "figure5.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_help():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "figure5.py"), "--help"], capture_output=True,
                          text=True, env=env(), timeout=120)
    assert proc.returncode == 0 and "--iterations" in proc.stdout and "figure5.json" in proc.stdout


@pytest.mark.slow
def test_bench_runs_end_to_end_on_a_tiny_world(tmp_path):
    world = make_world(tmp_path / "world")
    out = tmp_path / "figures" / "figure5.json"
    argv = [sys.executable, str(ROOT / "bench" / "figure5.py"), "--variants", "mrcnn", "--iterations", "4",
            "--steps", "3", "--every", "2", "--gt", str(world["gt"]), "--train-images", str(world["train_images"]),
            "--test-images", str(world["test_images"]), "--work", str(tmp_path / "work"), "--out", str(out)]
    for item in TINY_SETS:
        if not item.startswith(("profiles.smoke.train.iterations", "profiles.smoke.train.steps", "train.checkpoint_every")):
            argv += ["--set", item]
    argv += ["--set", "eval.workers=0", "--set", "eval.batch_size=1"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert [s["iteration"] for s in data["runs"][0]["snapshots"]] == [2, 4]
    assert data["runs"][0]["variant"] == "mrcnn" and out.with_suffix(".png").is_file()
    assert {"mean_ratio", "n_occluded", "ratios", "amodal_ap"} <= set(data["runs"][0]["snapshots"][0])
    assert data["data_source"] == "synthetic" and "python bench/figure5.py" in data["command"]
