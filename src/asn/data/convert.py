"""KINS file (either release) + image folder -> the normalized ground truth of DESIGN.md 2.

Per split three files, written atomically:
- ``<split>_amodal.json``: COCO, ``segmentation``/``bbox``/``area`` of the AMODAL mask
  (the source polygons; area and box from their pycocotools rasterization);
- ``<split>_inmodal.json``: the same images and annotation ids, ``segmentation`` = VISIBLE mask
  as compressed RLE (visible masks can have holes, which COCO polygons cannot express),
  ``bbox``/``area`` of that mask;
- ``<split>_report.json``: what was read, kept, repaired and dropped, per reason.
Every annotation in both files also keeps ``amodal_bbox``, ``inmodal_bbox``,
``occlusion_ratio``, ``oco_id`` and ``ico_id``.

Inmodal masks of the 2020 release come, by default, from the paper's segmentation
transformation (section 3.2): inside a cluster, inmodal_i = amodal_i minus the amodal masks
of the members with a smaller order. ``inmodal_source="polygons"`` rasterizes ``i_segm``
instead. The 2019 release ships the inmodal RLE, which is used as it is.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from asn.data import rle as rle_ops
from asn.data.categories import EXPERIMENT_CATEGORY_IDS, coco_categories
from asn.data.kins import RELEASE_FILE_NAMES, Image, Instance, KinsFile, Problem, read_kins
from asn.errors import InputError
from asn.io import gc_paused, write_json_atomic

INMODAL_SOURCES = ("order", "polygons")
# Problems listed one by one in the report (all are counted).
REPORT_EXAMPLES = 200


def _image_masks(
    img: Image, instances: Sequence[Instance], inmodal_source: str
) -> list[tuple[dict, dict]]:
    """Amodal and inmodal compressed RLEs of one image's instances (same order)."""
    h, w = img.height, img.width
    amodal = rle_ops.polygons_to_rles([inst.amodal_polygons for inst in instances], h, w)
    if instances and instances[0].inmodal_rle is not None:  # 2019 release
        inmodal = [rle_ops.normalize_rle(inst.inmodal_rle) for inst in instances]
    elif inmodal_source == "polygons":
        inmodal = rle_ops.polygons_to_rles([inst.inmodal_polygons or [] for inst in instances],
                                           h, w)
    else:
        inmodal = inmodal_from_order(amodal, [i.oco_id for i in instances],
                                     [i.ico_id for i in instances])
    return list(zip(amodal, inmodal))


def inmodal_from_order(
    amodal: Sequence[dict], oco_ids: Sequence[int], ico_ids: Sequence[int]
) -> list[dict]:
    """The segmentation transformation on RLEs of one image.

    amodal: N compressed RLEs; oco_ids, ico_ids: N ints (oco 0 = overlaps nothing).
    Returns N RLEs: inmodal_i = amodal_i minus the union of amodal_j with
    oco_j == oco_i != 0 and ico_j < ico_i. Equals ``asn.data.order.inmodal_masks_from_order``
    on the decoded masks, without decoding them.
    """
    clusters: dict[int, list[int]] = defaultdict(list)
    for i, oco in enumerate(oco_ids):
        if oco:
            clusters[oco].append(i)
    out = list(amodal)
    boxes = rle_ops.bbox(amodal).tolist() if len(amodal) else []
    occluded, pairs = [], []
    for members in clusters.values():
        for i in members:
            # Only members whose boxes touch i can cut into it; skipping the rest is exact.
            front = [amodal[j] for j in members if ico_ids[j] < ico_ids[i]
                     and _boxes_touch(boxes[i], boxes[j])]
            if front:
                occluded.append(i)
                pairs.append((amodal[i], front))
    for i, rle in zip(occluded, rle_ops.difference_many(pairs)):
        out[i] = rle
    return out


def _boxes_touch(a: Sequence[float], b: Sequence[float]) -> bool:
    return (a[0] < b[0] + b[2] and b[0] < a[0] + a[2]
            and a[1] < b[1] + b[3] and b[1] < a[1] + a[3])


def _round(box: Iterable[float]) -> list[float]:
    return [round(float(v), 2) for v in box]


# Below this many instances, starting worker processes costs more than it saves.
PARALLEL_MIN_INSTANCES = 2000
# Items of the conversion in progress: forked workers inherit them instead of unpickling
# ~100 MB of polygons; they send back only areas, boxes and inmodal RLE strings.
_ITEMS: list[tuple[Image, list[Instance]]] = []


def _masks_of_range(job: tuple[int, int, str]) -> list[tuple]:
    """Worker: per instance of items[start:stop],
    (area_a, area_i, box_a, box_i, inmodal RLE, IoU of inmodal with i_segm or None)."""
    start, stop, inmodal_source = job
    out = []
    for img, instances in _ITEMS[start:stop]:
        masks = _image_masks(img, instances, inmodal_source)
        a_rles = [m[0] for m in masks]
        i_rles = [m[1] for m in masks]
        a_area, i_area = rle_ops.area(a_rles).tolist(), rle_ops.area(i_rles).tolist()
        a_box, i_box = rle_ops.bbox(a_rles).tolist(), rle_ops.bbox(i_rles).tolist()
        agreement = [None] * len(instances)
        if inmodal_source == "order" and instances and instances[0].inmodal_rle is None:
            agreement = _agreement_with_polygons(img, instances, i_rles)
        out.extend(zip(a_area, i_area, a_box, i_box, i_rles, agreement))
    return out


def _agreement_with_polygons(
    img: Image, instances: Sequence[Instance], inmodal: list[dict]
) -> list[float | None]:
    """IoU between each order-derived inmodal mask and the file's own ``i_segm`` polygons.

    A quality check of the annotation (and of the transformation's assumption): on real KINS
    the two were drawn separately; on the synthetic world i_segm is a traced approximation.
    None where the instance has no i_segm.
    """
    have = [k for k, inst in enumerate(instances) if inst.inmodal_polygons]
    if not have:
        return [None] * len(instances)
    polys = rle_ops.polygons_to_rles([instances[k].inmodal_polygons for k in have],
                                     img.height, img.width)
    ious = rle_ops.pairwise_iou([inmodal[k] for k in have], polys)
    out: list[float | None] = [None] * len(instances)
    for k, iou in zip(have, ious):
        out[k] = iou
    return out


def _annotations(
    items: list[tuple[Image, list[Instance]]], masks: list[tuple]
) -> tuple[list[dict], list[dict], list[tuple]]:
    """Assemble the amodal and inmodal annotation lists; empty masks become problems."""
    amodal_out, inmodal_out, problems = [], [], []
    k = 0
    for img, instances in items:
        for inst in instances:
            a_area, i_area, a_box, i_box, i_rle, _ = masks[k]
            k += 1
            if a_area == 0:
                problems.append(("empty_amodal", "amodal mask is empty (degenerate polygons)",
                                 img.id, inst.id))
                continue
            if i_area == 0:
                problems.append(("empty_inmodal", "inmodal mask is empty (fully occluded)",
                                 img.id, inst.id))
                continue
            a_box, i_box = _round(a_box), _round(i_box)
            extra = {
                "iscrowd": inst.iscrowd,
                "amodal_bbox": a_box,
                "inmodal_bbox": i_box,
                "occlusion_ratio": 1.0 - i_area / a_area,
                "oco_id": inst.oco_id,
                "ico_id": inst.ico_id,
            }
            base = {"id": inst.id, "image_id": img.id, "category_id": inst.category_id}
            amodal_out.append({**base, "segmentation": inst.amodal_polygons, "bbox": a_box,
                               "area": float(a_area), **extra})
            inmodal_out.append({**base, "segmentation": i_rle, "bbox": i_box,
                                "area": float(i_area), **extra})
    return amodal_out, inmodal_out, problems


def _check_image_files(kins: KinsFile, images_dir: Path) -> None:
    """Drop (or, strict, refuse) images whose file is missing or of another size."""
    from PIL import Image as PILImage

    for iid, img in list(kins.images.items()):
        path = images_dir / img.file_name
        reason = None
        if not path.is_file():
            reason, kind = f"image file {path} is missing", "image_file_missing"
        else:
            try:
                with PILImage.open(path) as im:
                    size = im.size
            except Exception as exc:  # noqa: BLE001 - any unreadable file is a bad record
                reason, kind = f"image file {path} cannot be read ({exc})", "image_unreadable"
            else:
                if size != (img.width, img.height):
                    reason, kind = (f"image file {path} is {size[0]}x{size[1]}, the annotation "
                                    f"file says {img.width}x{img.height}", "image_size_mismatch")
        if reason:
            problem = Problem(str(kins.path), reason, iid, None, "dropped", kind)
            kins.problems.append(problem)
            del kins.images[iid]


def convert(
    kins_path: str | Path,
    out_dir: str | Path,
    split: str,
    images_dir: str | Path | None = None,
    strict: bool = False,
    category_ids: Sequence[int] = EXPERIMENT_CATEGORY_IDS,
    inmodal_source: str = "order",
    workers: int = 2,
) -> dict:
    """Convert one KINS file into ``out_dir/<split>_{amodal,inmodal,report}.json``.

    images_dir: folder holding the split's images (checked for existence and size); None skips
    the check (annotation-only data). strict: any bad record raises InputError and nothing is
    written. category_ids: classes kept (others are dropped and counted as excluded).
    Returns the report dict.
    """
    with gc_paused():
        return _convert(kins_path, out_dir, split, images_dir, strict, category_ids,
                        inmodal_source, workers)


def _convert(kins_path, out_dir, split, images_dir, strict, category_ids, inmodal_source,
             workers) -> dict:
    t0 = time.perf_counter()
    if inmodal_source not in INMODAL_SOURCES:
        raise InputError(None, f"inmodal_source must be one of {INMODAL_SOURCES}, "
                         f"got {inmodal_source!r}")
    if not split or "/" in split or split.startswith("."):
        raise InputError(None, f"bad split name {split!r}")
    kins = read_kins(kins_path, strict=strict)
    if images_dir is not None:
        images_dir = Path(images_dir)
        if not images_dir.is_dir():
            raise InputError(images_dir, "image folder not found")
        _check_image_files(kins, images_dir)
        if strict and kins.problems:
            raise InputError(kins.path, kins.problems[0].reason, kins.problems[0].record())
    keep_cats = set(category_ids)
    excluded = Counter()
    by_image: dict[int, list[Instance]] = defaultdict(list)
    orphaned = 0
    for inst in kins.instances:
        if inst.image_id not in kins.images:
            orphaned += 1  # its image was dropped above; counted under the image's reason
            continue
        if inst.category_id not in keep_cats:
            excluded[inst.category_id] += 1
            continue
        by_image[inst.image_id].append(inst)
    items = [(kins.images[iid], by_image[iid]) for iid in sorted(by_image)]
    t_read = time.perf_counter() - t0

    masks = _compute_masks(items, inmodal_source, workers)
    amodal_anns, inmodal_anns, probs = _annotations(items, masks)
    for kind, reason, iid, aid in probs:
        kins.problems.append(Problem(str(kins.path), reason, iid, aid, "dropped", kind))
    if strict:
        bad = [p for p in kins.problems if p.kind in ("empty_amodal", "empty_inmodal")]
        if bad:
            raise InputError(kins.path, bad[0].reason, bad[0].record())
    t_masks = time.perf_counter() - t0 - t_read

    images = [{"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height}
              for im in sorted(kins.images.values(), key=lambda im: im.id)]
    categories = coco_categories(tuple(c for c in sorted(keep_cats)))
    info = {"description": f"KINS {kins.release} {split} normalized by asn convert",
            "source": str(kins_path)}
    out_dir = Path(out_dir)
    report = {
        "file": str(kins_path),
        "release": kins.release,
        "split": split,
        "inmodal_source": "inmodal_seg (2019 release)" if kins.release == "2019"
        else inmodal_source,
        "read": {"images": kins.n_images_read, "annotations": kins.n_annotations_read},
        "kept": {"images": len(images), "annotations": len(amodal_anns)},
        "dropped": dict(sorted(kins.counts("dropped").items())),
        "repaired": dict(sorted(kins.counts("repaired").items())),
        "excluded_categories": {str(k): v for k, v in sorted(excluded.items())},
        "annotations_of_dropped_images": orphaned,
        "problems": [p.as_dict() for p in kins.problems[:REPORT_EXAMPLES]],
        "inmodal_vs_i_segm": _agreement_summary(masks),
    }
    # timings are returned and printed, never written: a tracked output is a function of its inputs
    seconds = {"read_validate": round(t_read, 3), "masks": round(t_masks, 3)}
    # Write the pair first, the report last: a report on disk means the pair is complete.
    write_json_atomic(out_dir / f"{split}_amodal.json",
                      {"info": info, "images": images, "annotations": amodal_anns,
                       "categories": categories})
    write_json_atomic(out_dir / f"{split}_inmodal.json",
                      {"info": info, "images": images, "annotations": inmodal_anns,
                       "categories": categories})
    write_json_atomic(out_dir / f"{split}_report.json", report, indent=True)
    seconds["total"] = round(time.perf_counter() - t0, 3)
    return {**report, "seconds": seconds}


def _agreement_summary(masks: list[tuple]) -> dict:
    """Summary of the per-instance IoUs between derived inmodal masks and i_segm."""
    ious = np.array([m[5] for m in masks if m[5] is not None], np.float64)
    summary = {"what": "IoU between the order-derived inmodal mask and the file's i_segm "
                       "polygons (2020 release, inmodal_source=order)",
               "compared": int(len(ious))}
    if len(ious):
        summary.update(mean_iou=round(float(ious.mean()), 6), min_iou=round(float(ious.min()), 6),
                       below_0_9=int((ious < 0.9).sum()))
    return summary


def _compute_masks(items: list, inmodal_source: str, workers: int) -> list[tuple]:
    """Masks of every instance of ``items``, in order; forked processes when it pays off."""
    global _ITEMS
    _ITEMS = items
    try:
        n_instances = sum(len(x[1]) for x in items)
        if workers <= 1 or n_instances < PARALLEL_MIN_INSTANCES or "fork" not in mp.get_all_start_methods():
            return _masks_of_range((0, len(items), inmodal_source))
        jobs = [(a, b, inmodal_source) for a, b in _chunk_bounds(items, workers * 4)]
        # fork: the workers see _ITEMS without pickling (torch, if imported, is not used here).
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool:
            return [m for chunk in pool.map(_masks_of_range, jobs) for m in chunk]
    finally:
        _ITEMS = []


def _chunk_bounds(items: list, n: int) -> list[tuple[int, int]]:
    """(start, stop) of at most n contiguous chunks of items with similar instance counts."""
    weights = np.cumsum([len(x[1]) for x in items])
    cuts = np.searchsorted(weights, np.linspace(0, weights[-1], n + 1)[1:-1]).tolist()
    bounds = sorted(set([0, *cuts, len(items)]))
    return list(zip(bounds[:-1], bounds[1:]))


def find_kins_file(path: str | Path, split: str) -> Path:
    """A KINS file given directly, or the one file of ``split`` inside a folder."""
    path = Path(path)
    if not path.is_dir():
        return path
    names = [files[split] for files in RELEASE_FILE_NAMES.values() if split in files] or [
        f"update_{split}_2020.json", f"instances_{split}.json"]
    found = [path / n for n in names if (path / n).is_file()]
    if len(found) != 1:
        what = "none" if not found else " and ".join(p.name for p in found)
        raise InputError(path, f"expected exactly one of {', '.join(names)} for split "
                         f"{split!r}, found {what}")
    return found[0]
