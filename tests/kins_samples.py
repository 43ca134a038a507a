"""Small hand-written KINS files of both releases, shared by the data-layer tests."""

from __future__ import annotations

import copy

import numpy as np
from pycocotools import mask as mask_utils

W, H = 100, 60
# Instance A is in front of B (same cluster); C overlaps nothing.
POLY_A = [10.0, 10.0, 50.0, 10.0, 50.0, 40.0, 10.0, 40.0]
POLY_B = [30.0, 20.0, 80.0, 20.0, 80.0, 50.0, 30.0, 50.0]
POLY_C = [85.0, 5.0, 95.0, 5.0, 90.0, 15.0]

IMAGES = [
    {"id": 1, "file_name": "000000.png", "width": W, "height": H},
    {"id": 2, "file_name": "000001.png", "width": W, "height": H},
]
CATEGORIES = [{"id": i, "name": n, "supercategory": s} for i, (n, s) in {
    1: ("cyclist", "people"), 2: ("pedestrian", "people"), 3: ("person-sitting", "people"),
    4: ("car", "vehicle"), 5: ("tram", "vehicle"), 6: ("truck", "vehicle"), 7: ("van", "vehicle"),
    8: ("misc", "vehicle")}.items()]


def raster(poly: list[float]) -> np.ndarray:
    """pycocotools rasterization of one polygon as an (H, W) bool mask."""
    return mask_utils.decode(mask_utils.frPyObjects([poly], H, W)[0]).astype(bool)


def expected_masks() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """annotation id -> (amodal mask, inmodal mask) by the segmentation transformation."""
    a, b, c = raster(POLY_A), raster(POLY_B), raster(POLY_C)
    return {1: (a, a), 2: (b, b & ~a), 3: (c, c)}


def _box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1)]


def kins2020() -> dict:
    masks = expected_masks()
    anns = []
    for aid, poly, cat, oco, ico in ((1, POLY_A, 4, 1, 1), (2, POLY_B, 7, 1, 2),
                                     (3, POLY_C, 2, 0, 1)):
        amodal, inmodal = masks[aid]
        anns.append({
            "id": aid, "image_id": 1, "category_id": cat, "iscrowd": 0,
            "a_segm": [poly], "i_segm": [poly] if aid != 2 else [[50.0, 20.0, 80.0, 20.0, 80.0,
                                                                   50.0, 30.0, 50.0, 30.0, 40.0,
                                                                   50.0, 40.0]],
            "a_bbox": _box(amodal), "i_bbox": _box(inmodal),
            "a_area": float(amodal.sum()), "i_area": float(inmodal.sum()),
            "oco_id": oco, "ico_id": ico,
        })
    return {"images": copy.deepcopy(IMAGES), "annotations": anns,
            "categories": copy.deepcopy(CATEGORIES)}


def kins2019() -> dict:
    masks = expected_masks()
    anns = []
    for aid, poly, cat in ((1, POLY_A, 4), (2, POLY_B, 7), (3, POLY_C, 2)):
        amodal, inmodal = masks[aid]
        rle = mask_utils.encode(np.asfortranarray(inmodal.astype(np.uint8)))
        anns.append({
            "id": aid, "image_id": 1, "category_id": cat, "iscrowd": 0,
            "segmentation": [poly], "bbox": _box(amodal), "area": float(amodal.sum()),
            "inmodal_seg": {"size": [H, W], "counts": rle["counts"].decode("ascii")},
            "inmodal_bbox": _box(inmodal),
        })
    return {"images": copy.deepcopy(IMAGES), "annotations": anns,
            "categories": copy.deepcopy(CATEGORIES)}


def write_images(folder, names=("000000.png", "000001.png"), size=(W, H)) -> None:
    """Blank PNGs with the annotated size, so the image check passes."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", size).save(folder / name)
