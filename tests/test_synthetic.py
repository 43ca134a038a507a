"""The embedded synthetic KINS world (asn.data.synthetic, `asn synth`)."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from asn.cli import main
from asn.data import synthetic
from asn.data.order import inmodal_masks_from_order, order_from_depth
from asn.data.synthetic import image_seed, render_scene, scene_annotations, synthesize

KINS_2020_FIELDS = {"id", "image_id", "category_id", "a_segm", "i_segm", "a_bbox", "i_bbox",
                    "a_area", "i_area", "oco_id", "ico_id", "iscrowd"}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def scenes():
    return [render_scene(s, 320, 96) for s in range(6)]


def test_rendered_scene_is_exact_by_construction(scenes):
    for scene in scenes:
        assert scene.image.shape == (96, 320, 3) and scene.image.dtype == np.uint8
        assert scene.instances, "a scene should contain objects"
        for inst in scene.instances:
            rle = mask_utils.merge(mask_utils.frPyObjects(inst.amodal_polygons, 96, 320))
            assert (mask_utils.decode(rle).astype(bool) == inst.amodal_mask).all()
            for poly in inst.amodal_polygons:
                pts = np.reshape(poly, (-1, 2))
                assert len(pts) >= 3
                assert pts[:, 0].min() >= 0 and pts[:, 0].max() <= 320
                assert pts[:, 1].min() >= 0 and pts[:, 1].max() <= 96
                assert (np.round(pts, 2) == pts).all()
            assert inst.inmodal_mask.sum() >= synthetic._MIN_VISIBLE_PIXELS
            assert not (inst.inmodal_mask & ~inst.amodal_mask).any()
        amodal = np.stack([i.amodal_mask for i in scene.instances])
        oco, ico = order_from_depth(amodal, [i.depth for i in scene.instances])
        assert oco.tolist() == [i.oco_id for i in scene.instances]
        assert ico.tolist() == [i.ico_id for i in scene.instances]
        derived = inmodal_masks_from_order(amodal, oco, ico)
        assert (derived == np.stack([i.inmodal_mask for i in scene.instances])).all()
        # Visible masks of different instances never share a pixel (one object per pixel).
        assert derived.sum(axis=0).max() <= 1


def test_scene_contains_occlusion_clusters(scenes):
    assert any(i.ico_id > 1 for s in scenes for i in s.instances)
    assert any(i.oco_id == 0 for s in scenes for i in s.instances)


def test_geometry_only_annotations_match_rendered_scene():
    for s in range(3):
        scene = render_scene(s, 320, 96, render_pixels=False)
        assert scene.image is None
        records = scene_annotations(s, 320, 96)
        assert len(records) == len(scene.instances)
        for rec, inst in zip(records, scene.instances):
            assert rec["category_id"] == inst.category_id
            assert rec["a_segm"] == inst.amodal_polygons
            assert rec["a_area"] == inst.amodal_mask.sum()
            assert rec["i_area"] == inst.inmodal_mask.sum()
            assert (rec["oco_id"], rec["ico_id"]) == (inst.oco_id, inst.ico_id)


def test_defaults_resemble_kins_statistics():
    # Geometry of 40 default-size scenes (same placement code as the rendered ones).
    counts, occluded, points = [], 0, 0
    classes = collections.Counter()
    for s in range(40):
        records = scene_annotations(image_seed(0, "train", s), 640, 192)
        counts.append(len(records))
        occluded += sum(r["i_area"] < r["a_area"] for r in records)
        points += sum(len(q) // 2 for r in records for q in r["a_segm"])
        classes.update(r["category_id"] for r in records)
    n = sum(counts)
    assert 10.0 <= n / 40 <= 15.0
    assert 0.35 <= occluded / n <= 0.65
    assert 24 <= points / n <= 36
    assert 0.55 <= classes[4] / n <= 0.8
    assert 0.04 <= classes[2] / n <= 0.2
    assert 0.03 <= classes[8] / n <= 0.2
    assert classes[3] == 0
    assert np.std(counts) > 1.0  # Poisson-ish, not constant


def test_same_seed_same_bytes_for_any_worker_count(tmp_path):
    kwargs = dict(n_train=6, n_test=3, seed=3, width=320, height=96, annotators=2, annotator_images=4,
                  progress=False)
    synthesize(tmp_path / "a", workers=1, **kwargs)
    synthesize(tmp_path / "b", workers=2, **kwargs)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 6 + 6 + 3 + 2 + 2 + 2  # images, labels, test images, 2 JSON, 2 annotators x 2 stages
    assert a == b
    synthesize(tmp_path / "c", workers=1, **{**kwargs, "seed": 4})
    assert _files(tmp_path / "c") != a


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "kins"
    summary = synthesize(root, n_train=5, n_test=3, seed=1, width=320, height=96, annotators=2,
                         annotator_images=3, workers=1, progress=False)
    return root, summary


def test_layout_and_kins_2020_schema(dataset):
    root, summary = dataset
    assert sorted(p.name for p in (root / "training" / "image_2").iterdir()) == [f"{i:06d}.png" for i in range(5)]
    assert sorted(p.name for p in (root / "testing" / "image_2").iterdir()) == [f"{i:06d}.png" for i in range(3)]
    assert len(list((root / "training" / "label_2").iterdir())) == 5
    assert not (root / "testing" / "label_2").exists()
    for name, n_images in (("update_train_2020.json", 5), ("update_test_2020.json", 3)):
        data = orjson.loads((root / name).read_bytes())
        assert [im["id"] for im in data["images"]] == list(range(1, n_images + 1))
        assert all(im["width"] == 320 and im["height"] == 96 for im in data["images"])
        assert [c["id"] for c in data["categories"]] == list(range(1, 9))
        assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
        for ann in data["annotations"]:
            assert set(ann) == KINS_2020_FIELDS
            assert ann["category_id"] in (1, 2, 4, 5, 6, 7, 8)
            assert all(len(q) >= 6 and len(q) % 2 == 0 for q in ann["a_segm"] + ann["i_segm"])
            assert isinstance(ann["a_area"], float) and 0 < ann["i_area"] <= ann["a_area"]
    assert summary["train_instances"] + summary["test_instances"] == summary["instances"]


def test_pycocotools_loads_and_transformation_gives_visible_masks(dataset):
    root, _ = dataset
    data = orjson.loads((root / "update_train_2020.json").read_bytes())
    # The amodal view of the file as plain COCO (what convert produces), loaded by pycocotools.
    amodal = {"images": data["images"], "categories": data["categories"], "annotations": [
        {**{k: a[k] for k in ("id", "image_id", "category_id", "iscrowd")},
         "segmentation": a["a_segm"], "bbox": a["a_bbox"], "area": a["a_area"]} for a in data["annotations"]]}
    path = root.parent / "amodal.json"
    path.write_bytes(orjson.dumps(amodal))
    coco = COCO(str(path))
    for image in data["images"]:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        masks = np.stack([coco.annToMask(a).astype(bool) for a in anns])
        src = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        inmodal = inmodal_masks_from_order(masks, [a["oco_id"] for a in src], [a["ico_id"] for a in src])
        scene = render_scene(image_seed(1, "train", image["id"] - 1), 320, 96)
        assert (inmodal == np.stack([i.inmodal_mask for i in scene.instances])).all()
        for a, m in zip(src, inmodal):
            assert a["i_area"] == m.sum()
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            assert a["i_bbox"] == [round(float(v), 2) for v in mask_utils.toBbox(rle)]
        png = np.asarray(Image.open(root / "training" / "image_2" / image["file_name"]))
        assert (png == scene.image).all()


def test_kitti_labels_are_noisy_visible_boxes(dataset):
    root, _ = dataset
    data = orjson.loads((root / "update_train_2020.json").read_bytes())
    types = {"Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc"}
    diffs = []
    for image in data["images"]:
        lines = (root / "training" / "label_2" / image["file_name"].replace(".png", ".txt")).read_text().splitlines()
        src = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        assert len(lines) == len(src)
        for line, ann in zip(lines, src):
            fields = line.split(" ")
            assert len(fields) == 15 and fields[0] in types
            assert int(fields[2]) in (0, 1, 2, 3)
            x, y, w, h = ann["i_bbox"]
            diffs.append(np.abs(np.array([float(v) for v in fields[4:8]]) - [x, y, x + w, y + h]))
    diffs = np.concatenate(diffs)
    assert diffs.max() <= 12 and 0.2 < diffs.mean() < 3.0


def test_annotator_copies(dataset):
    root, _ = dataset
    source = orjson.loads((root / "update_train_2020.json").read_bytes())
    copies = [orjson.loads((root / "annotators" / f"annotator_{k}.json").read_bytes()) for k in (1, 2)]
    src_ids = [a["id"] for a in source["annotations"] if a["image_id"] <= 3]
    for copy in copies:
        assert [im["id"] for im in copy["images"]] == [1, 2, 3]
        assert [a["id"] for a in copy["annotations"]] == src_ids
        assert all(set(a) == {"id", "image_id", "category_id", "segmentation", "bbox", "area", "iscrowd"}
                   for a in copy["annotations"])
    assert copies[0]["annotations"][0]["segmentation"] != copies[1]["annotations"][0]["segmentation"]
    # Perturbed, but still the same objects: mean IoU with the source clearly positive and below 1.
    by_id = {a["id"]: a for a in source["annotations"]}
    ious = []
    for a in copies[0]["annotations"]:
        r1 = mask_utils.frPyObjects(a["segmentation"], 96, 320)
        r0 = mask_utils.frPyObjects(by_id[a["id"]]["a_segm"], 96, 320)
        ious.append(mask_utils.iou([mask_utils.merge(r1)], [mask_utils.merge(r0)], [0])[0, 0])
    assert 0.5 < np.mean(ious) < 0.99


def test_annotations_only_mode(tmp_path):
    summary = synthesize(tmp_path / "k", n_train=4, n_test=2, seed=0, annotations_only=True,
                         workers=1, progress=False)
    assert summary["width"] == 1242 and summary["height"] == 375
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["update_test_2020.json", "update_train_2020.json"]
    data = orjson.loads((tmp_path / "k" / "update_train_2020.json").read_bytes())
    assert len(data["images"]) == 4 and data["annotations"]
    assert all(set(a) == KINS_2020_FIELDS for a in data["annotations"])


def test_cli_help_and_bad_argument(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--help"])
    assert exc.value.code == 0
    assert "--annotations-only" in capsys.readouterr().out
    out = tmp_path / "bad"
    assert main(["synth", "--out", str(out), "--train", "-1"]) == 2
    assert "--train" in capsys.readouterr().err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_cli_writes_dataset(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["synth", "--out", str(out), "--train", "2", "--test", "1", "--width", "160",
                 "--height", "48", "--workers", "1", "--no-progress"]) == 0
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["train_images"] == 2 and summary["test_images"] == 1
    assert Image.open(out / "testing" / "image_2" / "000000.png").size == (160, 48)


def test_failed_run_keeps_existing_dataset(tmp_path, monkeypatch):
    out = tmp_path / "d"
    synthesize(out, n_train=2, n_test=1, width=160, height=48, workers=1, progress=False)
    before = _files(out)

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(synthetic, "_kitti_label", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        synthesize(out, n_train=3, n_test=1, seed=5, width=160, height=48, workers=1, progress=False)
    assert _files(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_stage2_annotators_share_a_persistent_error_and_draw_fresh_noise(dataset):
    """Stage 2 (Table 3): the same annotator, same ids; each vertex error = the annotator's
    persistent part (an outline offset d_k along the outward normal + a per-instance habit, the
    same in both stages) + fresh noise drawn per stage (smaller in stage 2). So one annotator's
    stage-1 and stage-2 errors correlate, two annotators' do not."""
    from asn.data.synthetic import _annotator_habits, _outward_normals

    root, _ = dataset
    source = {a["id"]: a for a in orjson.loads((root / "update_train_2020.json").read_bytes())["annotations"]}
    files = {(k, s): orjson.loads((root / "annotators" / ("stage2" if s == 2 else "") / f"annotator_{k}.json")
                                  .read_bytes()) for k in (1, 2) for s in (1, 2)}
    assert files[1, 1]["images"] == files[1, 2]["images"]
    assert [a["id"] for a in files[1, 1]["annotations"]] == [a["id"] for a in files[1, 2]["annotations"]]
    by_id = {key: {a["id"]: a for a in f["annotations"]} for key, f in files.items()}
    errors: dict = {key: [] for key in files}
    normals = []
    for ann_id in by_id[1, 1]:
        for j, p0 in enumerate(source[ann_id]["a_segm"]):
            p0 = np.reshape(p0, (-1, 2))
            inside = (p0[:, 0] > 3) & (p0[:, 0] < 317) & (p0[:, 1] > 3) & (p0[:, 1] < 93)  # never clipped
            for key in files:
                errors[key].append((np.reshape(by_id[key][ann_id]["segmentation"][j], (-1, 2)) - p0)[inside])
            normals.append(_outward_normals(p0)[inside])
    n = np.concatenate(normals)
    errors = {key: np.concatenate(v) for key, v in errors.items()}
    assert len(n) > 300
    offsets = {k: _annotator_habits(1, k)[1] for k in (1, 2)}
    assert all(abs(d) <= 0.6 for d in offsets.values())
    for (k, stage), e in errors.items():
        # the outline offset: the mean error along the outward normal is d_k in both stages
        assert np.mean(np.sum(e * n, axis=1)) == pytest.approx(offsets[k], abs=0.15), (k, stage)
        assert np.abs(e).max() < 10
    assert not np.allclose(errors[1, 1], errors[1, 2])  # fresh noise: the stages differ

    def corr(a, b):
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    residual = {key: e - offsets[key[0]] * n for key, e in errors.items()}  # the habit + fresh parts
    for k in (1, 2):
        assert corr(residual[k, 1], residual[k, 2]) > 0.35, k  # the persistent habit
        assert residual[k, 2].var() < residual[k, 1].var(), k  # stage 2: smaller fresh noise
    for a, b in (((1, 1), (2, 2)), ((1, 2), (2, 1)), ((1, 1), (2, 1))):
        assert abs(corr(residual[a], residual[b])) < 0.15, (a, b)  # independent annotators
        assert abs(corr(errors[a], errors[b])) < 0.15, (a, b)


def test_outward_normals_of_a_square_in_both_orientations():
    from asn.data.synthetic import _outward_normals

    square = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    for pts in (square, square[::-1]):
        moved = pts + 1.0 * _outward_normals(pts)
        centre = pts.mean(axis=0)
        # every corner moves away from the centre, along the diagonal (by 1 px)
        assert (np.linalg.norm(moved - centre, axis=1) > np.linalg.norm(pts - centre, axis=1)).all()
        np.testing.assert_allclose(np.linalg.norm(moved - pts, axis=1), 1.0)
    assert not _outward_normals(np.array([[0.0, 0.0], [1.0, 1.0]])).any()
    assert not _outward_normals(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])).any()  # no area
