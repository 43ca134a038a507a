"""KINS reader/validator/writer: schema round trips and every bad-input case."""

from __future__ import annotations

import json

import numpy as np
import pytest

from asn.data import kins
from asn.errors import InputError
from kins_samples import kins2019, kins2020


def _write(tmp_path, data, name="update_train_2020.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("make, name, release", [
    (kins2020, "update_train_2020.json", "2020"),
    (kins2019, "instances_train.json", "2019"),
])
def test_round_trip(tmp_path, make, name, release):
    src = _write(tmp_path, make(), name)
    first = kins.read_kins(src, strict=True)
    assert first.release == release
    assert not first.problems
    out = tmp_path / f"again_{name}"
    kins.write_kins(out, first.images.values(), first.instances, release, first.categories)
    second = kins.read_kins(out, strict=True)
    assert second.release == release
    assert second.images == first.images
    assert second.instances == first.instances
    # Writing what was read gives back the original records.
    assert json.loads(out.read_text())["annotations"] == make()["annotations"]


def test_release_detection_by_name_for_empty_file(tmp_path):
    data = {"images": [], "annotations": [], "categories": []}
    assert kins.read_kins(_write(tmp_path, data, "update_test_2020.json")).release == "2020"
    assert kins.read_kins(_write(tmp_path, data, "instances_val.json")).release == "2019"
    with pytest.raises(InputError, match="cannot tell the KINS release"):
        kins.read_kins(_write(tmp_path, data, "mystery.json"))


def _ann(data, aid):
    return next(a for a in data["annotations"] if a["id"] == aid)


def _set(aid, key, value):
    def mutate(d):
        _ann(d, aid)[key] = value
    return mutate


def _delete(aid, key):
    def mutate(d):
        del _ann(d, aid)[key]
    return mutate


def _duplicate(d):
    d["annotations"].append(dict(d["annotations"][0]))


# (mutation of the 2020 sample, problem kind, words the message must contain)
BAD_2020 = [
    (_delete(2, "a_segm"), "missing_key", "lacks a_segm"),
    (_set(2, "category_id", "car"), "unknown_category", "unknown category_id"),
    (_set(2, "category_id", 42), "unknown_category", "unknown category_id 42"),
    (_set(2, "a_segm", [[1.0, 2.0, 3.0, 4.0]]), "too_few_points", "at least 3"),
    (_set(2, "a_segm", [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]), "odd_coordinates", "odd number"),
    (_set(2, "a_segm", [[1.0, 2.0, 3.0, 4.0, 900.0, 6.0]]), "far_outside", "far outside"),
    (_set(2, "a_segm", [[1.0, 2.0, float("nan"), 4.0, 5.0, 6.0]]), "nan_coordinates", "NaN"),
    (_set(2, "a_segm", "oops"), "wrong_type", "must be a list"),
    (_set(2, "image_id", 77), "missing_image", "image 77"),
    (_set(2, "oco_id", -1), "bad_order", "oco_id"),
    (_duplicate, "duplicate_annotation_id", "duplicate annotation id 1"),
]


@pytest.mark.parametrize("mutate, kind, words", BAD_2020, ids=[b[1] + str(i) for i, b in
                                                               enumerate(BAD_2020)])
def test_bad_records_2020(tmp_path, mutate, kind, words):
    data = kins2020()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(InputError) as err:
        kins.read_kins(path, strict=True)
    message = str(err.value)
    assert message.startswith(str(path)) and words in message and "annotation" in message
    lenient = kins.read_kins(path, strict=False)
    assert lenient.counts("dropped") == {kind: 1}
    # The bad record is dropped, every other one kept.
    assert len(lenient.instances) == len(data["annotations"]) - 1
    assert all(p.file == str(path) for p in lenient.problems)


def test_nonpositive_box_is_repaired(tmp_path):
    data = kins2020()
    _ann(data, 3)["a_bbox"] = [85.0, 5.0, 0.0, 10.0]
    path = _write(tmp_path, data)
    with pytest.raises(InputError, match="non-positive size"):
        kins.read_kins(path, strict=True)
    lenient = kins.read_kins(path)
    assert lenient.counts("repaired") == {"nonpositive_bbox": 1}
    assert len(lenient.instances) == 3
    assert next(i for i in lenient.instances if i.id == 3).amodal_bbox is None


def test_slightly_outside_points_are_clipped(tmp_path):
    data = kins2020()
    _ann(data, 3)["a_segm"] = [[85.0, -3.0, 103.0, 5.0, 90.0, 15.0]]
    lenient = kins.read_kins(_write(tmp_path, data))
    assert lenient.counts("repaired") == {"clipped_to_image": 1}
    poly = next(i for i in lenient.instances if i.id == 3).amodal_polygons[0]
    assert poly == [85.0, 0.0, 100.0, 5.0, 90.0, 15.0]


def test_rle_size_mismatch_2019(tmp_path):
    data = kins2019()
    _ann(data, 2)["inmodal_seg"]["size"] = [61, 100]
    path = _write(tmp_path, data, "instances_train.json")
    with pytest.raises(InputError, match=r"annotation 2: inmodal_seg size 61x100 differs"):
        kins.read_kins(path, strict=True)
    assert kins.read_kins(path).counts("dropped") == {"rle_size_mismatch": 1}


@pytest.mark.parametrize("text, words", [
    ("{\"images\": [", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ("{\"images\": []}", "missing top-level key 'annotations'"),
])
def test_whole_file_errors_raise_even_when_lenient(tmp_path, text, words):
    path = tmp_path / "update_train_2020.json"
    path.write_text(text)
    with pytest.raises(InputError, match=words):
        kins.read_kins(path, strict=False)


def test_bad_image_entries(tmp_path):
    data = kins2020()
    data["images"].append({"id": 3, "file_name": "000002.png", "width": 0, "height": 60})
    data["images"].append({"id": 1, "file_name": "000003.png", "width": 100, "height": 60})
    result = kins.read_kins(_write(tmp_path, data))
    assert result.counts("dropped") == {"bad_image_size": 1, "duplicate_image_id": 1}
    assert sorted(result.images) == [1, 2]


def test_nan_box_is_repaired(tmp_path):
    data = kins2020()
    _ann(data, 1)["i_bbox"] = [float("nan"), 1.0, 2.0, 3.0]
    path = tmp_path / "update_train_2020.json"
    path.write_text(json.dumps(data))  # the standard library writes a NaN literal
    result = kins.read_kins(path)
    assert result.counts("repaired") == {"nan_bbox": 1}
    assert len(result.instances) == 3


def test_fast_polygon_screen_agrees_with_slow_checks():
    """Every polygon the vectorized screen passes must also pass the exact per-value checks."""
    rng = np.random.default_rng(0)
    entries, sizes = [], []
    for _ in range(300):
        n = int(rng.integers(2, 8))
        poly = rng.uniform(-30, 130, size=2 * n).round(2).tolist()
        if rng.random() < 0.1:
            poly = poly[:-1]
        if rng.random() < 0.05:
            poly[0] = float("nan")
        entries.append([poly])
        sizes.append((100, 60))
    codes = kins._polygon_codes(entries, sizes)
    img = kins.Image(1, "x.png", 100, 60)
    for entry, code in zip(entries, codes):
        chk = kins._Checker("x.json", strict=False)
        kins._check_polygons(entry, "a_segm", img, 1, chk)
        assert (code == kins._OK) == (not chk.problems)
