"""Tests of the evaluator (asn.eval.coco, .occlusion, .predictions, .perturb): engines agree with
pycocotools, hand-made AP / ap_occ / occlusion accuracy cases, per-class CSV, bad and empty
prediction files, model output conversion."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from asn.errors import InputError
from asn.eval import coco, occlusion, perturb, predictions
from asn.io import read_json, write_json_atomic

STAT_KEYS = ("det", "amodal", "inmodal")


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_gt(tmp_path_factory):
    """A small normalized ground truth made by the project's own synth + convert."""
    from asn.data.convert import convert
    from asn.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("eval_gt")
    synthesize(root / "raw", n_train=0, n_test=10, seed=3, width=320, height=120,
               annotations_only=True, workers=1, progress=False)
    convert(root / "raw" / "update_test_2020.json", root / "gt", "test", images_dir=None,
            workers=1)
    return root / "gt" / "test_amodal.json", root / "gt" / "test_inmodal.json"


@pytest.fixture(scope="module")
def realistic_predictions(synthetic_gt, tmp_path_factory):
    amodal_path, inmodal_path = synthetic_gt
    amodal, inmodal = read_json(amodal_path), read_json(inmodal_path)
    preds = perturb.perturbed_predictions(amodal, inmodal, per_image=25, seed=7,
                                          empty_image_rate=0.2)
    preds = [p for p in preds if p["image_id"] != 2]  # certainly one image without detections
    path = tmp_path_factory.mktemp("eval_pred") / "predictions.json"
    write_json_atomic(path, preds)
    return path, preds, amodal


def _rect(x, y, w, h):
    return [[x, y, x, y + h, x + w, y + h, x + w, y]]


def _rle(poly, height, width):
    rle = mask_utils.merge(mask_utils.frPyObjects(poly, height, width))
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def write_hand_gt(tmp_path, objects, height=100, width=100, categories=(1, 2)):
    """Normalized GT files from (image_id, category_id, (x, y, w, h), occlusion_ratio) rows.

    The inmodal mask is the left part of the box, (1 - ratio) of its width."""
    images = sorted({o[0] for o in objects} | {1})
    cats = [{"id": c, "name": f"class{c}", "supercategory": "x"} for c in categories]
    amodal, inmodal = [], []
    for k, (image_id, cat, (x, y, w, h), ratio) in enumerate(objects, 1):
        base = {"id": k, "image_id": image_id, "category_id": cat, "iscrowd": 0,
                "occlusion_ratio": ratio, "oco_id": 0, "ico_id": 1}
        a_area = float(w * h)
        vw = w * (1 - ratio)
        amodal.append({**base, "segmentation": _rect(x, y, w, h), "bbox": [x, y, w, h],
                       "area": a_area})
        inmodal.append({**base, "segmentation": _rle(_rect(x, y, vw, h), height, width),
                        "bbox": [x, y, vw, h], "area": float(vw * h)})
    imgs = [{"id": i, "file_name": f"{i:06d}.png", "height": height, "width": width}
            for i in images]
    a_path, i_path = tmp_path / "test_amodal.json", tmp_path / "test_inmodal.json"
    write_json_atomic(a_path, {"images": imgs, "annotations": amodal, "categories": cats})
    write_json_atomic(i_path, {"images": imgs, "annotations": inmodal, "categories": cats})
    return a_path, i_path


def det(image_id, cat, box, score, occlusion_score=0.0, height=100, width=100, visible=1.0):
    x, y, w, h = box
    return {"image_id": image_id, "category_id": cat, "bbox": [x, y, w, h], "score": score,
            "segmentation": _rle(_rect(x, y, w, h), height, width),
            "inmodal_segmentation": _rle(_rect(x, y, w * visible, h), height, width),
            "occlusion_score": occlusion_score}


def evaluate_list(tmp_path, preds, a_path, i_path, **kwargs):
    path = tmp_path / "pred.json"
    write_json_atomic(path, preds)
    return coco.evaluate(path, a_path, i_path, **kwargs)


# ------------------------------------------------------------------------------------------
# Engines
# ------------------------------------------------------------------------------------------

def test_engines_match_pycocotools(synthetic_gt, realistic_predictions):
    amodal_path, inmodal_path = synthetic_gt
    pred_path, preds, amodal = realistic_predictions
    # The data is realistic: several classes, images without detections, wrong classes.
    assert len({p["category_id"] for p in preds}) >= 4
    assert len({p["image_id"] for p in preds}) < len(amodal["images"])
    ref = coco.evaluate(pred_path, amodal_path, inmodal_path, engine="pycocotools")
    fast = coco.evaluate(pred_path, amodal_path, inmodal_path, engine="faster")
    for key in STAT_KEYS:
        assert len(ref["stats"][key]) == 12
        np.testing.assert_allclose(fast["stats"][key], ref["stats"][key], rtol=0, atol=1e-12)
    assert 5 < ref["amodal_ap"] < 95 and 5 < ref["inmodal_ap"] < 95 and 5 < ref["det_ap"] < 95
    for bucket in ("none", "partial", "heavy"):
        assert fast[f"ap_occ_{bucket}"] == pytest.approx(ref[f"ap_occ_{bucket}"], abs=1e-10)
    for a, b in zip(fast["per_class"], ref["per_class"]):
        for key in ("det_ap", "amodal_ap", "inmodal_ap"):
            assert (a[key] is None) == (b[key] is None)
            if a[key] is not None:
                assert a[key] == pytest.approx(b[key], abs=1e-10)
    # The faster bucket evaluation without a finished amodal one to start from.
    job = coco._Job("faster", read_json(pred_path), read_json(amodal_path),
                    read_json(inmodal_path), occlusion.DEFAULT_OCCLUSION_BUCKETS)
    alone = job.run(["occ:heavy", "occ:none"])
    assert 100 * alone["occ:heavy"]["ap"] == pytest.approx(ref["ap_occ_heavy"], abs=1e-10)
    assert 100 * alone["occ:none"]["ap"] == pytest.approx(ref["ap_occ_none"], abs=1e-10)
    occ = {k: v for k, v in ref.items() if k.startswith("occlusion_")}
    assert occ == {k: v for k, v in fast.items() if k.startswith("occlusion_")}
    assert ref["files"] == {"predictions": str(pred_path), "amodal_gt": str(amodal_path),
                            "inmodal_gt": str(inmodal_path)}
    assert "ignored" in ref["ap_occ_definition"] and ref["ap_occ_buckets"]["heavy"] == [0.5, 1.0001]
    assert not any(k in ref for k in ("APs", "APm", "APl", "ap_s", "ap_m", "ap_l"))
    # Det AP against an independent, plain pycocotools run of the same boxes.
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(amodal_path))
    boxes = [{k: p[k] for k in ("image_id", "category_id", "bbox", "score")} for p in preds]
    ev = COCOeval(gt, gt.loadRes(boxes), "bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ref["stats"]["det"] == [float(s) for s in ev.stats]


def test_forked_workers_give_the_same_numbers(synthetic_gt, realistic_predictions):
    amodal_path, inmodal_path = synthetic_gt
    pred_path = realistic_predictions[0]
    one = coco.evaluate(pred_path, amodal_path, inmodal_path, engine="faster", workers=1)
    timings = {}
    two = coco.evaluate(pred_path, amodal_path, inmodal_path, engine="faster", workers=2,
                        timings=timings)
    assert timings["workers"] == 2
    assert one == two


# ------------------------------------------------------------------------------------------
# Hand-made cases
# ------------------------------------------------------------------------------------------

def test_perfect_predictions_give_100(synthetic_gt, tmp_path):
    amodal_path, inmodal_path = synthetic_gt
    amodal, inmodal = read_json(amodal_path), read_json(inmodal_path)
    sizes = {img["id"]: (img["height"], img["width"]) for img in amodal["images"]}
    inmodal_by_id = {a["id"]: a for a in inmodal["annotations"]}
    preds = []
    for ann in amodal["annotations"]:
        h, w = sizes[ann["image_id"]]
        preds.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                      "bbox": ann["bbox"], "score": 1.0,
                      "segmentation": _rle(ann["segmentation"], h, w),
                      "inmodal_segmentation": inmodal_by_id[ann["id"]]["segmentation"],
                      "occlusion_score": float(ann["occlusion_ratio"] > 0.05)})
    for engine in coco.ENGINES:
        res = evaluate_list(tmp_path, preds, amodal_path, inmodal_path, engine=engine)
        for key in ("det_ap", "amodal_ap", "inmodal_ap", "det_ap_50", "amodal_ap_75"):
            assert res[key] == pytest.approx(100.0), (engine, key)
        assert res["occlusion_accuracy"] == 100.0
        assert res["occlusion_matched"] == len(amodal["annotations"])
        for bucket, n in res["ap_occ_ground_truths"].items():
            assert res[f"ap_occ_{bucket}"] == (pytest.approx(100.0) if n else None)


def test_ap_occ_ignores_ground_truths_outside_the_bucket(tmp_path):
    # Image 1: A visible (ratio 0), B heavily occluded (0.6). Only A is detected.
    a_path, i_path = write_hand_gt(tmp_path, [(1, 1, (10, 10, 20, 20), 0.0),
                                              (1, 1, (60, 60, 20, 20), 0.6)])
    preds = [det(1, 1, (10, 10, 20, 20), 0.9)]
    for engine in coco.ENGINES:
        res = evaluate_list(tmp_path, preds, a_path, i_path, engine=engine)
        # Missing the occluded B costs the overall AP (recall 1/2) ...
        assert res["amodal_ap"] == pytest.approx(100 * 51 / 101)
        # ... but not AP on non-occluded objects, where B is ignored;
        assert res["ap_occ_none"] == pytest.approx(100.0)
        # on heavy occlusion, A is ignored: the detection matched to it is neither TP nor FP.
        assert res["ap_occ_heavy"] == pytest.approx(0.0)
        assert res["ap_occ_partial"] is None  # no ground truth in [0.01, 0.5)
        assert res["ap_occ_ground_truths"] == {"none": 1, "partial": 0, "heavy": 1}

    # An unmatched detection stays a false positive inside a bucket: a better-scored miss
    # halves the precision at full recall of "none".
    preds = [det(1, 1, (10, 10, 20, 20), 0.9), det(1, 1, (40, 5, 10, 10), 0.95)]
    for engine in coco.ENGINES:
        res = evaluate_list(tmp_path, preds, a_path, i_path, engine=engine)
        assert res["ap_occ_none"] == pytest.approx(50.0)
    # Custom buckets; {} turns them off.
    res = evaluate_list(tmp_path, preds, a_path, i_path, occlusion_buckets={"all": [0, 2]})
    assert res["ap_occ_all"] == pytest.approx(res["amodal_ap"])
    res = evaluate_list(tmp_path, preds, a_path, i_path, occlusion_buckets={})
    assert not [k for k in res if k.startswith("ap_occ_") and k not in
                ("ap_occ_definition", "ap_occ_buckets", "ap_occ_ground_truths")]


def test_occlusion_accuracy_hand_made(tmp_path):
    a_path, i_path = write_hand_gt(tmp_path, [
        (1, 1, (10, 10, 20, 20), 0.0),   # g1: not occluded
        (1, 1, (60, 60, 20, 20), 0.5),   # g2: occluded
        (1, 2, (10, 60, 20, 20), 0.3),   # g3: occluded
        (2, 1, (10, 10, 20, 20), 0.04),  # g4: below the 5 % threshold -> not occluded
    ])
    preds = [
        det(1, 1, (10, 10, 20, 20), 0.9, occlusion_score=0.2),   # g1, right (negative)
        det(1, 1, (11, 10, 20, 20), 0.8, occlusion_score=0.9),   # duplicate of g1: unmatched
        det(1, 1, (60, 60, 20, 20), 0.7, occlusion_score=0.4),   # g2, wrong (says visible)
        det(1, 1, (10, 60, 20, 20), 0.95, occlusion_score=0.9),  # wrong class for g3: unmatched
        det(1, 2, (25, 60, 20, 20), 0.6, occlusion_score=0.9),   # g3 at IoU 1/7: unmatched
        det(2, 1, (10, 10, 20, 18), 0.5, occlusion_score=0.6),   # g4 (IoU .9), wrong
    ]
    res = evaluate_list(tmp_path, preds, a_path, i_path)
    assert res["occlusion_matched"] == 3
    assert res["occlusion_matched_positive"] == 1
    assert res["occlusion_accuracy"] == pytest.approx(100 / 3)
    assert res["occlusion_positive_recall"] == pytest.approx(0.0)
    assert res["occlusion_negative_recall"] == pytest.approx(50.0)
    assert "greedily" in res["occlusion_accuracy_definition"]
    # A looser match threshold picks up g3 (predicted occluded: right).
    res = evaluate_list(tmp_path, preds, a_path, i_path, iou_match=0.1)
    assert res["occlusion_matched"] == 4 and res["occlusion_accuracy"] == pytest.approx(50.0)
    # A higher threshold of "occluded" turns g2's label and with it the answer.
    res = evaluate_list(tmp_path, preds, a_path, i_path, occlusion_threshold=0.6)
    assert res["occlusion_matched_positive"] == 0
    assert res["occlusion_accuracy"] == pytest.approx(200 / 3)
    assert res["occlusion_positive_recall"] is None


def test_match_detections_prefers_higher_scores():
    gts = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
           {"image_id": 1, "category_id": 1, "bbox": [5, 0, 10, 10]}]
    # d0 (lower score) overlaps g0 best; d1 (higher score) overlaps both, g0 a bit more.
    preds = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5},
             {"image_id": 1, "category_id": 1, "bbox": [2, 0, 10, 10], "score": 0.9}]
    dets, matched = occlusion.match_detections(preds, gts, 0.3)
    assert dict(zip(dets.tolist(), matched.tolist())) == {1: 0, 0: 1}


def test_per_class_csv(tmp_path):
    rows = [{"category_id": 1, "name": "cyclist", "det_ap": 12.345678, "amodal_ap": None,
             "inmodal_ap": 0.0},
            {"category_id": 4, "name": "car", "det_ap": 50.0, "amodal_ap": 40.0,
             "inmodal_ap": float("nan")}]
    path = tmp_path / "out" / "per_class.csv"
    coco.write_per_class_csv(rows, path)
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["category_id", "name", "det_ap", "amodal_ap", "inmodal_ap"]
    assert table[1] == ["1", "cyclist", "12.3457", "", "0.0000"]
    assert table[2] == ["4", "car", "50.0000", "40.0000", ""]
    assert [p.name for p in path.parent.iterdir()] == ["per_class.csv"]  # no temp file left


def test_per_class_rows_from_evaluate(tmp_path):
    a_path, i_path = write_hand_gt(tmp_path, [(1, 1, (10, 10, 20, 20), 0.0)],
                                   categories=(1, 2))
    res = evaluate_list(tmp_path, [det(1, 1, (10, 10, 20, 20), 0.9)], a_path, i_path)
    rows = {r["category_id"]: r for r in res["per_class"]}
    assert rows[1] == {"category_id": 1, "name": "class1", "det_ap": pytest.approx(100.0),
                       "amodal_ap": pytest.approx(100.0), "inmodal_ap": pytest.approx(100.0)}
    # No ground truth of class 2: null, not 0 or -100.
    assert rows[2]["det_ap"] is None and rows[2]["amodal_ap"] is None
    json.dumps(res, allow_nan=False)  # JSON-ready: no NaN anywhere


# ------------------------------------------------------------------------------------------
# Bad and empty inputs
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case, reason", [
    ("missing_key", "missing key score"),
    ("unknown_image", "image_id 99 is not in the ground truth"),
    ("nan_score", "score must be a finite number"),
    ("unknown_category", "category_id 3 is not a ground-truth category"),
    ("negative_width", "width and height must be >= 0"),
    ("bad_rle", "segmentation: RLE needs 'size' and 'counts'"),
    ("rle_size", "differs from the image size"),
    ("non_ascii", "inmodal_segmentation: RLE counts must be a compressed (ASCII) string"),
    ("box_string", "bbox must be 4 finite numbers"),
])
def test_bad_prediction_names_file_and_index(tmp_path, case, reason):
    a_path, i_path = write_hand_gt(tmp_path, [(1, 1, (10, 10, 20, 20), 0.0)])
    preds = [det(1, 1, (10, 10, 20, 20), 0.9), det(1, 1, (30, 30, 20, 20), 0.8)]
    bad = preds[1]
    if case == "missing_key":
        del bad["score"]
    elif case == "unknown_image":
        bad["image_id"] = 99
    elif case == "nan_score":
        bad["score"] = float("nan")
    elif case == "unknown_category":
        bad["category_id"] = 3
    elif case == "negative_width":
        bad["bbox"][2] = -1
    elif case == "bad_rle":
        bad["segmentation"] = {"counts": "abc"}
    elif case == "rle_size":
        bad["inmodal_segmentation"]["size"] = [50, 100]
    elif case == "non_ascii":
        bad["inmodal_segmentation"]["counts"] = "é1"
    elif case == "box_string":
        bad["bbox"][0] = "3"
    path = tmp_path / "pred.json"
    # The standard library writes NaN as a bare literal, as many tools do.
    path.write_text(json.dumps(preds))
    with pytest.raises(InputError) as err:
        coco.evaluate(path, a_path, i_path)
    assert err.value.file == str(path)
    assert err.value.record == "prediction 1"
    assert reason in err.value.reason
    assert str(err.value).startswith(f"{path}: prediction 1: ")


def test_predictions_not_a_list(tmp_path):
    a_path, i_path = write_hand_gt(tmp_path, [(1, 1, (10, 10, 20, 20), 0.0)])
    path = tmp_path / "pred.json"
    path.write_text(json.dumps({"annotations": []}))
    with pytest.raises(InputError, match="expected a JSON list") as err:
        coco.evaluate(path, a_path, i_path)
    assert err.value.file == str(path)
    with pytest.raises(InputError, match="prediction 0: expected an object"):
        predictions.load_predictions(_write(tmp_path, [3]), {1}, {1})
    with pytest.raises(InputError, match="file not found"):
        coco.evaluate(tmp_path / "missing.json", a_path, i_path)


def _write(tmp_path, obj):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(obj))
    return path


def test_ground_truth_without_occlusion_ratio_is_refused(tmp_path):
    a_path, i_path = write_hand_gt(tmp_path, [(1, 1, (10, 10, 20, 20), 0.0)])
    data = read_json(a_path)
    del data["annotations"][0]["occlusion_ratio"]
    write_json_atomic(a_path, data)
    with pytest.raises(InputError, match="annotation 1: annotation has no finite occlusion_ratio"):
        evaluate_list(tmp_path, [], a_path, i_path)


def test_empty_predictions(tmp_path):
    a_path, i_path = write_hand_gt(tmp_path, [(1, 1, (10, 10, 20, 20), 0.0),
                                              (1, 2, (60, 60, 20, 20), 0.6)])
    for engine in coco.ENGINES:
        res = evaluate_list(tmp_path, [], a_path, i_path, engine=engine)
        for key in ("det_ap", "amodal_ap", "inmodal_ap", "amodal_ap_50", "ap_occ_none"):
            assert res[key] == 0.0, (engine, key)
        assert res["occlusion_matched"] == 0 and res["occlusion_accuracy"] is None
        assert res["counts"]["predictions"] == 0


# ------------------------------------------------------------------------------------------
# Model outputs -> predictions
# ------------------------------------------------------------------------------------------

def test_masks_to_rles_round_trip():
    import torch

    rng = np.random.default_rng(0)
    probs = rng.random((3, 1, 17, 23)).astype(np.float32)
    rles = predictions.masks_to_rles(torch.from_numpy(probs))
    assert len(rles) == 3 and all(isinstance(r["counts"], str) for r in rles)
    assert rles[0]["size"] == [17, 23]
    decoded = mask_utils.decode([{"size": r["size"], "counts": r["counts"].encode()} for r in rles])
    np.testing.assert_array_equal(decoded.transpose(2, 0, 1), probs[:, 0] > 0.5)
    # (K, H, W) arrays and another threshold; no masks -> [].
    rles = predictions.masks_to_rles(probs[:, 0], threshold=0.9)
    decoded = mask_utils.decode([{"size": r["size"], "counts": r["counts"].encode()} for r in rles])
    np.testing.assert_array_equal(decoded.transpose(2, 0, 1), probs[:, 0] > 0.9)
    assert predictions.masks_to_rles(np.zeros((0, 1, 5, 5))) == []


@pytest.mark.parametrize("trial", range(6))
def test_pasting_while_encoding_equals_torchvisions_paste_then_threshold(trial):
    """The evaluation's paste (masks stay in their boxes until encoding) writes the same masks,
    bit for bit, as torchvision's paste_masks_in_image + threshold: boxes inside, across the
    border, tiny and empty."""
    import torch
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    g = torch.Generator().manual_seed(trial)
    count, height, width = [5, 0, 17, 30, 1, 12][trial], 30 + 37 * trial, 50 + 41 * trial
    masks = torch.rand(count, 1, 28, 28, generator=g)
    corner = torch.rand(count, 2, generator=g) * torch.tensor([width * 1.2, height * 1.2]) - torch.tensor([width * 0.1, height * 0.1])
    size = torch.rand(count, 2, generator=g) * torch.tensor([width * 0.6, height * 0.6]) + 0.05
    boxes = torch.cat([corner, corner + size], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    for threshold in (0.5, 0.3):
        expected = predictions.masks_to_rles(paste_masks_in_image(masks, boxes, (height, width)), threshold)
        assert predictions.paste_masks_to_rles(masks, boxes, (height, width), threshold) == expected
    with pytest.raises(ValueError, match="expected"):
        predictions.paste_masks_to_rles(masks[:, 0], boxes, (height, width))


def test_evaluation_without_paste_gives_the_same_entries():
    import torch

    from asn.model import build_model

    torch.manual_seed(0)
    model = build_model("mrcnn_asn", 4, backbone="resnet18_fpn_small", min_size=64, max_size=160,
                        box_score_thresh=0.0, box_detections_per_img=20).eval()
    image = torch.rand(3, 70, 150)
    with torch.inference_mode():
        pasted = model([image])[0]
        model.transform.paste_masks = False
        in_boxes = model([image])[0]
    assert in_boxes["amodal_masks"].shape[-2:] == (28, 28) and in_boxes["image_size"].tolist() == [70, 150]
    assert len(pasted["scores"]) > 0
    labels = {k: k for k in range(1, 4)}
    assert predictions.detections_to_results(in_boxes, 3, labels) == predictions.detections_to_results(pasted, 3, labels)


def test_detections_to_results():
    import torch

    masks = torch.zeros((2, 1, 10, 12))
    masks[0, 0, 2:5, 3:9] = 0.8
    masks[1, 0, 0:2, 0:2] = 0.7
    inmodal = masks.clone()
    inmodal[0, 0, 2:5, 6:9] = 0.1
    output = {"boxes": torch.tensor([[3.0, 2.0, 9.0, 5.0], [0.0, 0.0, 2.123, 2.0]]),
              "labels": torch.tensor([1, 3]), "scores": torch.tensor([0.912345678, 0.5]),
              "amodal_masks": masks, "inmodal_masks": inmodal,
              "occlusion_scores": torch.tensor([0.75, 0.1])}
    results = predictions.detections_to_results(output, 42, {1: 1, 2: 2, 3: 4})
    assert [r["category_id"] for r in results] == [1, 4]
    assert results[0]["bbox"] == [3.0, 2.0, 6.0, 3.0]
    assert results[1]["bbox"] == [0.0, 0.0, 2.12, 2.0]
    assert results[0]["score"] == 0.91235 and results[0]["image_id"] == 42
    assert results[0]["occlusion_score"] == 0.75
    a = mask_utils.area({"size": [10, 12], "counts": results[0]["segmentation"]["counts"]})
    i = mask_utils.area({"size": [10, 12],
                         "counts": results[0]["inmodal_segmentation"]["counts"]})
    assert (a, i) == (18, 9)
    # The entries pass the file validation.
    assert predictions._entry_problem(results[0], {42}, {1, 4}, {42: (10, 12)}) is None
    with pytest.raises(ValueError, match="label 3"):
        predictions.detections_to_results(output, 42, {1: 1})
    empty = {k: v[:0] for k, v in output.items()}
    assert predictions.detections_to_results(empty, 1, {1: 1}) == []


def test_match_detections_equals_a_plain_greedy_loop():
    rng = np.random.default_rng(5)
    gts, preds = [], []
    for image_id in range(1, 80):
        boxes = []
        for _ in range(rng.integers(0, 6)):
            x, y = rng.uniform(0, 40, 2)  # crowded: ground truths overlap each other
            boxes.append([x, y])
            gts.append({"image_id": image_id, "category_id": int(rng.integers(1, 3)),
                        "bbox": [x, y, 15.0, 15.0], "iscrowd": int(rng.random() < 0.05)})
        for _ in range(rng.integers(0, 12)):
            x, y = boxes[rng.integers(len(boxes))] if boxes else (0, 0)
            x, y = x + rng.normal(0, 4), y + rng.normal(0, 4)
            preds.append({"image_id": image_id, "category_id": int(rng.integers(1, 3)),
                          "bbox": [x, y, float(rng.uniform(10, 20)), 15.0],
                          "score": float(rng.integers(0, 5)) / 4})  # ties on purpose
    occlusion._MATCH_BLOCK_IMAGES, saved = 7, occlusion._MATCH_BLOCK_IMAGES  # several blocks
    try:
        dets, matched = occlusion.match_detections(preds, gts, 0.3)
    finally:
        occlusion._MATCH_BLOCK_IMAGES = saved

    def iou(a, b):
        iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)

    expected, taken = {}, set()
    order = sorted(range(len(preds)), key=lambda i: (preds[i]["image_id"], -preds[i]["score"], i))
    for d in order:
        p = preds[d]
        best, best_iou = None, 0.3
        for g, gt in enumerate(gts):
            if (g in taken or gt["iscrowd"] or gt["image_id"] != p["image_id"]
                    or gt["category_id"] != p["category_id"]):
                continue
            value = iou(p["bbox"], gt["bbox"])
            if value >= best_iou and (best is None or value > best_iou):
                best, best_iou = g, value
        if best is not None:
            taken.add(best)
            expected[d] = best
    assert 60 < len(expected) < len(preds) - 60
    assert dict(zip(dets.tolist(), matched.tolist())) == expected
