"""`asn evaluate` end to end: a checkpoint scored on the test split, the metrics JSON re-scored
independently with unmodified pycocotools from the files it names, and bad input."""

from __future__ import annotations

import copy
import json

import pytest

from engine_helpers import PARAMS, asn, make_world, sets

PREDICTION_KEYS = {"image_id", "category_id", "bbox", "score", "segmentation", "inmodal_segmentation",
                   "occlusion_score"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    world = make_world(base)
    run = base / "run"
    asn("train", "--params", str(PARAMS), "--gt", str(world["gt"]), "--images", str(world["train_images"]),
        "--out", str(run), "--no-progress", *sets("profiles.smoke.train.iterations=3",
                                                   "profiles.smoke.train.steps=[2]"))
    return world, run


def evaluate_args(world, out, *extra):
    return ["evaluate", "--params", str(PARAMS), "--gt", str(world["gt"]), "--split", "test",
            "--out", str(out), "--no-progress", "--set", "eval.workers=0", *extra]


def pycocotools_stats(predictions, gt_path, iou_type):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(gt_path))
    if not predictions:
        return [0.0] * 3
    evaluation = COCOeval(gt, gt.loadRes(copy.deepcopy(predictions)), iou_type)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return [max(0.0, 100 * s) for s in evaluation.stats[:3]]


def rescore(metrics):
    """Re-score a metrics JSON from the files it names, with unmodified pycocotools."""
    files = metrics["files"]
    predictions = json.loads(open(files["predictions"]).read())
    inmodal = [{**p, "segmentation": p["inmodal_segmentation"]} for p in predictions]
    return {
        "det": pycocotools_stats(predictions, files["amodal_gt"], "bbox"),
        "amodal": pycocotools_stats(predictions, files["amodal_gt"], "segm"),
        "inmodal": pycocotools_stats(inmodal, files["inmodal_gt"], "segm"),
    }


def test_checkpoint_to_metrics(trained, tmp_path):
    world, run = trained
    out = tmp_path / "eval"
    asn(*evaluate_args(world, out, "--checkpoint", str(run / "checkpoint.pt"), "--images",
                       str(world["test_images"])))
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("det", "amodal", "inmodal"):
        for suffix in ("", "_50", "_75"):
            assert 0.0 <= metrics[f"{key}_ap{suffix}"] <= 100.0
    assert metrics["files"]["predictions"] == str(out / "predictions.json")
    assert metrics["run"]["variant"] == "mrcnn_asn" and metrics["run"]["iteration"] == 3
    assert "ap_occ_definition" in metrics and "occlusion_accuracy_definition" in metrics
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions and all(set(p) >= PREDICTION_KEYS for p in predictions)
    # the scene order in every detection: ordered ones (score >= eval.order_score_threshold) from
    # 1 up, the others 0 / 0; the order scores with their definition in the metrics
    for p in predictions:
        assert type(p["oco_id"]) is int and type(p["ico_id"]) is int
        assert (p["ico_id"] >= 1) if p["score"] >= 0.5 else (p["oco_id"], p["ico_id"]) == (0, 0)
    assert metrics["order_pairs"] > 0 and "order_definition" in metrics
    assert metrics["order_detections"] == sum(p["score"] >= 0.5 for p in predictions)
    assert metrics["order_pair_coverage"] is not None and 0 <= metrics["order_pair_coverage"] <= 100
    test_ids = {img["id"] for img in json.loads((world["gt"] / "test_amodal.json").read_text())["images"]}
    assert {p["image_id"] for p in predictions} <= test_ids
    assert (out / "per_class.csv").read_text().startswith("category_id,")
    scored = rescore(metrics)
    for key in ("det", "amodal", "inmodal"):
        assert [metrics[f"{key}_ap"], metrics[f"{key}_ap_50"], metrics[f"{key}_ap_75"]] == pytest.approx(
            scored[key], abs=1e-9)


def test_paper_inference_order_is_an_evaluation_option_with_its_own_run_key(trained, tmp_path):
    world, run = trained
    keys, timings = {}, {}
    for order in ("released", "paper"):
        out = tmp_path / order
        asn(*evaluate_args(world, out, "--checkpoint", str(run / "checkpoint.pt"), "--images",
                           str(world["test_images"]), "--set", f"eval.inference_order={order}", "--no-tracking"))
        metrics = json.loads((out / "metrics.json").read_text())
        keys[order] = metrics["mlflow"]["run_key"]
        assert metrics["run"].get("inference_order", "released") == order
        timing = json.loads((out / "timing.json").read_text())  # the side file the sweep reads
        assert timing["inference_order"] == order and timing["model_ms_per_image"] > 0
        timings[order] = timing
        assert "model_ms_per_image" not in metrics  # no timings in the tracked metrics
    assert keys["released"] != keys["paper"]
    proc = asn(*evaluate_args(world, tmp_path / "bad", "--checkpoint", str(run / "checkpoint.pt"), "--images",
                              str(world["test_images"]), "--set", "eval.inference_order=fastest"), check=False)
    assert proc.returncode == 2 and "eval.inference_order" in proc.stderr and "fastest" in proc.stderr


def test_predictions_file_rescored_equals_pycocotools(trained, tmp_path):
    """Realistic predictions (perturbed ground truth) so the APs are far from 0 and 100."""
    from asn.eval.perturb import perturbed_predictions
    from asn.io import write_json_atomic

    world, _ = trained
    amodal = json.loads((world["gt"] / "test_amodal.json").read_text())
    inmodal = json.loads((world["gt"] / "test_inmodal.json").read_text())
    path = tmp_path / "predictions.json"
    write_json_atomic(path, perturbed_predictions(amodal, inmodal, per_image=20, seed=4))
    for engine in ("faster", "pycocotools"):
        out = tmp_path / engine
        asn(*evaluate_args(world, out, "--predictions", str(path), "--set", f"eval.engine={engine}"))
        metrics = json.loads((out / "metrics.json").read_text())
        assert 5 < metrics["amodal_ap"] < 100
        scored = rescore(metrics)
        for key in ("det", "amodal", "inmodal"):
            assert [metrics[f"{key}_ap"], metrics[f"{key}_ap_50"], metrics[f"{key}_ap_75"]] == pytest.approx(
                scored[key], abs=1e-9), (engine, key)


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p[0].pop("occlusion_score"), "prediction 0"),
    (lambda p: p[1].update(image_id=987654), "prediction 1"),
])
def test_bad_predictions_exit_2(trained, tmp_path, mutate, message):
    world, _ = trained
    predictions = [{"image_id": img, "category_id": 4, "bbox": [1, 1, 5, 5], "score": 0.5,
                    "segmentation": {"size": [80, 256], "counts": "0"},
                    "inmodal_segmentation": {"size": [80, 256], "counts": "0"}, "occlusion_score": 0.1}
                   for img in (1, 1)]
    mutate(predictions)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(predictions))
    out = tmp_path / "out"
    proc = asn(*evaluate_args(world, out, "--predictions", str(path)), check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.json" in lines[0] and message in lines[0], proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_corrupt_checkpoint_exit_2(trained, tmp_path):
    world, run = trained
    broken = tmp_path / "broken.pt"
    broken.write_bytes((run / "checkpoint.pt").read_bytes()[:1000])
    out = tmp_path / "out"
    proc = asn(*evaluate_args(world, out, "--checkpoint", str(broken), "--images", str(world["test_images"])),
               check=False)
    assert proc.returncode == 2 and "cannot read checkpoint" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_predict_own_images_png_jpeg_any_size_and_a_broken_one(trained, tmp_path):
    from PIL import Image

    world, run = trained
    shots = tmp_path / "shots"
    shots.mkdir()
    source = sorted(world["test_images"].glob("*.png"))[0]
    with Image.open(source) as image:
        image.save(shots / "a.png")
        image.resize((300, 120)).convert("RGB").save(shots / "b.jpg", quality=90)
    (shots / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "pred"
    proc = asn("predict", "--checkpoint", str(run / "checkpoint.pt"), "--images", str(shots), "--out", str(out),
               "--score-threshold", "0", "--no-progress", check=False)
    assert proc.returncode == 1, proc.stderr
    assert "c.png: cannot read image" in proc.stderr
    predictions = json.loads((out / "predictions.json").read_text())
    assert {p["file_name"] for p in predictions} == {str(shots / "a.png"), str(shots / "b.jpg")}
    assert all(set(p) >= PREDICTION_KEYS for p in predictions)
    assert all(type(p["oco_id"]) is int and p["ico_id"] >= 1 for p in predictions)  # all kept ones ordered
    sizes = {p["file_name"]: tuple(p["segmentation"]["size"]) for p in predictions}
    assert sizes[str(shots / "b.jpg")] == (120, 300)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.png", "b.png"]
    assert sorted(p.name for p in (out / "layers").iterdir()) == ["a.png", "b.png"]  # Figure 1(c) views
    with Image.open(out / "overlays" / "b.png") as overlay:
        assert overlay.size == (300, 120)
    # a glob pattern selects the same way; no image at all is a one-line error
    proc = asn("predict", "--checkpoint", str(run / "checkpoint.pt"), "--images", str(shots / "*.jpg"),
               "--out", str(tmp_path / "glob"), "--no-progress", "--no-overlays")
    proc = asn("predict", "--checkpoint", str(run / "checkpoint.pt"), "--images", str(tmp_path / "none"),
               "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2 and "no PNG or JPEG image found" in proc.stderr
