"""Per-split statistics of a normalized ground-truth folder, one process per split.

:func:`split_statistics` loads ``<split>_amodal.json`` and ``<split>_inmodal.json`` (orjson),
checks that they describe the same images and annotation ids, and returns compact numpy
arrays (per instance, per image, per cluster) plus the seconds spent in JSON loading, mask
decoding / contour tracing, shapely and pycocotools overlap work. :func:`compute_statistics`
runs the splits in a process pool (one split per worker) so both cores are busy.
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from asn.errors import InputError
from asn.io import gc_paused, read_json
from asn.stats.boxes import image_box_consistency
from asn.stats.clusters import image_overlap_stats, max_order_per_cluster
from asn.stats.shapes import polygon_segment_measures, rle_segment_measures


def _require(obj: Any, key: str, path: Path, record: str | None = None) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise InputError(path, f"missing key {key!r}", record)
    return obj[key]


def _optional_int(value: Any) -> int:
    """Order ids may be null (a release without orders): -1 stands for null."""
    return -1 if value is None else int(value)


def load_split_pair(gt_dir: str | Path, split: str) -> tuple[dict, dict, Path, Path]:
    """Load and cross-check the amodal and inmodal files of a split.

    Raises InputError naming the file and the id when the image sets differ or an
    annotation id is missing from one of the files.
    """
    gt_dir = Path(gt_dir)
    amodal_path = gt_dir / f"{split}_amodal.json"
    inmodal_path = gt_dir / f"{split}_inmodal.json"
    for path in (amodal_path, inmodal_path):
        if not path.is_file():
            raise InputError(path, "file not found (expected the output of `asn convert`)")
    with gc_paused():
        amodal = read_json(amodal_path)
        inmodal = read_json(inmodal_path)
    for data, path in ((amodal, amodal_path), (inmodal, inmodal_path)):
        for key in ("images", "annotations"):
            if not isinstance(_require(data, key, path), list):
                raise InputError(path, f"{key!r} must be a list")
    amodal_images = {_require(im, "id", amodal_path, "image"): im for im in amodal["images"]}
    inmodal_image_ids = {_require(im, "id", inmodal_path, "image") for im in inmodal["images"]}
    if set(amodal_images) != inmodal_image_ids:
        only_a = sorted(set(amodal_images) - inmodal_image_ids)
        only_i = sorted(inmodal_image_ids - set(amodal_images))
        if only_a:
            raise InputError(inmodal_path, f"image id {only_a[0]} of {amodal_path.name} is missing "
                             f"({len(only_a)} missing in all)", f"image {only_a[0]}")
        raise InputError(amodal_path, f"image id {only_i[0]} of {inmodal_path.name} is missing "
                         f"({len(only_i)} missing in all)", f"image {only_i[0]}")
    amodal_ids = [_require(a, "id", amodal_path, "annotation") for a in amodal["annotations"]]
    inmodal_ids = [_require(a, "id", inmodal_path, "annotation") for a in inmodal["annotations"]]
    if amodal_ids != inmodal_ids:
        set_a, set_i = set(amodal_ids), set(inmodal_ids)
        missing_i = [i for i in amodal_ids if i not in set_i]
        missing_a = [i for i in inmodal_ids if i not in set_a]
        if missing_i:
            raise InputError(inmodal_path, f"annotation id {missing_i[0]} of {amodal_path.name} is "
                             f"missing ({len(missing_i)} missing in all)", f"annotation {missing_i[0]}")
        if missing_a:
            raise InputError(amodal_path, f"annotation id {missing_a[0]} of {inmodal_path.name} is "
                             f"missing ({len(missing_a)} missing in all)", f"annotation {missing_a[0]}")
        if len(set_a) != len(amodal_ids):
            raise InputError(amodal_path, "duplicate annotation ids")
        # same ids in another order: align the inmodal list to the amodal one
        by_id = {a["id"]: a for a in inmodal["annotations"]}
        inmodal["annotations"] = [by_id[i] for i in amodal_ids]
    return amodal, inmodal, amodal_path, inmodal_path


def _inmodal_rle(ann: dict, image: dict, path: Path) -> dict:
    segmentation = ann.get("segmentation")
    if not isinstance(segmentation, dict) or "counts" not in segmentation:
        raise InputError(path, "inmodal segmentation must be an RLE dict {size, counts}",
                         f"annotation {ann.get('id')}")
    if isinstance(segmentation["counts"], list):  # uncompressed RLE: compress once
        h, w = segmentation["size"]
        segmentation = mask_utils.frPyObjects(segmentation, h, w)
    return segmentation


def split_statistics(
    gt_dir: str | Path,
    split: str,
    label_dir: str | Path | None = None,
    chunk_pixels: int = 20_000_000,
    n_vis: int = 0,
) -> dict[str, Any]:
    """All per-split statistics (see the module docstring).

    Args:
        gt_dir: normalized ground-truth folder.
        split: ``train`` or ``test``.
        label_dir: KITTI ``label_2`` folder for Figure 4(b), or None to skip it.
        chunk_pixels: window pixels decoded at once for inmodal masks.
        n_vis: return the annotations of the first ``n_vis`` images with instances (``vis``).
    Returns:
        dict with per-instance arrays (``category_id``, ``occlusion_ratio``, ``image_index``,
        ``amodal_*`` / ``inmodal_*`` shape measures, ``match_number``), per-image arrays
        (``n_instances``, ``covered_fraction``, ``width``, ``height``), ``file_names``,
        ``image_ids``, ``cluster_max_order``, optional ``box_*`` arrays and ``timings``.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    amodal, inmodal, amodal_path, inmodal_path = load_split_pair(gt_dir, split)
    timings["json_load"] = time.perf_counter() - t0

    images = sorted(amodal["images"], key=lambda im: im["id"])
    image_index = {im["id"]: i for i, im in enumerate(images)}
    annotations = amodal["annotations"]
    inmodal_annotations = inmodal["annotations"]
    n = len(annotations)
    segmentations = []
    ann_image = np.zeros(n, np.int64)
    for k, ann in enumerate(annotations):
        segmentation = ann.get("segmentation")
        if not isinstance(segmentation, list):
            raise InputError(amodal_path, "amodal segmentation must be a list of polygons",
                             f"annotation {ann.get('id')}")
        if segmentation and not isinstance(segmentation[0], list):
            segmentation = [segmentation]  # a single flat polygon
        segmentations.append(segmentation)
        try:
            ann_image[k] = image_index[ann["image_id"]]
        except KeyError:
            raise InputError(amodal_path, f"image_id {ann.get('image_id')} is not in images",
                             f"annotation {ann.get('id')}") from None
    category_id = np.fromiter((a.get("category_id", 0) for a in annotations), np.int64, n)
    occlusion_ratio = np.fromiter(
        (a.get("occlusion_ratio") if a.get("occlusion_ratio") is not None else np.nan for a in annotations),
        np.float64, n,
    )
    oco_id = np.fromiter((_optional_int(a.get("oco_id")) for a in annotations), np.int64, n)
    ico_id = np.fromiter((_optional_int(a.get("ico_id")) for a in annotations), np.int64, n)
    inmodal_rles = [
        _inmodal_rle(a, images[ann_image[k]], inmodal_path) for k, a in enumerate(inmodal_annotations)
    ]
    inmodal_boxes = np.asarray([a.get("bbox") or [0, 0, 0, 0] for a in inmodal_annotations],
                               np.float64).reshape(-1, 4)
    # reading the records into arrays is part of the loading cost
    timings["json_load"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    amodal_measures = polygon_segment_measures(segmentations)
    timings["shapely"] = time.perf_counter() - t1
    inmodal_measures = rle_segment_measures(inmodal_rles, inmodal_boxes, chunk_pixels, timings)

    t2 = time.perf_counter()
    order = np.argsort(ann_image, kind="stable")
    bounds = np.searchsorted(ann_image[order], np.arange(len(images) + 1))
    match_number = np.zeros(n, np.int64)
    covered_fraction = np.zeros(len(images))
    for i, image in enumerate(images):
        members = order[bounds[i] : bounds[i + 1]]
        if members.size == 0:
            continue
        numbers, covered = image_overlap_stats(
            [segmentations[k] for k in members], int(image.get("height", 0)), int(image.get("width", 0))
        )
        match_number[members] = numbers
        covered_fraction[i] = covered
    timings["mask_overlap"] = time.perf_counter() - t2

    result: dict[str, Any] = {
        "split": split,
        "image_ids": np.asarray([im["id"] for im in images], np.int64),
        "file_names": [str(im.get("file_name", "")) for im in images],
        "width": np.asarray([im.get("width", 0) for im in images], np.int64),
        "height": np.asarray([im.get("height", 0) for im in images], np.int64),
        "n_instances": np.bincount(ann_image, minlength=len(images)),
        "covered_fraction": covered_fraction,
        "category_id": category_id,
        "occlusion_ratio": occlusion_ratio,
        "image_index": ann_image,
        "oco_id": oco_id,
        "ico_id": ico_id,
        "match_number": match_number,
        "cluster_max_order": max_order_per_cluster(ann_image, oco_id, ico_id),
        "has_order": bool(((oco_id >= 0) & (ico_id >= 0)).any()),
        "amodal_n_points": amodal_measures["n_points"],
        "amodal_part_points": np.asarray(
            [len(p) // 2 for s in segmentations for p in s], np.int64
        ),
    }
    for prefix, measures in (("amodal", amodal_measures), ("inmodal", inmodal_measures)):
        for key in ("convexity", "simplicity", "n_parts", "area"):
            result[f"{prefix}_{key}"] = measures[key]

    if label_dir is not None and Path(label_dir).is_dir():
        t3 = time.perf_counter()
        boxes_by_image = [inmodal_boxes[order[bounds[i] : bounds[i + 1]]] for i in range(len(images))]
        label_paths = [Path(label_dir) / (Path(name).stem + ".txt") for name in result["file_names"]]
        has_label = np.asarray([p.is_file() for p in label_paths])
        consistency = image_box_consistency(
            [b for b, ok in zip(boxes_by_image, has_label) if ok],
            [p for p, ok in zip(label_paths, has_label) if ok],
        )
        result["box_has_label"] = has_label
        for key, values in consistency.items():
            full = np.full(len(images), np.nan) if values.dtype.kind == "f" else np.zeros(len(images), np.int64)
            full[has_label] = values
            result[f"box_{key}"] = full
        timings["box_consistency"] = time.perf_counter() - t3
    result["vis"] = []
    for i, image in enumerate(images):
        if len(result["vis"]) >= n_vis:
            break
        members = order[bounds[i] : bounds[i + 1]]
        if members.size:
            result["vis"].append({
                "file_name": result["file_names"][i],
                "height": int(image.get("height", 0)),
                "width": int(image.get("width", 0)),
                "amodal_segmentations": [segmentations[k] for k in members],
                "inmodal_rles": [inmodal_rles[k] for k in members],
                "orders": [int(ico_id[k]) for k in members],
            })
    result["timings"] = timings
    return result


def compute_statistics(
    gt_dir: str | Path,
    splits: list[str],
    label_dir: str | Path | None = None,
    workers: int = 2,
    chunk_pixels: int = 20_000_000,
    n_vis: int = 0,
) -> dict[str, dict[str, Any]]:
    """:func:`split_statistics` for every split, one process per split (``workers`` at most).

    Figure 4(b) needs KITTI labels, which exist for the training split only: ``label_dir`` is
    used for the split named ``train``.
    """
    jobs = [(str(gt_dir), s, str(label_dir) if (label_dir and s == "train") else None, chunk_pixels,
             n_vis if s == splits[0] else 0)
            for s in splits]
    if workers <= 1 or len(jobs) <= 1:
        return {job[1]: split_statistics(*job) for job in jobs}
    results: dict[str, dict[str, Any]] = {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        futures = {pool.submit(split_statistics, *job): job[1] for job in jobs}
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
    return {s: results[s] for s in splits}
