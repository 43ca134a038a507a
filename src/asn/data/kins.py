"""Read, validate and write the two public KINS releases (DESIGN.md section 2).

- 2019 ``instances_{train,val}.json``: ``segmentation`` = amodal polygons, ``bbox`` = amodal
  xywh, ``area``, ``inmodal_seg`` = visible mask as compressed RLE, ``inmodal_bbox``,
  ``iscrowd``; image entries may carry ``amodal_full``.
- 2020 ``update_{train,test}_2020.json``: ``a_segm`` / ``i_segm`` polygons, ``a_bbox`` /
  ``i_bbox``, ``a_area``, ``i_area``, ``oco_id`` (cluster, 0 = overlaps nothing) and ``ico_id``
  (order within the cluster, 1 = front).

:func:`read_kins` detects the release, checks every record and returns release-independent
:class:`Instance` records plus the list of :class:`Problem` s found. In strict mode the first
problem raises :class:`~asn.errors.InputError`; in lenient mode bad records are dropped or
repaired and every decision is counted, so `convert` can write a report of what it did.
:func:`write_kins` writes records back in either release's schema (round trips are tested).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import chain
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from asn.data.categories import KINS_CATEGORIES, coco_categories
from asn.errors import InputError
from asn.io import read_json, write_json_atomic

RELEASES = ("2019", "2020")
# The public file name of each split in each release (KINS 2019 calls its test split "val").
RELEASE_FILE_NAMES: dict[str, dict[str, str]] = {
    "2020": {"train": "update_train_2020.json", "test": "update_test_2020.json"},
    "2019": {"train": "instances_train.json", "test": "instances_val.json"},
}

# Coordinates may stray a little outside the image (annotation tools snap to the border);
# beyond this margin, in pixels or as a fraction of the image side, a point is an error.
FAR_OUTSIDE_PX = 16.0
FAR_OUTSIDE_FRAC = 0.10

_REQUIRED_2019 = ("id", "image_id", "category_id", "segmentation", "inmodal_seg")
_REQUIRED_2020 = ("id", "image_id", "category_id", "a_segm", "i_segm", "oco_id", "ico_id")


@dataclass(slots=True)
class Image:
    """One image entry (join key: ``file_name``, never the id)."""

    id: int
    file_name: str
    width: int
    height: int


@dataclass(slots=True)
class Instance:
    """One annotated object, independent of the release it came from.

    Polygons are COCO flat lists ``[x0, y0, x1, y1, ...]`` in pixels; boxes are ``[x, y, w, h]``.
    ``inmodal_polygons`` exist in the 2020 release, ``inmodal_rle`` (compressed COCO RLE) in 2019.
    ``oco_id`` / ``ico_id`` are None for the 2019 release, which has no occlusion order.
    """

    id: int
    image_id: int
    category_id: int
    amodal_polygons: list[list[float]]
    inmodal_polygons: list[list[float]] | None = None
    inmodal_rle: dict | None = None
    amodal_bbox: list[float] | None = None
    inmodal_bbox: list[float] | None = None
    amodal_area: float | None = None
    inmodal_area: float | None = None
    oco_id: int | None = None
    ico_id: int | None = None
    iscrowd: int = 0


@dataclass(slots=True)
class Problem:
    """A bad record: where it is, why it is bad and what lenient mode did with it."""

    file: str
    reason: str
    image_id: Any = None
    annotation_id: Any = None
    action: str = "dropped"  # dropped | repaired
    kind: str = ""  # short stable key for report counts, e.g. "odd_coordinates"

    def record(self) -> str:
        parts = []
        if self.image_id is not None:
            parts.append(f"image {self.image_id}")
        if self.annotation_id is not None:
            parts.append(f"annotation {self.annotation_id}")
        return ", ".join(parts)

    def message(self) -> str:
        return str(InputError(self.file, self.reason, self.record() or None))

    def as_dict(self) -> dict:
        return {
            "image_id": self.image_id,
            "annotation_id": self.annotation_id,
            "kind": self.kind,
            "reason": self.reason,
            "action": self.action,
        }


@dataclass
class KinsFile:
    """The content of one KINS file after validation."""

    path: Path
    release: str
    images: dict[int, Image]
    instances: list[Instance]
    categories: list[dict]
    problems: list[Problem] = field(default_factory=list)
    n_images_read: int = 0
    n_annotations_read: int = 0

    def counts(self, action: str) -> dict[str, int]:
        """Problems per kind for one action ("dropped" or "repaired")."""
        return dict(Counter(p.kind for p in self.problems if p.action == action))


def release_from_keys(data: dict) -> str | None:
    """The release the first annotation's keys belong to, or None (no annotations)."""
    for ann in data.get("annotations") or ():
        if isinstance(ann, dict):
            if "a_segm" in ann or "i_segm" in ann or "ico_id" in ann:
                return "2020"
            if "inmodal_seg" in ann or "segmentation" in ann:
                return "2019"
    return None


def detect_release(data: dict, path: str | Path) -> str:
    """Tell the release from the annotation keys (or, for an empty file, from its name)."""
    release = release_from_keys(data)
    if release is not None:
        return release
    name = Path(path).name
    if re.search(r"2020", name):
        return "2020"
    if name.startswith("instances"):
        return "2019"
    raise InputError(
        path,
        "cannot tell the KINS release: no annotation has 2020 keys (a_segm, i_segm) or "
        "2019 keys (segmentation, inmodal_seg)",
    )


_NUMBER_TYPES = (int, float)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Checker:
    """Collects problems for one file; in strict mode the first one raises."""

    def __init__(self, path: Path, strict: bool):
        self.path = path
        self.strict = strict
        self.problems: list[Problem] = []

    def add(self, kind: str, reason: str, image_id=None, annotation_id=None, action="dropped"):
        problem = Problem(str(self.path), reason, image_id, annotation_id, action, kind)
        if self.strict:
            raise InputError(self.path, reason, problem.record() or None)
        self.problems.append(problem)


def _check_polygons(
    polys: Any, key: str, img: Image, ann_id: Any, chk: _Checker
) -> list[list[float]] | None:
    """Validate a COCO polygon list; returns the usable polygons (clipped) or None to drop."""
    if not isinstance(polys, list):
        chk.add("wrong_type", f"{key} must be a list of polygons, got {type(polys).__name__}",
                img.id, ann_id)
        return None
    if len(polys) == 0:
        chk.add("empty_segmentation", f"{key} has no polygon", img.id, ann_id)
        return None
    w, h = img.width, img.height
    mx = max(FAR_OUTSIDE_PX, FAR_OUTSIDE_FRAC * w)
    my = max(FAR_OUTSIDE_PX, FAR_OUTSIDE_FRAC * h)
    out: list[list[float]] = []
    for k, poly in enumerate(polys):
        if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
            chk.add("wrong_type", f"{key} polygon {k} must be a flat list of numbers",
                    img.id, ann_id)
            return None
        n = len(poly)
        if n % 2:
            chk.add("odd_coordinates",
                    f"{key} polygon {k} has an odd number of coordinates ({n})", img.id, ann_id)
            return None
        if n < 6:
            chk.add("too_few_points",
                    f"{key} polygon {k} has {n // 2} points, at least 3 are needed", img.id, ann_id)
            return None
        xs, ys = poly[0::2], poly[1::2]
        if any(math.isnan(v) or math.isinf(v) for v in poly):
            chk.add("nan_coordinates", f"{key} polygon {k} has NaN or infinite coordinates",
                    img.id, ann_id)
            return None
        x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)
        if x_lo < -mx or y_lo < -my or x_hi > w + mx or y_hi > h + my:
            chk.add("far_outside",
                    f"{key} polygon {k} reaches ({x_lo:.1f}..{x_hi:.1f}, {y_lo:.1f}..{y_hi:.1f}),"
                    f" far outside the {w}x{h} image", img.id, ann_id)
            return None
        if x_lo < 0 or y_lo < 0 or x_hi > w or y_hi > h:
            # Snap stray points onto the border: rasterization then stays inside the image.
            poly = [min(max(v, 0.0), w) if i % 2 == 0 else min(max(v, 0.0), h)
                    for i, v in enumerate(poly)]
            chk.add("clipped_to_image", f"{key} polygon {k} clipped to the image border",
                    img.id, ann_id, action="repaired")
        out.append(poly)
    return out


_OK, _BAD = 0, 1


def _polygon_codes(entries: list[Any], sizes: list[tuple[int, int]]) -> list[int]:
    """Fast screen of many polygon lists at once: 0 = certainly fine, 1 = look closer.

    entries: polygon lists (one per segmentation); sizes: (width, height) of their images.
    Only flagged entries go through :func:`_check_polygons`, which names the problem; at
    KINS scale (190k segmentations, 5M coordinates) the per-value Python checks would
    otherwise dominate the conversion time.
    """
    n = len(entries)
    codes = [_OK] * n
    shaped = [isinstance(e, list) and len(e) > 0 and all(isinstance(p, list) for p in e)
              for e in entries]
    idx = [i for i in range(n) if shaped[i]]
    for i in range(n):
        if not shaped[i]:
            codes[i] = _BAD
    if not idx:
        return codes
    polys = [p for i in idx for p in entries[i]]
    per_entry = np.fromiter((len(entries[i]) for i in idx), np.int64, len(idx))
    lengths = np.fromiter(map(len, polys), np.int64, len(polys))
    values = list(chain.from_iterable(polys))
    if not set(map(type, values)) <= {int, float}:
        for i in idx:
            codes[i] = _BAD  # some non-number somewhere: let the slow path say where
        return codes
    flat = np.array(values, np.float64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    bad = (lengths % 2 == 1) | (lengths < 6)
    # reduceat needs in-range, non-empty slices: give empty polygons a dummy slice.
    safe_starts = np.minimum(starts, max(len(flat) - 1, 0))
    flat_pad = flat if len(flat) else np.zeros(1)
    bad |= ~np.logical_and.reduceat(np.isfinite(flat_pad), safe_starts)
    is_x = ((np.arange(len(flat)) - np.repeat(starts, lengths)) % 2) == 0
    xs = np.where(is_x, flat, np.inf) if len(flat) else np.full(1, np.inf)
    ys = np.where(~is_x, flat, np.inf) if len(flat) else np.full(1, np.inf)
    x_lo, y_lo = np.minimum.reduceat(xs, safe_starts), np.minimum.reduceat(ys, safe_starts)
    xs = np.where(is_x, flat, -np.inf) if len(flat) else np.full(1, -np.inf)
    ys = np.where(~is_x, flat, -np.inf) if len(flat) else np.full(1, -np.inf)
    x_hi, y_hi = np.maximum.reduceat(xs, safe_starts), np.maximum.reduceat(ys, safe_starts)
    wh = np.array([sizes[i] for i in idx], np.float64).reshape(-1, 2)
    w, h = np.repeat(wh[:, 0], per_entry), np.repeat(wh[:, 1], per_entry)
    # Anything outside the image (to clip, or far outside) goes to the slow path too.
    bad |= (x_lo < 0) | (y_lo < 0) | (x_hi > w) | (y_hi > h)
    entry_bad = np.logical_or.reduceat(bad, np.concatenate([[0], np.cumsum(per_entry)[:-1]]))
    for i, flag in zip(idx, entry_bad.tolist()):
        if flag:
            codes[i] = _BAD
    return codes


def _check_instance_polygons(
    instances: list[Instance], images: dict[int, Image], release: str, chk: _Checker
) -> list[Instance]:
    """Validate every instance's polygons; drop (or, strict, refuse) the bad ones."""
    amodal_key, inmodal_key = ("a_segm", "i_segm") if release == "2020" else ("segmentation", "")
    entries, sizes = [], []
    for inst in instances:
        img = images[inst.image_id]
        entries.append(inst.amodal_polygons)
        sizes.append((img.width, img.height))
        if inst.inmodal_polygons:
            entries.append(inst.inmodal_polygons)
            sizes.append((img.width, img.height))
    codes = iter(_polygon_codes(entries, sizes))
    kept = []
    for inst in instances:
        img = images[inst.image_id]
        ok = True
        if next(codes) != _OK:
            inst.amodal_polygons = _check_polygons(inst.amodal_polygons, amodal_key, img,
                                                   inst.id, chk)
            ok = inst.amodal_polygons is not None
        if inst.inmodal_polygons:
            if next(codes) != _OK and ok:
                inst.inmodal_polygons = _check_polygons(inst.inmodal_polygons, inmodal_key, img,
                                                        inst.id, chk)
                ok = inst.inmodal_polygons is not None
        if ok:
            kept.append(inst)
    return kept


def _check_bbox(box: Any, key: str, img: Image, ann_id: Any, chk: _Checker) -> list[float] | None:
    """A stored xywh box; bad ones are repaired later from the mask (returns None)."""
    if box is None:
        return None
    # Fast path for the common, valid case (NaN fails the == test).
    if (type(box) is list and len(box) == 4 and all(type(v) in _NUMBER_TYPES for v in box)
            and box[2] > 0 and box[3] > 0 and box[0] == box[0] and box[1] == box[1]):
        return box
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        chk.add("bad_bbox", f"{key} must be [x, y, w, h] numbers; recomputed from the mask",
                img.id, ann_id, action="repaired")
        return None
    if any(math.isnan(v) for v in box):
        chk.add("nan_bbox", f"{key} has NaN; recomputed from the mask", img.id, ann_id,
                action="repaired")
        return None
    if box[2] <= 0 or box[3] <= 0:
        chk.add("nonpositive_bbox",
                f"{key} has non-positive size ({box[2]} x {box[3]}); recomputed from the mask",
                img.id, ann_id, action="repaired")
        return None
    return [float(v) for v in box]


def _check_rle(rle: Any, key: str, img: Image, ann_id: Any, chk: _Checker) -> dict | None:
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        chk.add("bad_rle", f"{key} must be an RLE dict with 'size' and 'counts'", img.id, ann_id)
        return None
    size = rle["size"]
    if not isinstance(size, list) or len(size) != 2 or not all(_is_int(v) for v in size):
        chk.add("bad_rle", f"{key} size must be [height, width] integers", img.id, ann_id)
        return None
    if size != [img.height, img.width]:
        chk.add("rle_size_mismatch",
                f"{key} size {size[0]}x{size[1]} differs from the image size "
                f"{img.height}x{img.width} (height x width)", img.id, ann_id)
        return None
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(_is_int(v) and v >= 0 for v in counts) or sum(counts) != size[0] * size[1]:
            chk.add("bad_rle", f"{key} uncompressed counts must be non-negative integers summing "
                    "to height*width", img.id, ann_id)
            return None
    elif not isinstance(counts, str):
        chk.add("bad_rle", f"{key} counts must be a string or a list", img.id, ann_id)
        return None
    return {"size": list(size), "counts": counts}


def _check_images(raw_images: Any, chk: _Checker) -> dict[int, Image]:
    if not isinstance(raw_images, list):
        raise InputError(chk.path, f"'images' must be a list, got {type(raw_images).__name__}")
    images: dict[int, Image] = {}
    names: set[str] = set()
    for k, im in enumerate(raw_images):
        if not isinstance(im, dict):
            chk.add("wrong_type", f"images[{k}] must be an object")
            continue
        iid = im.get("id")
        missing = [key for key in ("id", "file_name", "width", "height") if key not in im]
        if missing:
            chk.add("missing_key", f"images[{k}] lacks {', '.join(missing)}", iid)
            continue
        if not _is_int(iid) or not isinstance(im["file_name"], str) or not im["file_name"]:
            chk.add("wrong_type", f"images[{k}] id must be an integer and file_name a string", iid)
            continue
        w, h = im["width"], im["height"]
        if not _is_int(w) or not _is_int(h) or w <= 0 or h <= 0:
            chk.add("bad_image_size", f"width/height must be positive integers, got {w!r}x{h!r}",
                    iid)
            continue
        if iid in images:
            chk.add("duplicate_image_id", f"duplicate image id {iid}", iid)
            continue
        if im["file_name"] in names:
            chk.add("duplicate_file_name", f"duplicate file_name {im['file_name']!r}", iid)
            continue
        names.add(im["file_name"])
        images[iid] = Image(iid, im["file_name"], w, h)
    return images


def _check_categories(raw: Any, chk: _Checker) -> tuple[list[dict], set[int]]:
    if raw is None:
        return coco_categories(), set(KINS_CATEGORIES)
    if not isinstance(raw, list) or not all(isinstance(c, dict) and _is_int(c.get("id"))
                                            for c in raw):
        raise InputError(chk.path, "'categories' must be a list of objects with integer ids")
    ids = {c["id"] for c in raw}
    unknown = sorted(ids - set(KINS_CATEGORIES))
    if unknown:
        raise InputError(chk.path, f"categories {unknown} are not KINS categories "
                         f"(known: {sorted(KINS_CATEGORIES)})")
    return list(raw), ids


def _parse_annotation(
    ann: Any, k: int, release: str, images: dict[int, Image], category_ids: set[int],
    seen_ids: set, chk: _Checker,
) -> Instance | None:
    if not isinstance(ann, dict):
        chk.add("wrong_type", f"annotations[{k}] must be an object")
        return None
    aid, iid = ann.get("id"), ann.get("image_id")
    required = _REQUIRED_2020 if release == "2020" else _REQUIRED_2019
    missing = [key for key in required if key not in ann]
    if missing:
        chk.add("missing_key", f"lacks {', '.join(missing)} (release {release})", iid, aid)
        return None
    if not _is_int(aid) or not _is_int(iid):
        chk.add("wrong_type", "id and image_id must be integers", iid, aid)
        return None
    if aid in seen_ids:
        chk.add("duplicate_annotation_id", f"duplicate annotation id {aid}", iid, aid)
        return None
    img = images.get(iid)
    if img is None:
        chk.add("missing_image", f"points to image {iid}, which is not in 'images'", iid, aid)
        return None
    cat = ann["category_id"]
    if not _is_int(cat) or cat not in category_ids:
        chk.add("unknown_category", f"unknown category_id {cat!r}", iid, aid)
        return None
    if ann.get("iscrowd", 0) not in (0, 1):
        chk.add("wrong_type", f"iscrowd must be 0 or 1, got {ann.get('iscrowd')!r}", iid, aid)
        return None
    seen_ids.add(aid)
    if release == "2020":
        amodal, inmodal = ann["a_segm"], ann["i_segm"] if ann["i_segm"] else []
        oco, ico = ann["oco_id"], ann["ico_id"]
        if not _is_int(oco) or not _is_int(ico) or oco < 0 or ico < 0:
            chk.add("bad_order", f"oco_id/ico_id must be non-negative integers, got {oco!r}/{ico!r}",
                    iid, aid)
            return None
        if oco > 0 and ico < 1:
            chk.add("bad_order", f"ico_id must be >= 1 inside cluster {oco}, got {ico}", iid, aid)
            return None
        return Instance(
            id=aid, image_id=iid, category_id=cat, amodal_polygons=amodal,
            inmodal_polygons=inmodal,
            amodal_bbox=_check_bbox(ann.get("a_bbox"), "a_bbox", img, aid, chk),
            inmodal_bbox=_check_bbox(ann.get("i_bbox"), "i_bbox", img, aid, chk),
            amodal_area=ann.get("a_area"), inmodal_area=ann.get("i_area"),
            oco_id=oco, ico_id=ico, iscrowd=int(ann.get("iscrowd", 0)),
        )
    amodal = ann["segmentation"]
    rle = _check_rle(ann["inmodal_seg"], "inmodal_seg", img, aid, chk)
    if rle is None:
        return None
    return Instance(
        id=aid, image_id=iid, category_id=cat, amodal_polygons=amodal, inmodal_rle=rle,
        amodal_bbox=_check_bbox(ann.get("bbox"), "bbox", img, aid, chk),
        inmodal_bbox=_check_bbox(ann.get("inmodal_bbox"), "inmodal_bbox", img, aid, chk),
        amodal_area=ann.get("area"), iscrowd=int(ann.get("iscrowd", 0)),
        oco_id=ann.get("oco_id"), ico_id=ann.get("ico_id"),
    )


def parse_kins(data: Any, path: str | Path, strict: bool = False) -> KinsFile:
    """Validate already-parsed JSON ``data`` of a KINS file (see :func:`read_kins`)."""
    path = Path(path)
    if not isinstance(data, dict):
        raise InputError(path, f"expected a JSON object at the top level, got {type(data).__name__}")
    for key in ("images", "annotations"):
        if key not in data:
            raise InputError(path, f"missing top-level key {key!r}")
    if not isinstance(data["annotations"], list):
        raise InputError(path, "'annotations' must be a list")
    release = detect_release(data, path)
    chk = _Checker(path, strict)
    images = _check_images(data["images"], chk)
    categories, category_ids = _check_categories(data.get("categories"), chk)
    seen: set = set()
    parsed = []
    for k, ann in enumerate(data["annotations"]):
        inst = _parse_annotation(ann, k, release, images, category_ids, seen, chk)
        if inst is not None:
            parsed.append(inst)
    instances = _check_instance_polygons(parsed, images, release, chk)
    return KinsFile(
        path=path, release=release, images=images, instances=instances, categories=categories,
        problems=chk.problems, n_images_read=len(data["images"]),
        n_annotations_read=len(data["annotations"]),
    )


def read_kins(path: str | Path, strict: bool = False) -> KinsFile:
    """Read and validate a KINS file of either release.

    Whole-file problems (JSON syntax, missing top-level keys, unknown release) always raise
    :class:`InputError`. Record problems raise in ``strict`` mode; otherwise the record is
    dropped (or repaired, e.g. coordinates snapped to the border) and listed in ``problems``.
    """
    return parse_kins(read_json(path), path, strict=strict)


def _rle_json(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]),
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def to_release_dict(
    images: Iterable[Image], instances: Iterable[Instance], release: str,
    categories: list[dict] | None = None,
) -> dict:
    """Records -> the JSON object of a KINS file in ``release``'s schema."""
    if release not in RELEASES:
        raise ValueError(f"release must be one of {RELEASES}, got {release!r}")
    anns = []
    for inst in instances:
        base = {"id": inst.id, "image_id": inst.image_id, "category_id": inst.category_id,
                "iscrowd": inst.iscrowd}
        if release == "2020":
            if inst.oco_id is None or inst.ico_id is None:
                raise ValueError(f"annotation {inst.id}: the 2020 release needs oco_id and ico_id")
            base.update(a_segm=inst.amodal_polygons, i_segm=inst.inmodal_polygons or [],
                        a_bbox=inst.amodal_bbox, i_bbox=inst.inmodal_bbox,
                        a_area=inst.amodal_area, i_area=inst.inmodal_area,
                        oco_id=inst.oco_id, ico_id=inst.ico_id)
        else:
            if inst.inmodal_rle is None:
                raise ValueError(f"annotation {inst.id}: the 2019 release needs inmodal_rle")
            base.update(segmentation=inst.amodal_polygons, bbox=inst.amodal_bbox,
                        area=inst.amodal_area, inmodal_seg=_rle_json(inst.inmodal_rle),
                        inmodal_bbox=inst.inmodal_bbox)
        anns.append(base)
    return {
        "images": [{"id": im.id, "file_name": im.file_name, "width": im.width,
                    "height": im.height} for im in images],
        "annotations": anns,
        "categories": categories if categories is not None else coco_categories(),
    }


def write_kins(
    path: str | Path, images: Iterable[Image], instances: Iterable[Instance], release: str,
    categories: list[dict] | None = None,
) -> Path:
    """Write records as a KINS file of ``release`` (atomically)."""
    return write_json_atomic(path, to_release_dict(images, instances, release, categories))
