"""AmodalDataset, GroupedBatchSampler, collate and build_loader on real synthetic data.

The module renders a tiny synthetic KINS world once (6 training images), converts it with
`asn convert`, and checks the served targets against the decoded masks themselves; tests
that damage files work on a private copy.
"""

from __future__ import annotations

import ast
import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from asn.cli import main
from asn.data.dataset import (
    AmodalDataset,
    GroupedBatchSampler,
    aug_seed,
    build_loader,
    collate,
    data_hash,
    occlusion_ratios_from_masks,
)
from asn.errors import InputError
from asn.model.targets import validate_targets
from asn.model.transform import AmodalRCNNTransform

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Paths of a converted synthetic world: gt dir, split, images dir."""
    root = tmp_path_factory.mktemp("dataset_world")
    assert main(["synth", "--out", str(root / "raw"), "--train", "6", "--test", "1",
                 "--seed", "0", "--workers", "1", "--no-progress"]) == 0
    images = root / "raw" / "training" / "image_2"
    assert main(["convert", "--kins", str(root / "raw"), "--split", "train", "--images",
                 str(images), "--out", str(root / "gt"), "--workers", "1"]) == 0
    return {"gt": root / "gt", "images": images}


@pytest.fixture
def private_world(world, tmp_path) -> dict:
    """A copy of the world that a test may damage."""
    shutil.copytree(world["gt"], tmp_path / "gt")
    shutil.copytree(world["images"], tmp_path / "images")
    return {"gt": tmp_path / "gt", "images": tmp_path / "images"}


def _dataset(w: dict, **kwargs) -> AmodalDataset:
    return AmodalDataset(w["gt"], "train", w["images"], **kwargs)


def _mask_bbox(mask: torch.Tensor) -> list[float]:
    """xyxy (exclusive max) box of a (H, W) mask."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _save(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data))


def _assert_one_line(exc: InputError, file_part: str, image_id) -> None:
    text = str(exc)
    assert "\n" not in text
    assert file_part in text, text
    assert f"image {image_id}" in text, text


# --- targets ---------------------------------------------------------------------------------


def test_targets_match_decoded_masks(world):
    ds = _dataset(world)
    amodal = _load(world["gt"] / "train_amodal.json")
    assert ds.image_ids == [im["id"] for im in amodal["images"]]
    assert ds.aspect_ratios == [im["width"] / im["height"] for im in amodal["images"]]
    assert ds.category_ids == sorted(c["id"] for c in amodal["categories"])
    total = 0
    for k in range(len(ds)):
        image, target = ds[k]
        info = ds.image_info(k)
        h, w = info["height"], info["width"]
        n = len([a for a in amodal["annotations"] if a["image_id"] == info["id"]])
        assert image.shape == (3, h, w) and image.dtype == torch.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and float(image.max()) > 0.5
        assert target["image_id"].dtype == torch.int64 and target["image_id"].dim() == 0
        assert int(target["image_id"]) == info["id"]
        assert target["boxes"].shape == (n, 4) and target["boxes"].dtype == torch.float32
        assert target["labels"].shape == (n,) and target["labels"].dtype == torch.int64
        for key in ("amodal_masks", "inmodal_masks"):
            assert target[key].shape == (n, h, w) and target[key].dtype == torch.uint8
            assert set(target[key].unique().tolist()) <= {0, 1}
        assert target["occlusion_ratios"].shape == (n,)
        assert target["occlusion_ratios"].dtype == torch.float32
        a_masks, i_masks = target["amodal_masks"], target["inmodal_masks"]
        for box, a_mask in zip(target["boxes"], a_masks):
            assert np.allclose(box.tolist(), _mask_bbox(a_mask), atol=1.0)
        # visible part inside the amodal mask, ratio = 1 - |inmodal| / |amodal|
        assert not (i_masks.bool() & ~a_masks.bool()).any()
        assert (i_masks.flatten(1).sum(1) > 0).all()
        assert torch.allclose(target["occlusion_ratios"],
                              occlusion_ratios_from_masks(a_masks, i_masks), atol=0.02)
        # the model's own target check accepts it as is
        validate_targets([image], [target], num_classes=len(ds.category_ids) + 1,
                         need_amodal_masks=True, need_inmodal_masks=True,
                         need_occlusion_ratios=True)
        total += n
    assert total > 20
    assert any(float(r) > 0.1 for k in range(len(ds)) for r in ds[k][1]["occlusion_ratios"])


def test_label_mapping_and_label_map(world):
    amodal = _load(world["gt"] / "train_amodal.json")
    ds = _dataset(world)
    names = {c["id"]: c["name"] for c in amodal["categories"]}
    assert ds.class_names == [names[c] for c in ds.category_ids]
    assert ds.label_to_category == {k + 1: c for k, c in enumerate(ds.category_ids)}
    label_map = ds.label_map()
    assert json.loads(json.dumps(label_map)) == label_map
    assert label_map["label_of_category"] == {str(c): k + 1 for k, c in enumerate(ds.category_ids)}
    # the labels of an image are its annotations' categories through the map, in file order
    first = ds.image_ids[0]
    cats = [a["category_id"] for a in amodal["annotations"] if a["image_id"] == first]
    assert [ds.label_to_category[int(l)] for l in ds[0][1]["labels"]] == cats

    # a subset in a chosen order: car -> 1, pedestrian -> 2; other classes are left out
    sub = _dataset(world, category_ids=[4, 2])
    assert sub.label_to_category == {1: 4, 2: 2} and sub.class_names == ["car", "pedestrian"]
    for k in range(len(sub)):
        full_t, sub_t = ds[k][1], sub[k][1]
        keep = [ds.label_to_category[int(l)] in (4, 2) for l in full_t["labels"]]
        assert torch.equal(sub_t["boxes"], full_t["boxes"][keep])
        expected = [sub.category_to_label[ds.label_to_category[int(l)]]
                    for l in full_t["labels"][keep]]
        assert sub_t["labels"].tolist() == expected
    with pytest.raises(InputError, match="category ids \\[3\\]"):
        _dataset(world, category_ids=[4, 3])


def test_segmentation_formats_and_crowd(private_world):
    """Polygons, compressed and uncompressed RLE give the same masks in either file; crowd
    annotations are left out."""
    ref_image, ref = _dataset(private_world)[0]
    a_path = private_world["gt"] / "train_amodal.json"
    i_path = private_world["gt"] / "train_inmodal.json"
    amodal, inmodal = _load(a_path), _load(i_path)
    images = {im["id"]: im for im in amodal["images"]}
    for ann_a, ann_i in zip(amodal["annotations"], inmodal["annotations"]):
        im = images[ann_a["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(ann_a["segmentation"], im["height"], im["width"]))
        ann_a["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        mask = mask_utils.decode({"size": ann_i["segmentation"]["size"],
                                  "counts": ann_i["segmentation"]["counts"].encode()})
        # uncompressed RLE: column-major run lengths starting with a 0-run
        flat = mask.flatten(order="F")
        change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])) != 0)
        ann_i["segmentation"] = {"size": [im["height"], im["width"]],
                                 "counts": np.diff(np.concatenate([[0], change])).tolist()}
    _save(a_path, amodal)
    _save(i_path, inmodal)
    _, target = _dataset(private_world)[0]
    for key in ("amodal_masks", "inmodal_masks", "boxes", "labels"):
        assert torch.equal(target[key], ref[key]), key

    first = [a for a in amodal["annotations"] if a["image_id"] == amodal["images"][0]["id"]][0]
    first["iscrowd"] = 1
    _save(a_path, amodal)
    _, target = _dataset(private_world)[0]
    assert len(target["labels"]) == len(ref["labels"]) - 1
    assert torch.equal(target["amodal_masks"], ref["amodal_masks"][1:])


def test_empty_target_image(private_world):
    a_path = private_world["gt"] / "train_amodal.json"
    i_path = private_world["gt"] / "train_inmodal.json"
    amodal, inmodal = _load(a_path), _load(i_path)
    empty_id = amodal["images"][1]["id"]
    for data, path in ((amodal, a_path), (inmodal, i_path)):
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] != empty_id]
        _save(path, data)
    ds = _dataset(private_world, flip_prob=1.0)
    for key in (1, (1, 7)):
        image, target = ds[key]
        h, w = image.shape[-2:]
        assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
        assert target["labels"].shape == (0,) and target["labels"].dtype == torch.int64
        assert target["amodal_masks"].shape == (0, h, w) == target["inmodal_masks"].shape
        assert target["amodal_masks"].dtype == torch.uint8
        assert target["occlusion_ratios"].shape == (0,)
        validate_targets([image], [target], num_classes=8, need_amodal_masks=True,
                         need_inmodal_masks=True, need_occlusion_ratios=True)
    images, targets = collate([ds[0], ds[1]])
    assert len(images) == 2 and int(targets[1]["image_id"]) == empty_id


# --- augmentation ----------------------------------------------------------------------------


def test_flip_acts_on_everything_identically(world):
    plain = _dataset(world)
    aug = _dataset(world, flip_prob=0.5)
    flips = {s: np.random.default_rng(s).random() < 0.5 for s in range(20)}
    seed_flip = next(s for s, f in flips.items() if f)
    seed_keep = next(s for s, f in flips.items() if not f)
    image, target = plain[0]
    width = image.shape[-1]

    same_image, same = aug[(0, seed_keep)]
    assert torch.equal(same_image, image) and torch.equal(same["boxes"], target["boxes"])
    assert torch.equal(aug[0][0], image)  # an int key never augments

    f_image, flipped = aug[(0, seed_flip)]
    assert torch.equal(f_image, image.flip(-1))
    for key in ("amodal_masks", "inmodal_masks"):
        assert torch.equal(flipped[key], target[key].flip(-1))
    boxes = target["boxes"]
    assert torch.equal(flipped["boxes"][:, 0], width - boxes[:, 2])
    assert torch.equal(flipped["boxes"][:, 2], width - boxes[:, 0])
    assert torch.equal(flipped["boxes"][:, 1::2], boxes[:, 1::2])
    for box, mask in zip(flipped["boxes"], flipped["amodal_masks"]):
        assert np.allclose(box.tolist(), _mask_bbox(mask), atol=1.0)
    for key in ("labels", "occlusion_ratios", "image_id"):
        assert torch.equal(flipped[key], target[key])
    # a pure function of (index, aug_seed)
    again_image, again = aug[(0, seed_flip)]
    assert torch.equal(again_image, f_image) and torch.equal(again["boxes"], flipped["boxes"])
    assert torch.equal(_dataset(world, flip_prob=1.0)[(0, seed_keep)][0], image.flip(-1))
    assert torch.equal(plain[(0, seed_flip)][0], image)  # flip_prob 0: never


def test_multiscale_resize_keeps_masks_and_boxes_together(world):
    ds = _dataset(world, flip_prob=0.5)
    transform = AmodalRCNNTransform(min_size=(96, 128), max_size=416,
                                    image_mean=[0.485, 0.456, 0.406],
                                    image_std=[0.229, 0.224, 0.225])
    transform.train()
    torch.manual_seed(0)
    checked, sizes = 0, set()
    for key in [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (1, 6)]:
        image, target = ds[key]
        original = {k: v.clone() for k, v in target.items()}
        batch, (resized,) = transform([image], [target])
        h, w = batch.image_sizes[0]
        sizes.add((h, w))
        scale_y, scale_x = h / image.shape[-2], w / image.shape[-1]
        assert resized["amodal_masks"].shape[-2:] == (h, w) == resized["inmodal_masks"].shape[-2:]
        expected = original["boxes"] * torch.tensor([scale_x, scale_y, scale_x, scale_y])
        assert torch.allclose(resized["boxes"], expected, atol=1e-3)
        for box, a_mask, i_mask in zip(resized["boxes"], resized["amodal_masks"],
                                       resized["inmodal_masks"]):
            assert not (i_mask.bool() & ~a_mask.bool()).any()
            if a_mask.sum() == 0:  # a sliver thinner than a resized pixel may vanish
                continue
            assert np.allclose(box.tolist(), _mask_bbox(a_mask), atol=2.0)
            checked += 1
    assert checked > 30
    assert len(sizes) == 2  # both scales drawn


# --- sampler ---------------------------------------------------------------------------------


def _take(sampler, n: int) -> list:
    it = iter(sampler)
    return [next(it) for _ in range(n)]


RATIOS = [3.3, 0.5, 1.0, 2.0, 0.8, 3.3, 3.3, 0.6, 1.5, 3.3, 0.9]  # 7 wide, 4 tall


def test_sampler_deterministic_resume_and_parts():
    stream = _take(GroupedBatchSampler(RATIOS, 4, seed=3), 40)
    assert stream == _take(GroupedBatchSampler(RATIOS, 4, seed=3), 40)
    assert stream != _take(GroupedBatchSampler(RATIOS, 4, seed=4), 40)
    for k in (1, 2, 5, 17, 33):
        assert _take(GroupedBatchSampler(RATIOS, 4, seed=3, start_iteration=k), 40 - k) == stream[k:]
    parts = [_take(GroupedBatchSampler(RATIOS, 4, seed=3, part=r, num_parts=2), 40)
             for r in range(2)]
    assert [a + b for a, b in zip(*parts)] == stream
    resumed = _take(GroupedBatchSampler(RATIOS, 4, seed=3, start_iteration=9, part=1,
                                        num_parts=4), 10)
    assert resumed == [b[1:2] for b in stream[9:19]]
    # every resume point, also with a batch larger than the tall group (no batch in an epoch)
    for batch_size in (2, 8):
        full = _take(GroupedBatchSampler(RATIOS, batch_size, seed=1), 30)
        for k in range(30):
            assert _take(GroupedBatchSampler(RATIOS, batch_size, seed=1, start_iteration=k),
                         30 - k) == full[k:]
    # iterating twice restarts the stream
    sampler = GroupedBatchSampler(RATIOS, 4, seed=3, start_iteration=2)
    assert _take(sampler, 3) == _take(sampler, 3) == stream[2:5]


def test_sampler_groups_and_epochs():
    seed, batch_size = 11, 3
    stream = _take(GroupedBatchSampler(RATIOS, batch_size, seed=seed), 60)
    # recover (epoch, position) of every item from its aug seed
    where = {aug_seed(seed, e, p): (e, p) for e in range(20) for p in range(len(RATIOS))}
    seen: dict[int, list[int]] = {}
    for batch in stream:
        assert len(batch) == batch_size
        assert len({RATIOS[i] >= 1 for i, _ in batch}) == 1  # one aspect group per batch
        for index, s in batch:
            e, p = where[s]
            assert np.random.default_rng([seed, e]).permutation(len(RATIOS))[p] == index
            seen.setdefault(e, []).append(index)
    last = max(seen)
    for e in range(last - 1):  # complete epochs: every index once, apart from carried items
        assert len(seen[e]) == len(set(seen[e]))
        assert len(RATIOS) - len(seen[e]) <= 2 * (batch_size - 1)
    assert sum(len(v) for v in seen.values()) == 60 * batch_size
    # all-wide data with a batch that divides it: exactly one pass per epoch, no carry
    stream = _take(GroupedBatchSampler([2.0] * 6, 3, seed=0), 6)
    for epoch in range(3):
        indices = [i for b in stream[2 * epoch: 2 * epoch + 2] for i, _ in b]
        assert sorted(indices) == list(range(6))


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 3, "num_parts": 2}, "not divisible"),
    ({"part": 2, "num_parts": 2}, "part"),
    ({"seed": -1}, "seed"),
    ({"start_iteration": -2}, "start_iteration"),
    ({"aspect_ratios": []}, "empty"),
    ({"aspect_ratios": [1.0, float("nan")]}, "finite"),
])
def test_sampler_refuses_bad_arguments(kwargs, message):
    args = {"aspect_ratios": [1.0, 2.0], "batch_size": 2, "seed": 0, **kwargs}
    ratios, batch_size = args.pop("aspect_ratios"), args.pop("batch_size")
    with pytest.raises(ValueError, match=message):
        GroupedBatchSampler(ratios, batch_size, **args)


# --- loader ----------------------------------------------------------------------------------


def test_loader_identical_for_0_and_2_workers(world):
    ds = _dataset(world, flip_prob=0.5)
    results = []
    for workers in (0, 2):
        sampler = GroupedBatchSampler(ds.aspect_ratios, 2, seed=5, start_iteration=1)
        with build_loader(ds, sampler, num_workers=workers) as loader:
            it = iter(loader)
            results.append([next(it) for _ in range(4)])
    for (images0, targets0), (images2, targets2) in zip(*results):
        assert len(images0) == len(images2) == 2
        for a, b in zip(images0, images2):
            assert torch.equal(a, b)
        for a, b in zip(targets0, targets2):
            assert a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) for k in a)
    # and equal to direct indexing with the sampler's keys
    first_keys = next(iter(GroupedBatchSampler(ds.aspect_ratios, 2, seed=5, start_iteration=1)))
    assert torch.equal(results[0][0][0][0], ds[first_keys[0]][0])


# --- bad input -------------------------------------------------------------------------------


def _damage(w: dict, kind: str) -> tuple[int, int, str]:
    """Damage image #2 of a private world; returns (index, image id, expected text)."""
    ds = _dataset(w)
    index, info = 2, ds.image_info(2)
    path = w["images"] / info["file_name"]
    if kind == "missing":
        path.unlink()
        text = "image file not found"
    elif kind == "wrong size":
        Image.open(path).convert("RGB").resize((info["width"] // 2, info["height"])).save(path)
        text = f"image is {info['width'] // 2}x{info['height']}"
    else:  # corrupt: valid header, truncated pixel data
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        text = "cannot read image"
    return index, info["id"], text


@pytest.mark.parametrize("kind", ["missing", "wrong size", "corrupt"])
def test_bad_image_is_one_line_error(private_world, kind):
    index, image_id, text = _damage(private_world, kind)
    ds = _dataset(private_world)
    name = ds.image_info(index)["file_name"]
    with pytest.raises(InputError, match=text) as info:
        ds[index]
    _assert_one_line(info.value, name, image_id)
    if kind != "corrupt":  # header-only check: truncated pixel data passes it
        with pytest.raises(InputError, match=text) as info:
            ds.check_images()
        _assert_one_line(info.value, name, image_id)
    else:
        ds.check_images()
    ds[index - 1]  # the others still load


def test_bad_images_through_workers(private_world):
    """An InputError in a worker arrives as the same one-line InputError, for the first bad
    batch in sampler order."""
    ds = _dataset(private_world)
    missing = ds.image_info(2)
    corrupt = ds.image_info(4)
    (private_world["images"] / missing["file_name"]).unlink()
    path = private_world["images"] / corrupt["file_name"]
    path.write_bytes(path.read_bytes()[:500])
    for batches, bad, text in (
        ([[(0, 1), (1, 2)], [(3, 3), (2, 4)], [(5, 5), (4, 6)]], missing, "image file not found"),
        ([[(0, 1), (1, 2)], [(4, 3), (5, 4)], [(2, 5), (3, 6)]], corrupt, "cannot read image"),
    ):
        with build_loader(ds, batches, num_workers=2) as loader:
            it = iter(loader)
            images, _ = next(it)
            assert len(images) == 2
            with pytest.raises(InputError, match=text) as info:
                next(it)
        _assert_one_line(info.value, bad["file_name"], bad["id"])
        assert not isinstance(info.value, RuntimeError)


def test_mismatched_or_missing_pair(private_world):
    a_path = private_world["gt"] / "train_amodal.json"
    i_path = private_world["gt"] / "train_inmodal.json"
    original = _load(i_path)

    changed = copy.deepcopy(original)
    dropped = changed["annotations"].pop(3)
    _save(i_path, changed)
    with pytest.raises(InputError, match="annotation ids differ") as info:
        _dataset(private_world)
    assert "train_inmodal.json" in str(info.value) and str(dropped["id"]) in str(info.value)

    changed = copy.deepcopy(original)
    changed["images"][0]["id"] = 999
    _save(i_path, changed)
    with pytest.raises(InputError, match="image ids differ") as info:
        _dataset(private_world)
    assert "train_inmodal.json" in str(info.value) and "999" in str(info.value)

    changed = copy.deepcopy(original)
    changed["annotations"][0]["category_id"] = 8 if changed["annotations"][0]["category_id"] != 8 else 4
    _save(i_path, changed)
    with pytest.raises(InputError, match="category_id differ"):
        _dataset(private_world)

    i_path.unlink()
    with pytest.raises(InputError, match="file not found") as info:
        _dataset(private_world)
    assert "train_inmodal.json" in str(info.value)

    amodal = _load(a_path)
    amodal["annotations"][0]["bbox"] = [1, 2, 0, 5]
    _save(a_path, amodal)
    _save(i_path, original)
    with pytest.raises(InputError, match="bbox") as info:
        _dataset(private_world)
    assert f"annotation {amodal['annotations'][0]['id']}" in str(info.value)


def test_corrupt_rle_is_an_input_error(private_world):
    i_path = private_world["gt"] / "train_inmodal.json"
    inmodal = _load(i_path)
    ann = inmodal["annotations"][0]
    ann["segmentation"]["counts"] = ann["segmentation"]["counts"][:-3]
    _save(i_path, inmodal)
    ds = _dataset(private_world)  # segmentations are checked when an item loads
    with pytest.raises(InputError, match="corrupt") as info:
        ds[0]
    assert f"annotation {ann['id']}" in str(info.value)
    assert "train_inmodal.json" in str(info.value)


# --- data hash -------------------------------------------------------------------------------


def test_data_hash(world, private_world):
    reference = data_hash(world["gt"], "train", world["images"])
    assert len(reference) == 64
    # a fresh copy (new mtimes, other folder) hashes the same
    assert data_hash(private_world["gt"], "train", private_world["images"]) == reference
    image = sorted(private_world["images"].iterdir())[0]
    image.write_bytes(image.read_bytes() + b"\0")
    assert data_hash(private_world["gt"], "train", private_world["images"]) != reference
    image.unlink()
    with pytest.raises(InputError, match="image file not found"):
        data_hash(private_world["gt"], "train", private_world["images"])


# --- layering --------------------------------------------------------------------------------


def test_data_imports_no_layer_above_it():
    """asn.data is the bottom layer: not even a lazy import (inside a function) of the model,
    engine or evaluation packages, which all read the data."""
    above = ("asn.model", "asn.engine", "asn.eval")
    package = Path(__file__).resolve().parents[1] / "src" / "asn" / "data"
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{path.name}:{node.lineno} {name}" for name in names
                      if any(name == top or name.startswith(top + ".") for top in above)]
    assert not found, found
    import asn.model.targets  # the model keeps its name for the data's rule

    assert asn.model.targets.occlusion_ratios_from_masks is occlusion_ratios_from_masks
