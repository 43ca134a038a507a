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
