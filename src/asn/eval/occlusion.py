"""Occlusion metrics (DESIGN.md 7): AP by occlusion bucket, occlusion accuracy of the OC branch.

- ``ap_occ_<bucket>`` (AP_OCC_DEFINITION): amodal segm AP with the ground truths whose
  occlusion ratio lies outside a bucket ignored, exactly as COCO ignores ground truths outside
  an area range (never COCO's APs/APm/APl). :func:`bucket_eval_class` is that COCOeval
  subclass for either engine, :func:`normalize_buckets` checks configured buckets
  (DEFAULT_OCCLUSION_BUCKETS when none); :func:`asn.eval.coco.evaluate` runs them.
- ``occlusion_accuracy`` (OCCLUSION_ACCURACY_DEFINITION): ``occlusion_score`` against the
  occlusion ratio of the ground truth each detection is greedily matched to
  (:func:`match_detections`, vectorized over images).

Both definitions are written into every metrics JSON beside the numbers.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from asn.errors import InputError

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


# --------------------------------------------------------------------------------------------
# AP by occlusion bucket
# --------------------------------------------------------------------------------------------

def _outside(gt: Mapping, bucket: tuple[float, float]) -> bool:
    return not bucket[0] <= gt["occlusion_ratio"] < bucket[1]


def bucket_eval_class(base: type) -> type:
    """A subclass of an engine's COCOeval (``base``) that ignores ground truths outside an
    occlusion-ratio bucket (``ap_occ``, AP_OCC_DEFINITION).

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
    class OcclusionBucketEval(base):
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


def normalize_buckets(
        buckets: Mapping[str, Sequence[float]] | None) -> dict[str, tuple[float, float]]:
    """Configured buckets (name -> [lo, hi) of occlusion ratio) checked and as float pairs;
    None gives DEFAULT_OCCLUSION_BUCKETS."""
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
