"""End to end: `asn stats` on a tiny hand-made normalized folder, and bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from asn.cli import main

H, W = 50, 100


def _square(x: float, y: float, s: float) -> list[float]:
    return [x, y, x + s, y, x + s, y + s, x, y + s]


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [H, W], "counts": rle["counts"].decode()}


def _rasterize(polygon: list[float]) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([polygon], H, W)))


def _make_dataset(root):
    """Train: image 1 = car in front of a half-hidden pedestrian, image 2 = a lone cyclist.
    Test: image 3 = an L-shaped van."""
    gt = root / "normalized"
    gt.mkdir()
    l_shape = [0, 0, 20, 0, 20, 10, 10, 10, 10, 20, 0, 20]
    specs = {
        "train": [
            # (id, image, category, amodal polygon, occlusion, oco, ico)
            (1, 1, 4, _square(0, 0, 20), 0.0, 1, 1),
            (2, 1, 2, _square(10, 0, 20), 0.5, 1, 2),
            (3, 2, 1, _square(50, 20, 10), 0.0, 0, 1),
        ],
        "test": [(4, 3, 7, l_shape, 0.0, 0, 1)],
    }
    for split, anns in specs.items():
        image_ids = sorted({a[1] for a in anns})
        images = [{"id": i, "file_name": f"{i:06d}.png", "width": W, "height": H} for i in image_ids]
        amodal, inmodal = [], []
        front = None
        for ann_id, image_id, cat, poly, occ, oco, ico in anns:
            mask = _rasterize(poly)
            visible = mask.copy()
            if ann_id == 2:
                visible[front > 0] = 0
            if ann_id == 1:
                front = mask
            common = {"id": ann_id, "image_id": image_id, "category_id": cat, "iscrowd": 0,
                      "occlusion_ratio": occ, "oco_id": oco, "ico_id": ico}
            amodal.append(common | {"segmentation": [poly], "bbox": list(mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask)))), "area": float(mask.sum())})
            rle = _rle(visible)
            inmodal.append(common | {"segmentation": rle, "bbox": [float(v) for v in mask_utils.toBbox(rle)], "area": float(visible.sum())})
        categories = [{"id": i, "name": str(i)} for i in (1, 2, 4, 5, 6, 7, 8)]
        for kind, anns_out in (("amodal", amodal), ("inmodal", inmodal)):
            for a in anns_out:
                a["bbox"] = [float(v) for v in a["bbox"]]
            (gt / f"{split}_{kind}.json").write_text(json.dumps({"images": images, "annotations": anns_out, "categories": categories}))
    labels = root / "raw" / "training" / "label_2"
    labels.mkdir(parents=True)
    (labels / "000001.txt").write_text(
        "Car 0 0 0 0.00 0.00 20.00 20.00 1 1 1 0 0 0 0\nPedestrian 0 0 0 20.00 0.00 30.00 20.00 1 1 1 0 0 0 0\n"
        "DontCare -1 -1 -10 70.00 0.00 90.00 10.00 -1 -1 -1 -1000 -1000 -1000 -10\n")
    (labels / "000002.txt").write_text("Cyclist 0 0 0 55.00 20.00 65.00 30.00 1 1 1 0 0 0 0\n")
    return gt, root / "raw"


def test_stats_end_to_end(tmp_path):
    gt, raw = _make_dataset(tmp_path)
    out = tmp_path / "stats"
    code = main(["stats", "--gt", str(gt), "--raw", str(raw), "--out", str(out), "--vis", "1", "--workers", "2", "--synthetic"])
    assert code == 0
    names = {p.name for p in out.iterdir()}
    assert {"table1.md", "table1.csv", "table2.md", "table2.csv", "summary.json", "figure4a.png", "figure4a.csv",
            "figure4b.png", "figure4b.csv", "figure4c.png", "figure4c.csv", "vis"} <= names
    assert (out / "vis" / "000001.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 3 and summary["n_instances"] == 4
    assert summary["instances_per_image"] == pytest.approx(4 / 3)
    assert summary["fraction_partially_occluded"] == pytest.approx(0.25)
    assert summary["mean_occlusion_ratio"] == pytest.approx(0.5 / 4)
    assert summary["amodal_convexity"] == pytest.approx((3 + 300 / 350) / 4)
    assert summary["points_per_polygon"] == pytest.approx((4 + 4 + 4 + 6) / 4)
    # image 1: both inmodal boxes equal their labels (IoU 1); image 2: shifted by half (1/3)
    assert summary["box_consistency_mean_iou"] == pytest.approx((1 + 1 / 3) / 2)
    assert summary["box_consistency_share_above_0_65"] == pytest.approx(0.5)
    # one two-instance cluster: one occluded instance (the paper's max occlusion order)
    assert summary["cluster_max_order_counts"]["1"] == 1 and summary["cluster_max_order_counts"]["2"] == 0
    assert "a two-instance cluster counts 1" in summary["cluster_max_order_definition"]
    assert summary["match_number_counts"] == {"0": 2, "1": 2, "2": 0, "3": 0, "4": 0, "5": 0, ">5": 0}
    # coverage: image 1 squares cover 30x20 px, image 2 10x10 px, image 3 the L (300 px)
    assert summary["amodal_pixel_coverage"] == pytest.approx((600 + 100 + 300) / (3 * H * W))
    rows = {r["category"]: r for r in csv.DictReader((out / "table1.csv").open())}
    assert rows["pedestrian"]["train_count"] == "1" and rows["person-sitting"]["total"] == "0"
    assert rows["van"]["test_count"] == "1" and rows["people"]["total"] == "2"
    assert float(rows["car"]["ratio"]) == pytest.approx(0.25)
    table2 = (out / "table2.md").read_text()
    assert "synthetic" in table2 and "asn stats --gt" in table2
    fig_a = list(csv.DictReader((out / "figure4a.csv").open()))
    assert int(fig_a[0]["instances"]) == 3 and int(fig_a[5]["instances"]) == 1
    # the paper's numbers beside ours, labelled paper-reported
    assert rows["car"]["paper_kins_count"] == "129164" and rows["car"]["paper_kins_ratio_percent"] == "67.76"
    assert rows["car"]["ratio_percent"] == "25.00" and rows["person-sitting"]["paper_kins_count"] == "2250"
    assert rows["total"]["paper_kins_count"] == "190626" and rows["people"]["paper_kins_ratio_percent"] == "14.43"
    table1 = (out / "table1.md").read_text()
    assert "| car | vehicle | 1 | 0 | 1 | 0.2500 | 0.5000 | 25.00 | 129164 | 67.76 |" in table1
    assert "paper-reported on KINS (Qi et al., CVPR 2019, Table 1" in table1
    table2_rows = list(csv.DictReader((out / "table2.csv").open()))
    paper2 = {(r["split"], r["segments"]): r for r in table2_rows if r["source"].startswith("paper-reported")}
    assert float(paper2["KINS", "amodal"]["convexity"]) == 0.830 and float(paper2["COCO-A", "inmodal"]["simplicity"]) == 0.658
    assert len(paper2) == 6 and "Column pairing flagged" in table2
    fig_c = list(csv.DictReader((out / "figure4c.csv").open()))
    for column in ("clusters_fraction", "instances_fraction", "paper_kins_max_occlusion_order_fraction",
                   "paper_kins_max_match_number_fraction"):
        assert sum(float(r[column]) for r in fig_c) == pytest.approx(1.0), column  # fractions of each series
    assert [r["paper_value"] for r in fig_c] == ["1", "2", "3", "4", "5", ">6"]
    assert fig_c[0]["clusters_fraction"] == "1.0" and fig_c[0]["instances_fraction"] == "1.0"
    assert fig_c[0]["paper_kins_max_occlusion_order"] == "63920"
    assert list(fig_c[0])[-2:] == ["clusters_by_max_order", "instances_by_match_number"]  # DVC plots the last
    assert summary["cluster_max_order_above_6_fraction"] == 0.0


def test_stats_bad_input_exits_2_without_output(tmp_path, capsys):
    gt, raw = _make_dataset(tmp_path)
    data = json.loads((gt / "train_inmodal.json").read_text())
    data["annotations"] = [a for a in data["annotations"] if a["id"] != 2]
    (gt / "train_inmodal.json").write_text(json.dumps(data))
    out = tmp_path / "stats"
    assert main(["stats", "--gt", str(gt), "--raw", str(raw), "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "train_inmodal.json" in err and "annotation id 2" in err
    assert not out.exists()
    assert main(["stats", "--gt", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert not out.exists()


def test_stats_table3_from_two_annotation_stages_and_a_bad_stage2_file(tmp_path, capsys):
    """Annotator files in RAW/annotators (stage 1) and RAW/annotators/stage2: Table 3 in the paper's
    layout; a stage-2 file that lacks an annotation exits 2 naming it, nothing written."""
    gt, raw = _make_dataset(tmp_path)
    source = json.loads((gt / "train_amodal.json").read_text())
    (raw / "annotators" / "stage2").mkdir(parents=True)
    for k, (dx1, dx2) in enumerate(((0, 0), (2, 1), (4, 3)), start=1):
        for folder, dx in ((raw / "annotators", dx1), (raw / "annotators" / "stage2", dx2)):
            data = json.loads(json.dumps(source))
            for ann in data["annotations"]:
                ann["segmentation"] = [[v + dx if i % 2 == 0 else v for i, v in enumerate(poly)]
                                       for poly in ann["segmentation"]]
            (folder / f"annotator_{k}.json").write_text(json.dumps(data))
    out = tmp_path / "stats"
    assert main(["stats", "--gt", str(gt), "--raw", str(raw), "--out", str(out), "--vis", "0", "--workers", "1"]) == 0
    table3 = json.loads((out / "table3.json").read_text())
    assert table3["layout"] == "two_stage" and len(table3["cross_stage"]["matrix"]) == 4
    assert table3["cross_stage"]["rows"][-1] == "majority_vote, stage 2"
    text = (out / "table3.md").read_text()
    assert "## Paper (paper-reported on KINS" in text and "Our pattern (computed from the matrix above)" in text
    bad = json.loads((raw / "annotators" / "stage2" / "annotator_2.json").read_text())
    bad["annotations"] = bad["annotations"][1:]
    (raw / "annotators" / "stage2" / "annotator_2.json").write_text(json.dumps(bad))
    out2 = tmp_path / "stats2"
    assert main(["stats", "--gt", str(gt), "--raw", str(raw), "--out", str(out2), "--vis", "0", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "annotator_2.json" in err and "stage2" in err and "annotation id 1" in err
    assert not out2.exists()
