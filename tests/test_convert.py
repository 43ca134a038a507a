"""`asn convert`: normalized files load in pycocotools, masks are exact, bad input is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from asn.cli import main
from asn.data import rle as rle_ops
from asn.data.convert import convert, inmodal_from_order
from kins_samples import H, W, expected_masks, kins2019, kins2020, write_images


@pytest.fixture()
def kins_dir(tmp_path):
    write_images(tmp_path / "image_2")
    (tmp_path / "update_train_2020.json").write_text(json.dumps(kins2020()))
    (tmp_path / "instances_train.json").write_text(json.dumps(kins2019()))
    return tmp_path


@pytest.mark.parametrize("name", ["update_train_2020.json", "instances_train.json"])
def test_convert_matches_transformation(kins_dir, name):
    out = kins_dir / "out"
    code = main(["convert", "--kins", str(kins_dir / name), "--images",
                 str(kins_dir / "image_2"), "--out", str(out), "--split", "train", "--strict"])
    assert code == 0
    amodal, inmodal = COCO(str(out / "train_amodal.json")), COCO(str(out / "train_inmodal.json"))
    assert sorted(amodal.getAnnIds()) == sorted(inmodal.getAnnIds()) == [1, 2, 3]
    assert sorted(amodal.getImgIds()) == sorted(inmodal.getImgIds()) == [1, 2]
    for aid, (amodal_mask, inmodal_mask) in expected_masks().items():
        a, i = amodal.loadAnns(aid)[0], inmodal.loadAnns(aid)[0]
        assert np.array_equal(amodal.annToMask(a).astype(bool), amodal_mask)
        assert np.array_equal(inmodal.annToMask(i).astype(bool), inmodal_mask)
        assert a["area"] == amodal_mask.sum() and i["area"] == inmodal_mask.sum()
        assert a["occlusion_ratio"] == pytest.approx(1 - inmodal_mask.sum() / amodal_mask.sum())
        assert a["amodal_bbox"] == a["bbox"] == i["amodal_bbox"]
        assert i["inmodal_bbox"] == i["bbox"]
    ann2 = amodal.loadAnns(2)[0]
    assert 0 < ann2["occlusion_ratio"] < 1
    if name.startswith("update"):
        assert (ann2["oco_id"], ann2["ico_id"]) == (1, 2)
    else:
        assert ann2["oco_id"] is None  # the 2019 release has no occlusion order
    report = json.loads((out / "train_report.json").read_text())
    assert report["kept"] == {"images": 2, "annotations": 3}
    assert report["dropped"] == {} and report["repaired"] == {}
    assert [c["id"] for c in amodal.loadCats(amodal.getCatIds())] == [1, 2, 4, 5, 6, 7, 8]


def test_inmodal_from_polygons(kins_dir):
    out = kins_dir / "out"
    convert(kins_dir / "update_train_2020.json", out, "train", kins_dir / "image_2",
            inmodal_source="polygons")
    inmodal = COCO(str(out / "train_inmodal.json"))
    raster = mask_utils.decode(mask_utils.frPyObjects(
        kins2020()["annotations"][1]["i_segm"], H, W)).any(axis=2)
    assert np.array_equal(inmodal.annToMask(inmodal.loadAnns(2)[0]).astype(bool), raster)


def test_excluded_category_is_counted(kins_dir):
    out = kins_dir / "out"
    report = convert(kins_dir / "update_train_2020.json", out, "train", kins_dir / "image_2",
                     category_ids=[4, 7])
    assert report["excluded_categories"] == {"2": 1}
    assert report["kept"]["annotations"] == 2


def test_missing_image_file_is_reported(kins_dir):
    (kins_dir / "image_2" / "000000.png").unlink()
    out = kins_dir / "out"
    report = convert(kins_dir / "update_train_2020.json", out, "train", kins_dir / "image_2")
    assert report["dropped"] == {"image_file_missing": 1}
    assert report["annotations_of_dropped_images"] == 3
    assert report["kept"] == {"images": 1, "annotations": 0}
    code = main(["convert", "--kins", str(kins_dir / "update_train_2020.json"), "--images",
                 str(kins_dir / "image_2"), "--out", str(kins_dir / "strict"), "--split", "train",
                 "--strict"])
    assert code == 2
    assert not (kins_dir / "strict").exists()


def test_image_size_mismatch(kins_dir):
    write_images(kins_dir / "image_2", names=("000001.png",), size=(50, 60))
    report = convert(kins_dir / "update_train_2020.json", kins_dir / "out", "train",
                     kins_dir / "image_2")
    assert report["dropped"] == {"image_size_mismatch": 1}


def _broken_polygon(data):
    data["annotations"][1]["a_segm"] = [[1.0, 2.0, 3.0]]


def _broken_json(path):
    path.write_text('{"images": [}')


@pytest.mark.parametrize("breaker, words", [
    (_broken_polygon, "annotation 2: a_segm polygon 0 has an odd number of coordinates"),
    ("json", "invalid JSON"),
])
def test_bad_file_exits_2_and_keeps_existing_outputs(kins_dir, capsys, breaker, words):
    src = kins_dir / "update_train_2020.json"
    if breaker == "json":
        _broken_json(src)
    else:
        data = kins2020()
        breaker(data)
        src.write_text(json.dumps(data))
    out = kins_dir / "out"
    out.mkdir()
    previous = out / "train_amodal.json"
    previous.write_text("previous good content")
    code = main(["convert", "--kins", str(src), "--images", str(kins_dir / "image_2"),
                 "--out", str(out), "--split", "train", "--strict"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and str(src) in err[0] and words in err[0]
    assert previous.read_text() == "previous good content"
    assert sorted(p.name for p in out.iterdir()) == ["train_amodal.json"]  # no temp files left


def test_missing_input_file_and_folder(tmp_path, capsys):
    code = main(["convert", "--kins", str(tmp_path / "nope.json"), "--no-image-check",
                 "--out", str(tmp_path / "o"), "--split", "train"])
    assert code == 2 and "nope.json: file not found" in capsys.readouterr().err
    (tmp_path / "update_train_2020.json").write_text(json.dumps(kins2020()))
    code = main(["convert", "--kins", str(tmp_path / "update_train_2020.json"), "--images",
                 str(tmp_path / "no_images"), "--out", str(tmp_path / "o"), "--split", "train"])
    assert code == 2 and "image folder not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _random_scene(rng, n):
    """Random overlapping polygons with random depths -> RLEs, clusters and orders."""
    polys = []
    for _ in range(n):
        cx, cy = rng.uniform(10, 190), rng.uniform(10, 90)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 8))
        radii = rng.uniform(5, 30, 8)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        pts[:, 0] = pts[:, 0].clip(0, 200)
        pts[:, 1] = pts[:, 1].clip(0, 100)
        polys.append([pts.ravel().round(2).tolist()])
    masks = [mask_utils.decode(mask_utils.frPyObjects(p, 100, 200)[0]).astype(bool)
             for p in polys]
    depth = rng.permutation(n)
    # Reference order rule (DESIGN.md 2): layer = 1 + max layer of nearer overlapping masks.
    order = np.argsort(depth)
    ico = np.ones(n, int)
    for pos, i in enumerate(order):
        for j in order[:pos]:
            if (masks[i] & masks[j]).any():
                ico[i] = max(ico[i], ico[j] + 1)
    # Clusters: connected components of the overlap graph (singletons get 0).
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x
    for i in range(n):
        for j in range(i):
            if (masks[i] & masks[j]).any():
                parent[find(i)] = find(j)
    roots = [find(i) for i in range(n)]
    oco = [0 if roots.count(r) == 1 else sorted(set(roots)).index(r) + 1 for r in roots]
    return polys, masks, oco, ico


def test_rle_transformation_equals_dense(seed=7):
    rng = np.random.default_rng(seed)
    for n in (0, 1, 5, 12):
        polys, masks, oco, ico = _random_scene(rng, n)
        rles = [rle_ops.polygons_to_rle(p, 100, 200) for p in polys]
        got = inmodal_from_order(rles, oco, ico)
        for i in range(n):
            expected = masks[i].copy()
            for j in range(n):
                if oco[i] and oco[j] == oco[i] and ico[j] < ico[i]:
                    expected &= ~masks[j]
            assert np.array_equal(rle_ops.decode(got[i]), expected)


def test_parallel_equals_serial(tmp_path, monkeypatch):
    import asn.data.convert as convert_module

    monkeypatch.setattr(convert_module, "PARALLEL_MIN_INSTANCES", 0)
    rng = np.random.default_rng(3)
    images, anns = [], []
    for k in range(80):
        images.append({"id": k + 1, "file_name": f"{k:06d}.png", "width": 200, "height": 100})
        polys, masks, oco, ico = _random_scene(rng, 6)
        for p, o, c in zip(polys, oco, ico):
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": 4,
                         "a_segm": p, "i_segm": [], "oco_id": int(o), "ico_id": int(c)})
    src = tmp_path / "update_train_2020.json"
    src.write_text(json.dumps({"images": images, "annotations": anns}))
    convert(src, tmp_path / "serial", "train", workers=1)
    convert(src, tmp_path / "parallel", "train", workers=2)
    for name in ("train_amodal.json", "train_inmodal.json"):
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "parallel" / name).read_bytes()


def test_kins_folder_is_searched_by_split(kins_dir):
    from asn.data.convert import find_kins_file
    from asn.errors import InputError

    assert find_kins_file(kins_dir / "instances_train.json", "train").name == "instances_train.json"
    with pytest.raises(InputError, match="found update_train_2020.json and instances_train.json"):
        find_kins_file(kins_dir, "train")
    (kins_dir / "instances_train.json").unlink()
    assert find_kins_file(kins_dir, "train").name == "update_train_2020.json"
    with pytest.raises(InputError, match="found none"):
        find_kins_file(kins_dir, "test")


def test_params_file_sets_defaults_and_flags_win(kins_dir, capsys):
    params = kins_dir / "params.yaml"
    params.write_text("convert:\n  strict: true\n  inmodal_source: order\n"
                      "  categories: [4, 7]\n  workers: 1\n")
    args = ["convert", "--params", str(params), "--kins", str(kins_dir / "update_train_2020.json"),
            "--images", str(kins_dir / "image_2"), "--out", str(kins_dir / "out"),
            "--split", "train"]
    assert main(args) == 0
    report = json.loads((kins_dir / "out" / "train_report.json").read_text())
    assert report["excluded_categories"] == {"2": 1}
    assert main(args + ["--categories", "2", "4", "7"]) == 0
    report = json.loads((kins_dir / "out" / "train_report.json").read_text())
    assert report["excluded_categories"] == {}
    params.write_text("convert:\n  strictness: 1\n")
    assert main(args) == 2
    assert "unknown keys ['strictness']" in capsys.readouterr().err


def test_converted_synthetic_world_equals_rendered_masks(tmp_path):
    """The issue's check: converted inmodal masks equal the synthetic visible masks."""
    from asn.data.synthetic import image_seed, render_scene, synthesize

    synthesize(tmp_path / "raw", n_train=4, n_test=0, seed=5, workers=1, progress=False)
    convert(tmp_path / "raw" / "update_train_2020.json", tmp_path / "norm", "train",
            tmp_path / "raw" / "training" / "image_2", strict=True,
            category_ids=(1, 2, 3, 4, 5, 6, 7, 8), workers=1)
    amodal = COCO(str(tmp_path / "norm" / "train_amodal.json"))
    inmodal = COCO(str(tmp_path / "norm" / "train_inmodal.json"))
    checked = 0
    for img in amodal.loadImgs(amodal.getImgIds()):
        index = int(img["file_name"].split(".")[0])
        scene = render_scene(image_seed(5, "train", index), img["width"], img["height"])
        ann_ids = sorted(amodal.getAnnIds(imgIds=img["id"]))
        assert len(ann_ids) == len(scene.instances)
        for aid, inst in zip(ann_ids, scene.instances):
            a, i = amodal.loadAnns(aid)[0], inmodal.loadAnns(aid)[0]
            assert a["category_id"] == inst.category_id
            assert (a["oco_id"], a["ico_id"]) == (inst.oco_id, inst.ico_id)
            assert np.array_equal(amodal.annToMask(a).astype(bool), inst.amodal_mask)
            assert np.array_equal(inmodal.annToMask(i).astype(bool), inst.inmodal_mask)
            checked += 1
    assert checked > 20


def _bad_cases():
    from test_kins import BAD_2020

    return [pytest.param(mutate, words, id=kind + str(i))
            for i, (mutate, kind, words) in enumerate(BAD_2020)]


@pytest.mark.parametrize("mutate, words", _bad_cases())
def test_every_bad_record_fails_the_strict_cli_cleanly(kins_dir, capsys, mutate, words):
    data = kins2020()
    mutate(data)
    src = kins_dir / "update_train_2020.json"
    src.write_text(json.dumps(data))
    out = kins_dir / "out"
    out.mkdir()
    (out / "train_inmodal.json").write_text("earlier result")
    code = main(["convert", "--kins", str(src), "--images", str(kins_dir / "image_2"),
                 "--out", str(out), "--split", "train", "--strict"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"asn convert: error: {src}") and words in err[0]
    assert [p.name for p in out.iterdir()] == ["train_inmodal.json"]
    assert (out / "train_inmodal.json").read_text() == "earlier result"


def test_report_compares_derived_inmodal_with_i_segm(kins_dir):
    out = kins_dir / "out"
    report = convert(kins_dir / "update_train_2020.json", out, "train", kins_dir / "image_2")
    agreement = report["inmodal_vs_i_segm"]
    assert agreement["compared"] == 3 and agreement["below_0_9"] == 0
    assert agreement["mean_iou"] > 0.9
    data = kins2020()
    data["annotations"][1]["i_segm"] = data["annotations"][1]["a_segm"]  # ignores the occluder
    (kins_dir / "update_train_2020.json").write_text(json.dumps(data))
    report = convert(kins_dir / "update_train_2020.json", out, "train", kins_dir / "image_2")
    assert report["inmodal_vs_i_segm"]["below_0_9"] == 1
    assert report["inmodal_vs_i_segm"]["min_iou"] == pytest.approx(
        expected_masks()[2][1].sum() / expected_masks()[2][0].sum(), abs=0.02)
