"""Table 3 annotator consistency: mean mask IoU matrix and majority vote on hand-made sets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from asn.cli import main
from asn.errors import InputError
from asn.stats.consistency import consistency_statistics


def _square(x: float, y: float, s: float) -> list[list[float]]:
    return [[x, y, x + s, y, x + s, y + s, x, y + s]]


def _write_set(path, squares_x: list[float], image_ids=(1,)) -> None:
    images = [{"id": i, "file_name": f"{i:06d}.png", "width": 40, "height": 20} for i in image_ids]
    annotations = [
        {"id": 10 + k, "image_id": image_ids[0], "category_id": 4, "segmentation": _square(x, 0, 10)}
        for k, x in enumerate(squares_x)
    ]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": []}))


def test_identical_sets_agree_perfectly(tmp_path):
    _write_set(tmp_path / "a.json", [0, 20])
    _write_set(tmp_path / "b.json", [0, 20])
    result = consistency_statistics([tmp_path / "a.json", tmp_path / "b.json"])
    np.testing.assert_allclose(result["matrix"], [[1, 1], [1, 1]])
    np.testing.assert_allclose(result["vs_majority"], [1, 1])
    assert result["n_instances"] == 2


def test_shifted_square_and_majority_of_three(tmp_path):
    _write_set(tmp_path / "a.json", [0])
    _write_set(tmp_path / "b.json", [5])  # shifted by half a width: IoU 50 / 150
    _write_set(tmp_path / "c.json", [2])
    result = consistency_statistics([tmp_path / n for n in ("a.json", "b.json", "c.json")])
    matrix = np.array(result["matrix"])
    assert matrix[0, 1] == pytest.approx(1 / 3)
    assert matrix[0, 2] == pytest.approx(80 / 120)
    assert matrix[1, 2] == pytest.approx(70 / 130)
    np.testing.assert_allclose(matrix, matrix.T)
    # columns 0-1: A only; 2-4: A, C; 5-9: all; 10-11: B, C; 12-14: B -> majority = columns 2..11
    expected = np.zeros((20, 40), np.uint8)
    expected[0:10, 2:12] = 1
    majority = result["majority"]["annotations"][0]["segmentation"]
    np.testing.assert_array_equal(mask_utils.decode(majority), expected)
    assert result["vs_majority"] == pytest.approx([80 / 120, 70 / 130, 1.0])


def test_cli_writes_table3_and_rejects_mismatched_sets(tmp_path, capsys):
    _write_set(tmp_path / "a.json", [0, 20])
    _write_set(tmp_path / "b.json", [0, 21])
    out = tmp_path / "out"
    assert main(["consistency", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(out)]) == 0
    assert {"table3.md", "table3.csv", "table3.json", "majority_vote.json"} <= {p.name for p in out.iterdir()}
    assert "Table 3" in (out / "table3.md").read_text()
    # an annotation id missing in one file: exit 2, file and id named, nothing written
    _write_set(tmp_path / "c.json", [0])
    bad_out = tmp_path / "bad"
    assert main(["consistency", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--out", str(bad_out)]) == 2
    err = capsys.readouterr().err
    assert "c.json" in err and "annotation id 11" in err
    assert not bad_out.exists()
    # different image sets
    _write_set(tmp_path / "d.json", [0, 20], image_ids=(2,))
    with pytest.raises(InputError, match="different images"):
        consistency_statistics([tmp_path / "a.json", tmp_path / "d.json"])


def test_two_stage_layout_against_a_reference(tmp_path, capsys):
    """Stage 1: squares at x = 0 / 5 / 2 (reference at 0); stage 2 after review: 0 / 1 / 0."""
    from asn.stats.consistency import two_stage_statistics, two_stage_table

    for name, x in (("a", 0), ("b", 5), ("c", 2), ("a2", 0), ("b2", 1), ("c2", 0), ("ref", 0)):
        _write_set(tmp_path / f"{name}.json", [x])
    # the reference may hold more images and annotations than the annotator files
    ref = json.loads((tmp_path / "ref.json").read_text())
    ref["images"].append({"id": 2, "file_name": "000002.png", "width": 40, "height": 20})
    ref["annotations"].append({"id": 99, "image_id": 2, "category_id": 4, "segmentation": _square(0, 0, 5)})
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    stage1 = [tmp_path / f"{n}.json" for n in ("a", "b", "c")]
    stage2 = [tmp_path / f"{n}.json" for n in ("a2", "b2", "c2")]
    result = two_stage_statistics(stage1, stage2, reference=tmp_path / "ref.json")
    columns, rows = two_stage_table(result)
    assert columns == ["annotation", "stage 1", "stage 2"]
    table = {row[0]: row[1:] for row in rows}
    assert table["a"] == pytest.approx([1.0, 1.0])
    assert table["b"] == pytest.approx([50 / 150, 90 / 110])
    assert table["c"] == pytest.approx([80 / 120, 1.0])
    # stage 1 majority = columns 2..11 (see above): IoU 80 / 120 with the reference; stage 2: exact
    assert table["majority_vote"] == pytest.approx([80 / 120, 1.0])
    pairwise1 = (1 / 3 + 80 / 120 + 70 / 130) / 3
    pairwise2 = (90 / 110 + 1.0 + 90 / 110) / 3
    assert table["mean pairwise (between annotators)"] == pytest.approx([pairwise1, pairwise2])
    # the written files carry the layout, and the CLI does the same
    out = tmp_path / "out"
    assert main(["consistency", *map(str, stage1), "--stage2", *map(str, stage2),
                 "--reference", str(tmp_path / "ref.json"), "--out", str(out)]) == 0
    text = (out / "table3.md").read_text()
    assert "| annotation | stage 1 | stage 2 |" in text and "## Stage 2: IoU between annotators" in text
    saved = json.loads((out / "table3.json").read_text())
    assert saved["layout"] == "two_stage" and [s["stage"] for s in saved["stages"]] == [1, 2]
    csv_lines = (out / "table3.csv").read_text().splitlines()
    assert csv_lines[0] == "table,row,column,mean_iou,paper_row,paper_column,paper_mean_iou_kins"
    assert len(csv_lines) == 1 + 16 + 5 * 2  # the 4x4 matrix, then the extra table (5 rows x 2 stages)
    assert csv_lines[1].startswith("stage2_x_stage1,\"a2, stage 2\",\"a, stage 1\",1.0,ann12,ann11,0.836")
    assert "## Extra: each stage against the released annotation" in text


def test_cross_stage_matrix_of_hand_made_squares(tmp_path):
    """The paper's layout: rows = stage-2 sets + their majority vote, columns = stage-1 sets + theirs.

    Squares of side 10 shifted by d px along x overlap with IoU (10 - d) / (10 + d). Stage 1 at
    x = 0 / 5 / 2 (majority: x = 2, see above), stage 2 at x = 0 / 1 / 0 (majority: x = 0)."""
    from asn.stats.consistency import cross_stage_statistics, describe_pattern, diagonal_pattern

    for name, x in (("a", 0), ("b", 5), ("c", 2), ("a2", 0), ("b2", 1), ("c2", 0)):
        _write_set(tmp_path / f"{name}.json", [x])
    result = cross_stage_statistics([tmp_path / f"{n}.json" for n in ("a", "b", "c")],
                                    [tmp_path / f"{n}.json" for n in ("a2", "b2", "c2")])

    def iou(d):
        return (10 - d) / (10 + d)

    rows, columns = [0, 1, 0, 0], [0, 5, 2, 2]
    expected = [[iou(abs(r - c)) for c in columns] for r in rows]
    np.testing.assert_allclose(result["matrix"], expected)
    assert result["rows"] == ["a2, stage 2", "b2, stage 2", "c2, stage 2", "majority_vote, stage 2"]
    assert result["columns"] == ["a, stage 1", "b, stage 1", "c, stage 1", "majority_vote, stage 1"]
    pattern = result["pattern"]
    diagonal = (1 + iou(4) + iou(2)) / 3
    off = (iou(5) + iou(2) + iou(1) + iou(1) + 1 + iou(5)) / 6
    assert pattern["diagonal_mean"] == pytest.approx(diagonal) and pattern["off_diagonal_mean"] == pytest.approx(off)
    assert pattern["diagonal_higher"] and not pattern["majority_highest"]  # majority cell 8/12 < 1
    assert describe_pattern(pattern).endswith("yes; majority-vote cell (0.6667) highest: no")
    # the paper's own matrix shows both parts of its pattern
    from asn import paper

    assert diagonal_pattern(paper.TABLE3["matrix"]) == {
        "diagonal_mean": pytest.approx((0.836 + 0.840 + 0.835) / 3),
        "off_diagonal_mean": pytest.approx((0.802 + 0.805 + 0.809 + 0.818 + 0.804 + 0.816) / 6),
        "diagonal_higher": True, "majority_cell": 0.843, "majority_highest": True}
    # the rendered table: ours, the paper's matrix beside it, each pattern computed
    from asn.stats.consistency import two_stage_statistics, write_consistency_outputs

    full = two_stage_statistics([tmp_path / f"{n}.json" for n in ("a", "b", "c")],
                                [tmp_path / f"{n}.json" for n in ("a2", "b2", "c2")])
    write_consistency_outputs(tmp_path / "out", full, "hand-made", "asn consistency ...")
    text = (tmp_path / "out" / "table3.md").read_text()
    assert "| b2, stage 2 | 0.8182 | 0.4286 | 0.8182 | 0.8182 |" in text
    assert "| annmv2 | 0.8380 | 0.8360 | 0.8370 | 0.8430 |" in text
    assert "Our pattern (computed from the matrix above): diagonal mean 0.6984 > off-diagonal mean 0.6616: yes" in text
    assert "majority-vote cell (0.8430) highest: yes" in text and "paper-reported on KINS" in text
    assert "## Extra: each stage against its majority vote" in text  # no reference given


def test_two_stage_bad_input(tmp_path, capsys):
    from asn.stats.consistency import two_stage_statistics

    for name, x in (("a", 0), ("b", 5), ("a2", 0)):
        _write_set(tmp_path / f"{name}.json", [x])
    with pytest.raises(InputError, match="stage 2 has 1 annotator files, stage 1 has 2"):
        two_stage_statistics([tmp_path / "a.json", tmp_path / "b.json"], [tmp_path / "a2.json"])
    # a reference without the annotators' annotation id: exit 2, file and id named, nothing written
    _write_set(tmp_path / "ref.json", [0])
    ref = json.loads((tmp_path / "ref.json").read_text())
    ref["annotations"][0]["id"] = 77
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    out = tmp_path / "out"
    assert main(["consistency", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                 "--reference", str(tmp_path / "ref.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "ref.json" in err and "annotation 10" in err and "missing from the reference" in err
    assert not out.exists()
    # a stage-2 file that lacks an annotation of stage 1: exit 2 naming that file, nothing written
    _write_set(tmp_path / "b2.json", [0])
    bad = json.loads((tmp_path / "b2.json").read_text())
    bad["annotations"][0]["id"] = 55
    (tmp_path / "b2.json").write_text(json.dumps(bad))
    assert main(["consistency", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                 "--stage2", str(tmp_path / "a2.json"), str(tmp_path / "b2.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "b2.json" in err and "annotation id 10" in err
    assert not out.exists()


def test_stats_finds_both_annotation_stages(tmp_path):
    from asn.stats.report import find_annotator_files, find_stage2_annotator_files

    assert find_annotator_files(tmp_path) == [] and find_stage2_annotator_files(tmp_path) == []
    (tmp_path / "annotators" / "stage2").mkdir(parents=True)
    for name in ("annotators/annotator_2.json", "annotators/annotator_1.json", "annotators/stage2/annotator_1.json",
                 "annotators/stage2/annotator_2.json", "annotators/notes.txt"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in find_annotator_files(tmp_path)] == ["annotator_1.json", "annotator_2.json"]
    assert [p.relative_to(tmp_path).as_posix() for p in find_stage2_annotator_files(tmp_path)] == [
        "annotators/stage2/annotator_1.json", "annotators/stage2/annotator_2.json"]
