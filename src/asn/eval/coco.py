"""COCO evaluation of amodal instance segmentation predictions (DESIGN.md section 7).

Predictions (DESIGN.md 2) are a COCO results list, one entry per detection: ``image_id``,
``category_id``, ``bbox`` (amodal xywh), ``score``, ``segmentation`` (amodal compressed RLE),
``inmodal_segmentation`` (compressed RLE) and ``occlusion_score``. :func:`evaluate` scores
such a file against the normalized ground truth (``<split>_amodal.json``,
``<split>_inmodal.json``):

- Det AP: COCO bbox AP of the amodal boxes against the amodal file;
- Amodal Seg AP / Inmodal Seg AP: COCO segm AP of ``segmentation`` against the amodal file and
  of ``inmodal_segmentation`` against the inmodal file. As in detectron2, the segm evaluations
  see no ``bbox`` in the detections, so pycocotools uses the MASK area of a detection for the
  small / medium / large ranges (with a box it would use the box area);
- ``ap_occ_<bucket>``: amodal segm AP with the ground truths outside an occlusion-ratio bucket
  ignored, exactly as COCO ignores ground truths outside an area range;
- occlusion accuracy of ``occlusion_score`` on detections greedily matched to ground truths.

Two engines give identical numbers (the 12 COCO stats agree to the last bit or two):
``pycocotools`` (the unmodified reference) and ``faster`` (faster-coco-eval's C++ COCOeval).
The faster path also parses every file once (orjson), fills the detections' COCO fields in
bulk, evaluates the occlusion buckets from the finished amodal evaluation (same IoUs, same
prepared detections, only the "all areas / 100 detections" slice), and from
PARALLEL_MIN_DETECTIONS detections on runs the evaluations in two forked processes;
bench/eval.py measures it against plain pycocotools at KINS test scale.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import multiprocessing as mp
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from asn.errors import InputError
from asn.io import gc_paused, read_json, write_text_atomic

ENGINES = ("faster", "pycocotools")
# Keys every prediction must have (types: see _entry_problem).
PREDICTION_KEYS = ("image_id", "category_id", "bbox", "score", "segmentation",
                   "inmodal_segmentation", "occlusion_score")
DEFAULT_OCCLUSION_BUCKETS: dict[str, tuple[float, float]] = {
    "none": (0.0, 0.01),
    "partial": (0.01, 0.5),
    "heavy": (0.5, 1.0001),  # 1.0001 so that a ratio of exactly 1 falls in the last bucket
}
AP_OCC_DEFINITION = (
    "ap_occ_<bucket>: COCO mask AP (IoU .50:.95, all areas, 100 detections per image) of the "
    "amodal masks, where ground truths whose occlusion_ratio lies outside the bucket's [lo, hi) "
    "are ignored exactly as COCO ignores ground truths outside an area range: a detection "
    "matched to an ignored ground truth counts neither as a true nor as a false positive, an "
    "unmatched detection stays a false positive. Not COCO's APs/APm/APl (which are by area)."
)
OCCLUSION_ACCURACY_DEFINITION = (
    "occlusion_accuracy: detections, in decreasing score order, are matched greedily to the "
    "not yet matched ground truth of the same image and category with the highest amodal box "
    "IoU, if that IoU >= iou_match (crowd ground truths are not matched); on the matched pairs "
    "the true label is occlusion_ratio > occlusion_threshold and the predicted label is "
    "occlusion_score > 0.5. occlusion_accuracy is the percentage of pairs where they agree, "
    "occlusion_positive_recall / occlusion_negative_recall the percentage of occluded / "
    "non-occluded pairs predicted as such (null without such pairs)."
)
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
              "ARl")
# Evaluations with at least this many detections run in two forked processes; below it,
# starting them costs more than it saves.
PARALLEL_MIN_DETECTIONS = 50_000
PER_CLASS_COLUMNS = ("category_id", "name", "det_ap", "amodal_ap", "inmodal_ap")


# --------------------------------------------------------------------------------------------
# Model outputs -> prediction entries
# --------------------------------------------------------------------------------------------

def masks_to_rles(masks: Any, threshold: float = 0.5) -> list[dict]:
    """Mask probabilities -> compressed COCO RLEs (``counts`` as str).

    masks: (K, 1, H, W) or (K, H, W) float tensor or array; a pixel belongs to the mask when its
    probability is above ``threshold`` (torchvision's reference evaluation uses ``> 0.5``).
    Returns K dicts ``{"size": [H, W], "counts": str}``.
    """
    shape = tuple(masks.shape)
    if len(shape) == 4 and shape[1] != 1:
        raise ValueError(f"masks: expected (K, 1, H, W), got shape {shape}")
    if len(shape) not in (3, 4):
        raise ValueError(f"masks: expected (K, 1, H, W) or (K, H, W), got shape {shape}")
    if shape[0] == 0:
        return []
    if len(shape) == 4:
        masks = masks[:, 0]
    # pycocotools wants (H, W, K) in Fortran order, i.e. the bytes of a C-ordered (K, W, H).
    # A tensor is thresholded and transposed where it lives (on a GPU: a quarter of the bytes
    # of float probabilities cross to the host).
    if hasattr(masks, "detach"):
        binary = (masks.detach() > threshold).transpose(1, 2).contiguous().to("cpu").numpy()
    else:
        binary = np.ascontiguousarray((np.asarray(masks) > threshold).transpose(0, 2, 1))
    rles = mask_utils.encode(binary.view(np.uint8).transpose(2, 1, 0))
    return [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
            for r in rles]


def detections_to_results(output: Mapping[str, Any], image_id: int,
                          label_to_category: Mapping[int, int] | Sequence[int],
                          mask_threshold: float = 0.5) -> list[dict]:
    """One image's model output -> prediction entries (DESIGN.md 2).

    output: ``boxes`` (K, 4) xyxy, ``labels`` (K,) contiguous 1..C, ``scores`` (K,),
    ``amodal_masks`` / ``inmodal_masks`` (K, 1, H, W) probabilities at image size,
    ``occlusion_scores`` (K,). label_to_category maps a label to its KINS category id (a dict, or
    a sequence indexed by label). Boxes become xywh rounded to 0.01 px, scores are rounded to 5
    decimals (the files stay small; AP is unaffected at that precision).
    """
    def array(key: str) -> np.ndarray:
        value = output[key]
        if hasattr(value, "detach"):
            value = value.detach().to("cpu").numpy()
        return np.asarray(value)

    boxes = array("boxes").astype(np.float64).reshape(-1, 4)
    labels = array("labels").astype(np.int64).reshape(-1)
    scores = array("scores").astype(np.float64).reshape(-1)
    occlusion = array("occlusion_scores").astype(np.float64).reshape(-1)
    k = len(boxes)
    if not (len(labels) == len(scores) == len(occlusion) == k):
        raise ValueError(f"image {image_id}: boxes, labels, scores and occlusion_scores differ in "
                         f"length ({k}, {len(labels)}, {len(scores)}, {len(occlusion)})")
    amodal = masks_to_rles(output["amodal_masks"], mask_threshold)
    inmodal = masks_to_rles(output["inmodal_masks"], mask_threshold)
    if len(amodal) != k or len(inmodal) != k:
        raise ValueError(f"image {image_id}: {k} boxes but {len(amodal)} amodal and "
                         f"{len(inmodal)} inmodal masks")
    xywh = boxes.copy()
    xywh[:, 2:] -= xywh[:, :2]
    xywh = np.round(xywh, 2).tolist()
    scores_out = np.round(scores, 5).tolist()
    occlusion_out = np.round(occlusion, 5).tolist()
    results = []
    for i in range(k):
        label = int(labels[i])
        try:
            category = int(label_to_category[label])
        except (KeyError, IndexError):
            raise ValueError(f"image {image_id}: label {label} has no category in "
                             f"label_to_category") from None
        results.append({"image_id": int(image_id), "category_id": category, "bbox": xywh[i],
                        "score": scores_out[i], "segmentation": amodal[i],
                        "inmodal_segmentation": inmodal[i], "occlusion_score": occlusion_out[i]})
    return results


# --------------------------------------------------------------------------------------------
# Reading and validating predictions
# --------------------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return (type(value) is float or type(value) is int) and math.isfinite(value)


def _rle_problem(value: Any, size: tuple[int, int] | None) -> str | None:
    if type(value) is not dict:
        return f"expected a compressed RLE object, got {type(value).__name__}"
    if "size" not in value or "counts" not in value:
        return "RLE needs 'size' and 'counts'"
    rle_size = value["size"]
    if (type(rle_size) is not list or len(rle_size) != 2
            or not all(type(v) is int and v >= 0 for v in rle_size)):
        return f"RLE size must be [height, width], got {rle_size!r}"
    if type(value["counts"]) is not str or not value["counts"].isascii():
        # (the runs the string encodes are not decoded here: ~40 s for a KINS-scale file)
        return "RLE counts must be a compressed (ASCII) string"
    if size is not None and (rle_size[0] != size[0] or rle_size[1] != size[1]):
        return f"RLE size {rle_size} differs from the image size {list(size)}"
    return None


def _entry_problem(entry: Any, image_ids: Collection[int], category_ids: Collection[int],
                   image_sizes: Mapping[int, tuple[int, int]] | None) -> str | None:
    """Why one prediction entry is invalid, or None."""
    if type(entry) is not dict:
        return f"expected an object, got {type(entry).__name__}"
    missing = [key for key in PREDICTION_KEYS if key not in entry]
    if missing:
        return f"missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    image_id = entry["image_id"]
    if type(image_id) is not int:
        return f"image_id must be an integer, got {image_id!r}"
    if image_id not in image_ids:
        return f"image_id {image_id} is not in the ground truth"
    category_id = entry["category_id"]
    if type(category_id) is not int:
        return f"category_id must be an integer, got {category_id!r}"
    if category_id not in category_ids:
        return f"category_id {category_id} is not a ground-truth category"
    box = entry["bbox"]
    if type(box) is not list or len(box) != 4 or not all(_is_number(v) for v in box):
        return f"bbox must be 4 finite numbers [x, y, w, h], got {box!r}"
    if box[2] < 0 or box[3] < 0:
        return f"bbox width and height must be >= 0, got {box!r}"
    for key in ("score", "occlusion_score"):
        if not _is_number(entry[key]):
            return f"{key} must be a finite number, got {entry[key]!r}"
    size = image_sizes.get(image_id) if image_sizes is not None else None
    for key in ("segmentation", "inmodal_segmentation"):
        problem = _rle_problem(entry[key], size)
        if problem:
            return f"{key}: {problem}"
    return None


def load_predictions(path: str | os.PathLike, gt_image_ids: Collection[int],
                     gt_category_ids: Collection[int], *,
                     image_sizes: Mapping[int, tuple[int, int]] | None = None) -> list[dict]:
    """Read a predictions JSON and validate every entry; return the list.

    gt_image_ids / gt_category_ids: the ids the ground truth knows. image_sizes (optional):
    image id -> (height, width), to check the RLE sizes too. Raises
    ``InputError(path, reason, record="prediction <i>")`` at the first bad entry. An empty list
    is valid.
    """
    data = _read_json_fast(path)
    if type(data) is not list:
        raise InputError(path, f"expected a JSON list of predictions, got {type(data).__name__}")
    image_ids = (gt_image_ids if isinstance(gt_image_ids, (set, frozenset, dict))
                 else set(gt_image_ids))
    category_ids = set(gt_category_ids)
    size_lists = ({i: [h, w] for i, (h, w) in image_sizes.items()}
                  if image_sizes is not None else None)
    for i, entry in enumerate(data):
        if _entry_ok(entry, image_ids, category_ids, size_lists):
            continue
        problem = _entry_problem(entry, image_ids, category_ids, image_sizes)
        if problem is not None:
            raise InputError(path, problem, record=f"prediction {i}")
    return data


_KEYS = frozenset(PREDICTION_KEYS)
_isfinite = math.isfinite


def _entry_ok(entry: Any, image_ids: Collection[int], category_ids: Collection[int],
              size_lists: Mapping[int, list[int]] | None) -> bool:
    """The checks of :func:`_entry_problem` in one expression (2.5x faster on 700k entries);
    False sends the entry to _entry_problem for the reason."""
    try:
        if type(entry) is not dict or not _KEYS <= entry.keys():
            return False
        image_id, box = entry["image_id"], entry["bbox"]
        score, occlusion = entry["score"], entry["occlusion_score"]
        seg, inseg = entry["segmentation"], entry["inmodal_segmentation"]
        if not (type(image_id) is int and image_id in image_ids
                and type(entry["category_id"]) is int and entry["category_id"] in category_ids
                and type(box) is list and len(box) == 4
                and type(score) in (int, float) and _isfinite(score)
                and type(occlusion) in (int, float) and _isfinite(occlusion)
                and type(seg) is dict and type(inseg) is dict):
            return False
        x, y, w, h = box
        if not (type(x) in (int, float) and type(y) in (int, float) and type(w) in (int, float)
                and type(h) in (int, float) and _isfinite(x) and _isfinite(y)
                and _isfinite(w) and _isfinite(h) and w >= 0 and h >= 0):
            return False
        expected = size_lists[image_id] if size_lists is not None else None
        for rle in (seg, inseg):
            size, counts = rle["size"], rle["counts"]
            if not (type(counts) is str and counts.isascii() and type(size) is list
                    and len(size) == 2 and type(size[0]) is int and type(size[1]) is int
                    and size[0] >= 0 and size[1] >= 0 and (expected is None or size == expected)):
                return False
        return True
    except (KeyError, TypeError):
        return False


def _read_json_fast(path: str | os.PathLike) -> Any:
    # A KINS-scale file holds millions of small objects: collections during the parse find
    # nothing (JSON has no cycles) and would cost more than the parse itself.
    with gc_paused():
        return read_json(path)


# --------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------

def _load_ground_truth(path: str | os.PathLike, kind: str) -> dict:
    data = _read_json_fast(path)
    if type(data) is not dict:
        raise InputError(path, f"expected a COCO object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if type(data.get(key)) is not list:
            raise InputError(path, f"missing the COCO list {key!r}")
    for k, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not {"id", "height", "width"} <= img.keys():
            raise InputError(path, "image entries need id, height and width",
                             record=f"images[{k}]")
    needed = {"id", "image_id", "category_id", "bbox", "area", "segmentation"}
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not needed <= ann.keys():
            raise InputError(path, f"annotations need {', '.join(sorted(needed))}",
                             record=f"annotations[{k}]")
        if kind == "amodal" and not _is_number(ann.get("occlusion_ratio")):
            raise InputError(path, "annotation has no finite occlusion_ratio (is this the "
                             "normalized <split>_amodal.json?)", record=f"annotation {ann['id']}")
    if not data["annotations"]:
        # COCO would answer -1 for every AP; nothing can be scored against an empty split.
        raise InputError(path, "no annotations: nothing to evaluate against")
    return data


def _check_pair(amodal: dict, inmodal: dict, amodal_path, inmodal_path) -> None:
    a_images = {img["id"] for img in amodal["images"]}
    i_images = {img["id"] for img in inmodal["images"]}
    if a_images != i_images:
        raise InputError(inmodal_path, f"image ids differ from {amodal_path} "
                         f"({len(a_images ^ i_images)} not in both)")
    a_cats = {c["id"] for c in amodal["categories"]}
    i_cats = {c["id"] for c in inmodal["categories"]}
    if a_cats != i_cats:
        raise InputError(inmodal_path, f"categories {sorted(i_cats)} differ from {amodal_path}'s "
                         f"{sorted(a_cats)}")


# --------------------------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------------------------

def _engine(engine: str):
    """(COCO class, COCOeval class) of an engine."""
    if engine == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        return COCO, COCOeval
    if engine == "faster":
        from faster_coco_eval import COCO
        return COCO, _faster_eval_class()
    raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")


_FASTER_EVAL = None


def _faster_eval_class():
    """faster-coco-eval's COCOeval_faster with a cheaper preparation of compressed RLEs.

    Its ``_prepare`` runs every segmentation through C++ (``calculateRleForAllAnnotations``):
    a compressed RLE string is decoded to runs and encoded back to the same string, about
    10 us per annotation, 8 s for the 730k detections of a KINS-scale file. Here the
    compressed RLEs get their ``rle`` entry directly (the same counts as bytes), and only the
    other segmentations (the amodal ground truth's polygons) go through faster-coco-eval's own
    function. The IoUs, and so every number, are unchanged: an IoU is computed from the runs
    the counts encode. Everything else is faster-coco-eval's ``_prepare`` (with its RLE pass
    switched off by ``params.compute_rle`` for the duration of the call).
    """
    global _FASTER_EVAL
    if _FASTER_EVAL is not None:
        return _FASTER_EVAL
    from faster_coco_eval import COCOeval_faster
    from faster_coco_eval.core import mask as faster_mask

    class FasterEval(COCOeval_faster):
        def _prepare(self):
            p = self.params
            if not p.compute_rle or p.compute_boundary:
                super()._prepare()
                return
            p.compute_rle = False
            try:
                super()._prepare()
            finally:
                p.compute_rle = True
            for coco in (self.cocoGt, self.cocoDt):
                others = []
                for ann in coco.anns.values():
                    seg = ann["segmentation"]
                    try:  # the common case, compressed RLE with str counts, at ~0.7 us
                        ann["rle"] = {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
                    except (TypeError, KeyError, AttributeError):  # polygons, other RLE forms
                        others.append(ann)
                if others:
                    sizes = {}
                    for ann in others:
                        img = coco.imgs[ann["image_id"]]
                        sizes[ann["image_id"]] = (img["height"], img["width"])
                    faster_mask.calculateRleForAllAnnotations(
                        others, sizes, True, False, self.boundary_dilation_ratio,
                        self.boundary_cpu_count)

    _FASTER_EVAL = FasterEval
    return FasterEval


@contextlib.contextmanager
def _quiet():
    """pycocotools prints progress to stdout; an evaluation report is the return value."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _coco_from_dict(engine: str, dataset: dict):
    """A COCO object over an already parsed dict (no second parse, no copy of the records)."""
    COCO, _ = _engine(engine)
    coco = COCO()
    coco.dataset = dataset
    with _quiet():
        coco.createIndex()
    return coco


def _results_coco(engine: str, gt, anns: list[dict]):
    """The detections as a COCO object, as ``gt.loadRes(anns)`` builds it.

    ``pycocotools`` calls loadRes itself (the reference path; its loadRes cannot take an empty
    list, so that case gets the same empty object built by hand). ``faster`` fills only the
    fields an evaluation reads (``area``, ``id``, ``iscrowd``), mask areas with pycocotools
    calls on 255 masks at a time instead of one per detection: the same values.
    """
    COCO, _ = _engine(engine)
    if engine == "pycocotools" and anns:
        with _quiet():
            return gt.loadRes(anns)
    if anns and "bbox" in anns[0]:
        # No box polygon as "segmentation" (loadRes adds one): a bbox evaluation never reads it.
        for i, ann in enumerate(anns, 1):
            box = ann["bbox"]
            ann["area"] = box[2] * box[3]
            ann["id"] = i
            ann["iscrowd"] = 0
    elif anns:
        rles = [ann["segmentation"] for ann in anns]
        # The very areas pycocotools' loadRes stores one detection at a time (uint32), as
        # plain floats for faster-coco-eval's C++ reader. Chunks of 255: pycocotools 2.0.11's
        # area() overflows a uint8 on numpy 2 for longer lists. No "bbox" for the masks:
        # loadRes adds their tight boxes, but neither engine reads a detection's box in a segm
        # evaluation (1.5 s saved at KINS scale).
        areas = []
        for start in range(0, len(rles), 255):
            areas.extend(mask_utils.area(rles[start:start + 255]).astype(np.float64).tolist())
        for i, ann in enumerate(anns):
            ann["area"] = areas[i]
            ann["id"] = i + 1
            ann["iscrowd"] = 0
    res = COCO()
    res.dataset = {"info": dict(gt.dataset.get("info", {})), "images": list(gt.dataset["images"]),
                   "categories": [dict(c) for c in gt.dataset["categories"]], "annotations": anns}
    with _quiet():
        res.createIndex()
    return res


def _outside(gt: Mapping, bucket: tuple[float, float]) -> bool:
    return not bucket[0] <= gt["occlusion_ratio"] < bucket[1]


def _bucket_eval_class(engine: str):
    """A COCOeval subclass that ignores ground truths outside an occlusion-ratio bucket.

    Only ``_prepare`` is overridden: the engine's own ``_prepare`` sets ``ignore`` (from
    ``iscrowd``), then the out-of-bucket ground truths get ``ignore = 1`` too. Both engines
    treat ``ignore`` exactly as a ground truth outside the area range (matched detections
    neither TP nor FP, unmatched ones FP), so a bucket behaves like one of COCO's area ranges.

    The faster variant can start from a finished amodal evaluation (``template``) of the same
    detections and ground truths: ignoring ground truths changes neither the IoUs nor the
    detections' preparation (their RLEs and the C++ index), so it reuses both and only gives
    the ground truths a fresh C++ index, which then reads the new ``ignore`` flags. Its
    numbers equal the reference subclass's (tests/test_eval.py checks it).
    """
    _, COCOeval = _engine(engine)

    class OcclusionBucketEval(COCOeval):
        def __init__(self, *args, bucket: tuple[float, float], template=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.bucket = (float(bucket[0]), float(bucket[1]))
            self.template = template

        def _bucket_ground_truths(self) -> list[dict]:
            p = self.params
            return self.cocoGt.loadAnns(self.cocoGt.getAnnIds(
                imgIds=p.imgIds, catIds=p.catIds if p.useCats else []))

        def _prepare(self):
            if self.template is None:
                super()._prepare()
                for gt in self._bucket_ground_truths():
                    if _outside(gt, self.bucket):
                        gt["ignore"] = 1
                return
            # faster-coco-eval only (see the class doc): the template's prepared detections
            # and IoU pairs, and a new ground-truth index with this bucket's flags; the ground
            # truths already carry their "rle" from the template's preparation.
            import faster_coco_eval.faster_eval_api_cpp as _C

            self.dt_dataset = self.template.dt_dataset
            self._nonempty_iou_pairs = self.template._nonempty_iou_pairs
            self.gt_dataset = _C.Dataset()
            for gt in self._bucket_ground_truths():
                # as faster-coco-eval's _prepare: iscrowd first, then the bucket
                gt["ignore"] = int(gt.get("iscrowd", 0)) or int(_outside(gt, self.bucket))
                self.gt_dataset.append_ref(gt["image_id"], gt["category_id"], gt)

        def computeIoU(self, imgId, catId):
            if self.template is not None:
                return self.template.ious[imgId, catId]
            return super().computeIoU(imgId, catId)

    return OcclusionBucketEval


def _run_eval(engine: str, gt, dt, iou_type: str, *, cls=None, only_all_100: bool = False,
              **kwargs):
    """evaluate + accumulate (+ summarize) one COCOeval, silently.

    only_all_100: evaluate the area range "all" at 100 detections only (no summarize, whose
    layout expects COCO's default ranges in pycocotools)."""
    _, COCOeval = _engine(engine)
    cls = cls or COCOeval
    extra = {"print_function": lambda *a, **k: None} if engine == "faster" else {}
    with _quiet():
        ev = cls(gt, dt, iou_type, **extra, **kwargs)
        if only_all_100:
            ev.params.areaRng, ev.params.areaRngLbl = [ev.params.areaRng[0]], ["all"]
            ev.params.maxDets = [ev.params.maxDets[-1]]
        ev.evaluate()
        ev.accumulate()
        if not only_all_100:
            ev.summarize()
    return ev


def _ap_all_100(ev) -> float:
    """COCO's AP (IoU .50:.95, area "all", last maxDets), as pycocotools' _summarize: the mean
    of the precision entries > -1, or -1 when there are none."""
    p = ev.params
    a, m = p.areaRngLbl.index("all"), p.maxDets.index(p.maxDets[-1])
    s = np.asarray(ev.eval["precision"])[:, :, :, a, m]
    return float(np.mean(s[s > -1])) if (s > -1).any() else -1.0


def _summary(ev) -> dict:
    """What leaves an evaluation: the 12 stats and AP per category (precision array)."""
    stats = [float(s) for s in np.asarray(ev.stats, dtype=np.float64)[:12]]
    precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
    per_cat = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]  # area "all", maxDets 100
        valid = p[p > -1]
        per_cat[int(cat_id)] = float(valid.mean()) if valid.size else float("nan")
    return {"stats": stats, "per_category": per_cat}


# --------------------------------------------------------------------------------------------
# One evaluation call
# --------------------------------------------------------------------------------------------

class _Job:
    """State shared by the evaluation tasks of one :func:`evaluate` call.

    Forked workers inherit it (no pickling of the parsed files); each task builds the COCO
    objects it needs once, in its own process.
    """

    def __init__(self, engine, predictions, amodal, inmodal, buckets):
        self.engine = engine
        self.predictions = predictions
        self.amodal = amodal
        self.inmodal = inmodal
        self.buckets = buckets

    def det_anns(self) -> list[dict]:
        return [{"image_id": p["image_id"], "category_id": p["category_id"],
                 "bbox": p["bbox"], "score": p["score"]} for p in self.predictions]

    def segm_anns(self, key: str) -> list[dict]:
        # No bbox: pycocotools then takes the mask area for the area ranges (see module doc).
        return [{"image_id": p["image_id"], "category_id": p["category_id"],
                 "segmentation": p[key], "score": p["score"]} for p in self.predictions]

    def run(self, group: Sequence[str]) -> dict[str, dict]:
        """Run the named evaluations ("det", "amodal", "inmodal", "occ:<bucket>"), in order.

        Returns per name its summary (``stats`` and ``per_category``; ``ap`` for a bucket) and
        ``seconds``. A bucket after "amodal" in the same group reuses that evaluation.
        """
        out: dict[str, dict] = {}
        amodal_gt = amodal_eval = None
        for name in group:
            t0 = time.perf_counter()
            if amodal_gt is None and name != "inmodal":
                amodal_gt = _coco_from_dict(self.engine, self.amodal)
            if name == "det":
                dt = _results_coco(self.engine, amodal_gt, self.det_anns())
                summary = _summary(_run_eval(self.engine, amodal_gt, dt, "bbox"))
            elif name == "amodal":
                dt = _results_coco(self.engine, amodal_gt, self.segm_anns("segmentation"))
                amodal_eval = _run_eval(self.engine, amodal_gt, dt, "segm")
                summary = _summary(amodal_eval)
            elif name == "inmodal":
                inmodal_gt = _coco_from_dict(self.engine, self.inmodal)
                dt = _results_coco(self.engine, inmodal_gt, self.segm_anns("inmodal_segmentation"))
                summary = _summary(_run_eval(self.engine, inmodal_gt, dt, "segm"))
            elif name.startswith("occ:"):
                summary = {"ap": _ap_all_100(self._bucket_eval(amodal_gt, amodal_eval,
                                                               self.buckets[name[4:]]))}
            else:
                raise ValueError(f"unknown evaluation {name!r}")
            out[name] = {**summary, "seconds": time.perf_counter() - t0}
        return out

    def _bucket_eval(self, amodal_gt, amodal_eval, bucket: tuple[float, float]):
        cls = _bucket_eval_class(self.engine)
        if amodal_eval is not None and self.engine == "faster":
            # Same detections, same ground truths, same IoUs: only `ignore` differs. ap_occ is
            # AP at area "all", 100 detections: precision[..., all, 100] does not depend on the
            # other area ranges and detection limits, so only that one is computed (a quarter
            # of the matching, a twelfth of accumulate).
            return _run_eval(self.engine, amodal_gt, amodal_eval.cocoDt, "segm", cls=cls,
                             bucket=bucket, template=amodal_eval, rle_iou_max_workers=1,
                             only_all_100=True)
        # The reference recomputes everything, as unmodified pycocotools would.
        dt = (amodal_eval.cocoDt if amodal_eval is not None else
              _results_coco(self.engine, amodal_gt, self.segm_anns("segmentation")))
        return _run_eval(self.engine, amodal_gt, dt, "segm", cls=cls, bucket=bucket)


_CURRENT_JOB: _Job | None = None


def _run_group(group: Sequence[str]) -> dict[str, dict]:
    """Worker entry point: run a group of evaluations of the job inherited at fork."""
    assert _CURRENT_JOB is not None
    with gc_paused():
        return _CURRENT_JOB.run(group)


def _normalize_buckets(
        buckets: Mapping[str, Sequence[float]] | None) -> dict[str, tuple[float, float]]:
    if buckets is None:
        return dict(DEFAULT_OCCLUSION_BUCKETS)
    out = {}
    for name, bounds in buckets.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise InputError(None, f"occlusion bucket name must be an identifier, got {name!r}")
        try:
            lo, hi = (float(v) for v in bounds)
        except (TypeError, ValueError):
            raise InputError(None, f"occlusion bucket {name!r}: expected [lo, hi], got "
                             f"{bounds!r}") from None
        if not lo < hi:
            raise InputError(None, f"occlusion bucket {name!r}: needs lo < hi, got [{lo}, {hi}]")
        out[name] = (lo, hi)
    return out


def _groups(names: list[str], workers: int) -> list[list[str]]:
    """Split the evaluations over ``workers`` processes.

    The occlusion buckets reuse the amodal evaluation, so they run in its process; the other
    worker takes Det and Inmodal (about as much work on KINS-like data: 32 and 25 s here).
    """
    if workers <= 1:
        return [names]
    first = [n for n in names if n == "amodal" or n.startswith("occ:")]
    second = [n for n in names if n not in first]
    return [g for g in (first, second) if g]


def evaluate(predictions_path: str | os.PathLike, amodal_gt: str | os.PathLike,
             inmodal_gt: str | os.PathLike, *, engine: str = "faster",
             occlusion_buckets: Mapping[str, Sequence[float]] | None = None,
             occlusion_threshold: float = 0.05, iou_match: float = 0.5,
             workers: int | None = None, timings: dict | None = None) -> dict:
    """Score a predictions file against the normalized ground truth (DESIGN.md 7).

    Returns a JSON-ready dict: ``det_ap``, ``amodal_ap``, ``inmodal_ap`` and their ``_50`` /
    ``_75`` forms (percent); ``stats`` (the 12 COCO stats of each evaluation, as fractions,
    named in ``stats_names``); ``per_class`` rows; ``ap_occ_<bucket>`` (percent) with
    ``ap_occ_definition``, ``ap_occ_buckets`` and ``ap_occ_ground_truths``; the occlusion
    accuracy block; counts; and ``files``.

    engine: "faster" (faster-coco-eval) or "pycocotools" (unmodified reference), identical
    numbers. occlusion_buckets: name -> [lo, hi) of occlusion ratio (None: the defaults, {}:
    none). workers: processes for the evaluations (None: 2 when there are at least
    PARALLEL_MIN_DETECTIONS detections and 2 CPUs, else 1); the pycocotools engine always runs
    in this process. timings: if given, filled with seconds per step (for benchmarks).
    """
    global _CURRENT_JOB
    clock = time.perf_counter()
    steps: dict[str, float] = {}

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        steps[step] = steps.get(step, 0.0) + now - clock
        clock = now

    if engine not in ENGINES:
        raise InputError(None, f"engine must be one of {ENGINES}, got {engine!r}")
    buckets = _normalize_buckets(occlusion_buckets)
    amodal = _load_ground_truth(amodal_gt, "amodal")
    inmodal = _load_ground_truth(inmodal_gt, "inmodal")
    _check_pair(amodal, inmodal, amodal_gt, inmodal_gt)
    lap("read_ground_truth")
    sizes = {img["id"]: (img["height"], img["width"]) for img in amodal["images"]}
    categories = {c["id"]: c.get("name", str(c["id"])) for c in amodal["categories"]}
    predictions = load_predictions(predictions_path, sizes, categories, image_sizes=sizes)
    lap("read_predictions")

    names = ["det", "amodal", "inmodal", *(f"occ:{b}" for b in buckets)]
    if workers is None:
        workers = 2 if (len(predictions) >= PARALLEL_MIN_DETECTIONS
                        and (os.cpu_count() or 1) >= 2) else 1
    if engine != "faster" or "fork" not in mp.get_all_start_methods():
        workers = 1
    job = _Job(engine, predictions, amodal, inmodal, buckets)
    groups = _groups(names, workers)
    results: dict[str, dict] = {}
    if len(groups) == 1:
        with gc_paused():
            results.update(job.run(groups[0]))
        lap("evaluations")
        occlusion = occlusion_accuracy(predictions, amodal, occlusion_threshold, iou_match)
        lap("occlusion_accuracy")
    else:
        _CURRENT_JOB = job
        try:
            # fork: the workers inherit the parsed files instead of unpickling them; they send
            # back the 12 stats and one AP per category of each evaluation.
            with mp.get_context("fork").Pool(len(groups)) as pool:
                pending = pool.map_async(_run_group, groups)
                # The parent's own share while the workers evaluate.
                occlusion = occlusion_accuracy(predictions, amodal, occlusion_threshold, iou_match)
                lap("occlusion_accuracy")
                for part in pending.get():
                    results.update(part)
                lap("evaluations_after_occlusion_accuracy")
        finally:
            _CURRENT_JOB = None

    out: dict[str, Any] = {}
    for key, name in (("det", "det"), ("amodal", "amodal"), ("inmodal", "inmodal")):
        stats = results[name]["stats"]
        out[f"{key}_ap"] = 100.0 * stats[0]
        out[f"{key}_ap_50"] = 100.0 * stats[1]
        out[f"{key}_ap_75"] = 100.0 * stats[2]
    out["stats"] = {name: results[name]["stats"] for name in ("det", "amodal", "inmodal")}
    out["stats_names"] = list(STAT_NAMES)
    out["per_class"] = [
        {"category_id": cat_id, "name": name,
         **{f"{key}_ap": _percent_or_none(results[key]["per_category"].get(cat_id, math.nan))
            for key in ("det", "amodal", "inmodal")}}
        for cat_id, name in sorted(categories.items())
    ]
    ratios = np.array([a["occlusion_ratio"] for a in amodal["annotations"]
                       if not a.get("iscrowd", 0)], np.float64)
    for bucket, (lo, hi) in buckets.items():
        out[f"ap_occ_{bucket}"] = _percent_or_none(results[f"occ:{bucket}"]["ap"])
    out["ap_occ_buckets"] = {b: [lo, hi] for b, (lo, hi) in buckets.items()}
    out["ap_occ_ground_truths"] = {b: int(((ratios >= lo) & (ratios < hi)).sum())
                                   for b, (lo, hi) in buckets.items()}
    out["ap_occ_definition"] = AP_OCC_DEFINITION
    out.update(occlusion)
    out["counts"] = {"images": len(amodal["images"]), "ground_truths": len(amodal["annotations"]),
                     "predictions": len(predictions),
                     "images_with_predictions": len({p["image_id"] for p in predictions})}
    out["engine"] = engine
    out["files"] = {"predictions": str(predictions_path), "amodal_gt": str(amodal_gt),
                    "inmodal_gt": str(inmodal_gt)}
    lap("summary")
    if timings is not None:
        timings.update(steps)
        timings["workers"] = len(groups)
        timings["per_evaluation"] = {name: results[name]["seconds"] for name in names}
    return out


def _percent_or_none(value: float) -> float | None:
    """COCO's -1 (nothing to score) and NaN become None (JSON null); else percent."""
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return 100.0 * value


def write_per_class_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write the ``per_class`` rows of :func:`evaluate` as CSV atomically (null -> empty)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PER_CLASS_COLUMNS)
    for row in rows:
        cells = []
        for column in PER_CLASS_COLUMNS:
            value = row.get(column)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("")
            elif isinstance(value, float):
                cells.append(f"{value:.4f}")
            else:
                cells.append(value)
        writer.writerow(cells)
    return write_text_atomic(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------
# Occlusion accuracy
# --------------------------------------------------------------------------------------------

# Images per block of the padded (images, detections, ground truths) IoU array.
_MATCH_BLOCK_IMAGES = 256


def match_detections(predictions: Sequence[Mapping], ground_truth: Sequence[Mapping],
                     iou_match: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of detections to ground truths by score (see the accuracy definition).

    Returns (detection indices, ground-truth indices) of the matched pairs. Vectorized over
    images: step r takes the r-th best detection of every image at once, so the Python loop
    runs (max detections per image) times rather than once per detection.
    """
    gts = [g for g in ground_truth if not g.get("iscrowd", 0)]
    gt_index = np.array([i for i, g in enumerate(ground_truth) if not g.get("iscrowd", 0)],
                        np.int64)
    if not predictions or not gts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    image_of = {}
    for g in gts:
        image_of.setdefault(g["image_id"], len(image_of))
    d_img = np.array([image_of.get(p["image_id"], -1) for p in predictions], np.int64)
    d_cat = np.array([p["category_id"] for p in predictions], np.int64)
    d_score = np.array([p["score"] for p in predictions], np.float64)
    d_box = np.array([p["bbox"] for p in predictions], np.float64).reshape(-1, 4)
    g_img = np.array([image_of[g["image_id"]] for g in gts], np.int64)
    g_cat = np.array([g["category_id"] for g in gts], np.int64)
    g_box = np.array([g["bbox"] for g in gts], np.float64).reshape(-1, 4)

    keep = np.flatnonzero(d_img >= 0)  # detections on images without ground truth match nothing
    # Per image, detections by decreasing score; ties keep file order (stable, like COCO).
    order = keep[np.lexsort((-d_score[keep], d_img[keep]))]
    n_images = len(image_of)
    d_count = np.bincount(d_img[order], minlength=n_images)
    d_start = np.concatenate([[0], np.cumsum(d_count)[:-1]])
    g_order = np.argsort(g_img, kind="stable")
    g_count = np.bincount(g_img, minlength=n_images)
    g_start = np.concatenate([[0], np.cumsum(g_count)[:-1]])
    if int(d_count.max(initial=0)) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)

    det_out, gt_out = [], []
    # Blocks of images with similar numbers of ground truths and detections keep the padding
    # of the (images, detections, ground truths) IoU array small.
    by_size = np.lexsort((d_count, g_count))
    first = 0
    while first < n_images:
        max_g = int(g_count[by_size[min(first + _MATCH_BLOCK_IMAGES, n_images) - 1]])
        stop = min(first + _MATCH_BLOCK_IMAGES, n_images)
        imgs = by_size[first:stop]
        first = stop
        max_d = int(d_count[imgs].max())
        if max_d == 0 or max_g == 0:
            continue
        # Padded (B, D) detection and (B, G) ground-truth index tables, -1 = padding.
        d_slot = np.arange(max_d)
        d_tab = np.where(d_slot < d_count[imgs, None], d_start[imgs, None] + d_slot, -1)
        d_tab = np.where(d_tab >= 0, order[np.clip(d_tab, 0, len(order) - 1)], -1)
        g_slot = np.arange(max_g)
        g_tab = np.where(g_slot < g_count[imgs, None], g_start[imgs, None] + g_slot, -1)
        g_tab = np.where(g_tab >= 0, g_order[np.clip(g_tab, 0, len(g_order) - 1)], -1)
        iou = _box_iou_xywh(d_box[d_tab], g_box[g_tab])  # (B, D, G)
        same_cat = d_cat[d_tab][:, :, None] == g_cat[g_tab][:, None, :]
        valid = (d_tab >= 0)[:, :, None] & (g_tab >= 0)[:, None, :] & same_cat
        iou = np.where(valid, iou, -1.0)
        taken = np.zeros(g_tab.shape, bool)
        rows = np.arange(len(imgs))
        for r in range(max_d):
            candidates = np.where(taken, -1.0, iou[:, r, :])
            best = candidates.argmax(axis=1)
            ok = candidates[rows, best] >= iou_match
            taken[rows[ok], best[ok]] = True
            det_out.append(d_tab[rows[ok], r])
            gt_out.append(g_tab[rows[ok], best[ok]])
    if not det_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    dets = np.concatenate(det_out)
    return dets, gt_index[np.concatenate(gt_out)]


def _box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (B, D, 4) with (B, G, 4) xywh boxes -> (B, D, G), COCO's continuous formula."""
    ax1, ay1 = a[..., 0, None], a[..., 1, None]
    ax2, ay2 = ax1 + a[..., 2, None], ay1 + a[..., 3, None]
    bx1, by1 = b[..., None, :, 0], b[..., None, :, 1]
    bx2, by2 = bx1 + b[..., None, :, 2], by1 + b[..., None, :, 3]
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = iw * ih
    union = (a[..., 2] * a[..., 3])[..., None] + (b[..., 2] * b[..., 3])[..., None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def occlusion_accuracy(predictions: Sequence[Mapping], amodal: Mapping,
                       occlusion_threshold: float = 0.05, iou_match: float = 0.5) -> dict:
    """Occlusion classification accuracy on matched detections (OCCLUSION_ACCURACY_DEFINITION).

    predictions: validated prediction entries; amodal: the parsed amodal ground truth.
    """
    anns = amodal["annotations"]
    dets, gts = match_detections(predictions, anns, iou_match)
    ratios = np.array([anns[g]["occlusion_ratio"] for g in gts.tolist()], np.float64)
    scores = np.array([predictions[d]["occlusion_score"] for d in dets.tolist()], np.float64)
    truth, predicted = ratios > occlusion_threshold, scores > 0.5

    def percent(mask: np.ndarray) -> float | None:
        return float(100.0 * (truth[mask] == predicted[mask]).mean()) if mask.any() else None

    everything = np.ones(len(truth), bool)
    return {
        "occlusion_accuracy": percent(everything),
        "occlusion_matched": int(len(truth)),
        "occlusion_matched_positive": int(truth.sum()),
        "occlusion_positive_recall": percent(truth),
        "occlusion_negative_recall": percent(~truth),
        "occlusion_threshold": float(occlusion_threshold),
        "occlusion_iou_match": float(iou_match),
        "occlusion_accuracy_definition": OCCLUSION_ACCURACY_DEFINITION,
    }


# --------------------------------------------------------------------------------------------
# Predictions derived from ground truth (tests and benchmarks of the evaluator)
# --------------------------------------------------------------------------------------------

def perturbed_predictions(amodal: Mapping, inmodal: Mapping, *, per_image: int = 100,
                          seed: int = 0, detect_rate: float = 0.9, wrong_class_rate: float = 0.05,
                          duplicate_rate: float = 0.2,
                          empty_image_rate: float = 0.03) -> list[dict]:
    """Realistic predictions for a ground truth, to test and benchmark the evaluator.

    Per image (a fraction ``empty_image_rate`` of images gets none): each ground truth is found
    with probability ``detect_rate`` as its amodal polygons scaled and shifted by a few percent
    of the box (some with another class, some twice), the inmodal mask being that mask cut by the
    true inmodal mask; the rest up to ``per_image`` are false positives (random octagons of random
    classes, lower scores). Amodal ground truth must be polygons (the normalized files are);
    RLE ones are used unshifted. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    cat_ids = np.array(sorted(c["id"] for c in amodal["categories"]), np.int64)
    inmodal_by_id = {a["id"]: a for a in inmodal["annotations"]}
    by_image = defaultdict(list)
    for ann in amodal["annotations"]:
        by_image[ann["image_id"]].append(ann)
    out: list[dict] = []
    for img in amodal["images"]:
        if rng.random() < empty_image_rate:
            continue
        h, w = img["height"], img["width"]
        polys, inm, cats, scores, occ = [], [], [], [], []
        for ann in by_image.get(img["id"], []):
            copies = int(rng.random() < detect_rate) + int(rng.random() < duplicate_rate)
            for c in range(copies):
                x, y, bw, bh = ann["bbox"]
                spread = 0.04 if c == 0 else 0.15
                scale = 1.0 + rng.normal(0, spread)
                dx, dy = rng.normal(0, spread * bw), rng.normal(0, spread * bh)
                cx, cy = x + bw / 2, y + bh / 2
                seg = ann["segmentation"]
                if isinstance(seg, list):
                    shifted = []
                    for poly in seg:
                        p = np.asarray(poly, np.float64).reshape(-1, 2)
                        p = (p - (cx, cy)) * scale + (cx + dx, cy + dy)
                        p[:, 0] = np.clip(p[:, 0], 0, w)
                        p[:, 1] = np.clip(p[:, 1], 0, h)
                        shifted.append(p.ravel().tolist())
                    polys.append(shifted)
                else:
                    polys.append(seg)
                inm.append(inmodal_by_id[ann["id"]]["segmentation"])
                cat = ann["category_id"]
                if rng.random() < wrong_class_rate:
                    cat = int(rng.choice(cat_ids))
                cats.append(int(cat))
                scores.append(rng.uniform(0.3, 1.0) if c == 0 else rng.uniform(0.05, 0.6))
                occluded = ann["occlusion_ratio"] > 0.05
                occ.append(rng.uniform(0.35, 1.0) if occluded else rng.uniform(0.0, 0.65))
        n_true = min(len(polys), per_image)
        del polys[n_true:], inm[n_true:], cats[n_true:], scores[n_true:], occ[n_true:]
        n_false = per_image - n_true
        # False positives: octagons in random boxes; their "visible" part is the left 70 %.
        bw = rng.uniform(8, w / 4, n_false)
        bh = rng.uniform(8, h / 2.5, n_false)
        bx = rng.uniform(0, 1, n_false) * (w - bw)
        by = rng.uniform(0, 1, n_false) * (h - bh)
        angles = np.linspace(0, 2 * np.pi, 9)[:-1]
        ox = (bx + bw / 2)[:, None] + (bw / 2)[:, None] * np.cos(angles)[None]
        oy = (by + bh / 2)[:, None] + (bh / 2)[:, None] * np.sin(angles)[None]
        octagons = np.stack([ox, oy], axis=2).reshape(n_false, -1)
        cut = np.stack([bx, by, bx, by + bh, bx + 0.7 * bw, by + bh, bx + 0.7 * bw, by], 1)
        true_amodal = _rasterize(polys, h, w)
        fp_amodal = mask_utils.frPyObjects(octagons.tolist(), h, w) if n_false else []
        fp_cut = mask_utils.frPyObjects(cut.tolist(), h, w) if n_false else []
        amodal_rles = true_amodal + list(fp_amodal)
        inmodal_rles = [mask_utils.merge([a, _bytes_rle(b)], intersect=1)
                        for a, b in zip(true_amodal, inm)]
        inmodal_rles += [mask_utils.merge([a, b], intersect=1) for a, b in zip(fp_amodal, fp_cut)]
        cats += rng.choice(cat_ids, n_false).tolist()
        scores += rng.uniform(0.0, 0.6, n_false).tolist()
        occ += rng.uniform(0.0, 1.0, n_false).tolist()
        boxes = mask_utils.toBbox(amodal_rles) if amodal_rles else np.zeros((0, 4))
        # Boxes a little off the mask's own box, as a regressed box would be.
        boxes = boxes + rng.normal(0, 1.0, boxes.shape) * [1, 1, 0, 0]
        boxes[:, 2:] = np.maximum(boxes[:, 2:] + rng.normal(0, 1.0, (len(boxes), 2)), 0)
        boxes = np.round(boxes, 2).tolist()
        for i in range(len(amodal_rles)):
            out.append({"image_id": img["id"], "category_id": cats[i], "bbox": boxes[i],
                        "score": round(float(scores[i]), 5),
                        "segmentation": _str_rle(amodal_rles[i]),
                        "inmodal_segmentation": _str_rle(inmodal_rles[i]),
                        "occlusion_score": round(float(occ[i]), 5)})
    return out


def _rasterize(objects: list, h: int, w: int) -> list[dict]:
    """Polygons (or an RLE as it is) per object -> one bytes RLE per object."""
    parts = [p for obj in objects if isinstance(obj, list) for p in obj]
    rles = mask_utils.frPyObjects(parts, h, w) if parts else []
    out, k = [], 0
    for obj in objects:
        if isinstance(obj, list):
            n = len(obj)
            out.append(rles[k] if n == 1 else mask_utils.merge(rles[k:k + n]))
            k += n
        else:
            out.append(_bytes_rle(obj))
    return out


def _bytes_rle(rle: Mapping) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]),
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def _str_rle(rle: Mapping) -> dict:
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
