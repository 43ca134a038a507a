"""COCO evaluation of amodal instance segmentation predictions (DESIGN.md section 7).

:func:`evaluate` scores a predictions file (:mod:`asn.eval.predictions`) against the normalized
ground truth (``<split>_amodal.json``, ``<split>_inmodal.json``):

- Det AP: COCO bbox AP of the amodal boxes against the amodal file;
- Amodal Seg AP / Inmodal Seg AP: COCO segm AP of ``segmentation`` against the amodal file and
  of ``inmodal_segmentation`` against the inmodal file. As in detectron2, the segm evaluations
  see no ``bbox`` in the detections, so pycocotools uses the MASK area of a detection for the
  small / medium / large ranges (with a box it would use the box area);
- ``ap_occ_<bucket>``: amodal segm AP with the ground truths outside an occlusion-ratio bucket
  ignored, exactly as COCO ignores ground truths outside an area range (the COCOeval subclass
  and the definition are in :mod:`asn.eval.occlusion`);
- occlusion accuracy of ``occlusion_score`` on detections greedily matched to ground truths
  (:func:`asn.eval.occlusion.occlusion_accuracy`);
- the scene's occlusion order from the predictions scored against KINS' ``oco_id`` / ``ico_id``
  (``order_pair_accuracy`` and its coverage, ``order_cluster_accuracy``;
  :func:`asn.eval.order.order_scores`, definition ``order_definition`` beside the numbers).

:func:`write_per_class_csv` writes its per-class rows.

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
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from asn.errors import InputError
from asn.eval.occlusion import AP_OCC_DEFINITION, bucket_eval_class, normalize_buckets, occlusion_accuracy
from asn.eval.order import DEFAULT_IOU_MATCH, DEFAULT_MIN_PIXELS, DEFAULT_SCORE_THRESHOLD, order_scores
from asn.eval.predictions import is_finite_number, load_predictions
from asn.io import gc_paused, read_json, write_text_atomic

ENGINES = ("faster", "pycocotools")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
              "ARl")
# Evaluations with at least this many detections run in two forked processes; below it,
# starting them costs more than it saves.
PARALLEL_MIN_DETECTIONS = 50_000
PER_CLASS_COLUMNS = ("category_id", "name", "det_ap", "amodal_ap", "inmodal_ap")



# --------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------

def _load_ground_truth(path: str | os.PathLike, kind: str) -> dict:
    # A KINS-scale file holds millions of small objects: collections during the parse find
    # nothing (JSON has no cycles) and would cost more than the parse itself.
    with gc_paused():
        data = read_json(path)
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
        if kind == "amodal" and not is_finite_number(ann.get("occlusion_ratio")):
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
        cls = bucket_eval_class(_engine(self.engine)[1])
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
             order_score_threshold: float = DEFAULT_SCORE_THRESHOLD,
             order_min_pixels: int = DEFAULT_MIN_PIXELS, order_iou_match: float = DEFAULT_IOU_MATCH,
             workers: int | None = None, timings: dict | None = None) -> dict:
    """Score a predictions file against the normalized ground truth (DESIGN.md 7).

    Returns a JSON-ready dict: ``det_ap``, ``amodal_ap``, ``inmodal_ap`` and their ``_50`` /
    ``_75`` forms (percent); ``stats`` (the 12 COCO stats of each evaluation, as fractions,
    named in ``stats_names``); ``per_class`` rows; ``ap_occ_<bucket>`` (percent) with
    ``ap_occ_definition``, ``ap_occ_buckets`` and ``ap_occ_ground_truths``; the occlusion
    accuracy block; the order block (``order_*``, :func:`asn.eval.order.order_scores`, with
    ``order_definition``; order_score_threshold / order_min_pixels / order_iou_match are its
    settings); counts; and ``files``.

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
    buckets = normalize_buckets(occlusion_buckets)
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

    def scene_order() -> dict:
        return order_scores(predictions, amodal, inmodal, score_threshold=order_score_threshold,
                            min_pixels=order_min_pixels, iou_match=order_iou_match)

    if len(groups) == 1:
        # before the evaluations, which add their own fields to the ground-truth records
        order = scene_order()
        lap("order")
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
                order = scene_order()
                lap("order")
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
    out.update(order)
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
