"""Realistic predictions derived from a ground truth, to test and benchmark the evaluator.

:func:`perturbed_predictions` turns a normalized ground truth (the parsed
``<split>_amodal.json`` / ``<split>_inmodal.json``) into a predictions list in the format of
:mod:`asn.eval.predictions`: shifted and scaled copies of the true masks (some of another
class, some twice), false positives, images without detections; deterministic for a seed.
Used by tests/test_eval.py, tests/test_evaluate_cli.py and bench/eval.py (KINS test scale).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping

import numpy as np
from pycocotools import mask as mask_utils


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
