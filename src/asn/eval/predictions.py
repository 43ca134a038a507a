"""The predictions format (DESIGN.md 2): model outputs -> entries, and reading a file.

A predictions file is a COCO results list, one entry per detection, with the keys
PREDICTION_KEYS: ``image_id``, ``category_id``, ``bbox`` (amodal xywh), ``score``,
``segmentation`` (amodal compressed RLE), ``inmodal_segmentation`` (compressed RLE) and
``occlusion_score``. Predictions written by ``asn evaluate`` / ``asn predict`` also carry
``oco_id`` / ``ico_id`` (the scene's occlusion order rebuilt from the masks, KINS 2020 numbering;
0 / 0 = not ordered, score below the order threshold; :mod:`asn.eval.order`); they are optional
when reading.

- :func:`masks_to_rles` / :func:`detections_to_results`: one image's model output -> entries
  (``asn evaluate``'s inference and ``asn predict``);
- :func:`load_predictions`: read a file and validate every entry against the ground truth's
  image and category ids (and image sizes), raising ``InputError`` at the first bad entry with
  the reason (:func:`_entry_ok` is the fast check of every entry, :func:`_entry_problem` finds
  the reason of a failing one).

:func:`asn.eval.coco.evaluate` scores such a file.
"""

from __future__ import annotations

import math
import os
from typing import Any, Collection, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from asn.errors import InputError
from asn.io import gc_paused, read_json

# Keys every prediction must have (types: see _entry_problem).
PREDICTION_KEYS = ("image_id", "category_id", "bbox", "score", "segmentation",
                   "inmodal_segmentation", "occlusion_score")


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


def paste_masks_to_rles(masks: Any, boxes: Any, image_size: Sequence[int], threshold: float = 0.5) -> list[dict]:
    """(K, 1, M, M) mask probabilities in their boxes -> K compressed RLEs at ``image_size``.

    The same masks, bit for bit, as torchvision's ``paste_masks_in_image`` (1-pixel zero pad,
    box expanded by (M + 2) / M, bilinear resize to the integer box, pasted inside the image)
    followed by ``> threshold``: each mask is resized exactly as there, but only its box is
    thresholded and written, straight into the Fortran-ordered uint8 buffer pycocotools encodes.
    torchvision's way builds K float images and stacks them: a second and more per image of
    100 detections at 640x192 on a CPU.
    """
    import torch
    import torch.nn.functional as F
    from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

    masks = torch.as_tensor(masks)
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    if masks.dim() != 4 or masks.shape[1] != 1 or masks.shape[0] != boxes.shape[0]:
        raise ValueError(f"masks: expected (K, 1, M, M) for K = {boxes.shape[0]} boxes, got {tuple(masks.shape)}")
    height, width = int(image_size[0]), int(image_size[1])
    count = masks.shape[0]
    if count == 0:
        return []
    padded, scale = expand_masks(masks.detach().to("cpu", torch.float32), padding=1)
    expanded = expand_boxes(boxes.detach().to("cpu"), scale).to(dtype=torch.int64).tolist()
    # C-ordered (K, W, H) is the Fortran-ordered (H, W, K) that pycocotools encodes
    buffer = np.zeros((count, width, height), dtype=np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(expanded):
        w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
        resized = F.interpolate(padded[k:k + 1], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        left, right, top, bottom = max(x0, 0), min(x1 + 1, width), max(y0, 0), min(y1 + 1, height)
        if right <= left or bottom <= top:
            continue
        patch = resized[top - y0:bottom - y0, left - x0:right - x0] > threshold
        buffer[k, left:right, top:bottom] = patch.numpy().T
    rles = mask_utils.encode(buffer.transpose(2, 1, 0))
    return [{"size": [height, width], "counts": r["counts"].decode("ascii")} for r in rles]


def detections_to_results(output: Mapping[str, Any], image_id: int,
                          label_to_category: Mapping[int, int] | Sequence[int],
                          mask_threshold: float = 0.5) -> list[dict]:
    """One image's model output -> prediction entries (DESIGN.md 2).

    output: ``boxes`` (K, 4) xyxy, ``labels`` (K,) contiguous 1..C, ``scores`` (K,),
    ``amodal_masks`` / ``inmodal_masks`` (K, 1, H, W) probabilities at image size, or
    (K, 1, M, M) in their boxes together with ``image_size`` (H, W) (a model whose transform does
    not paste, see :attr:`asn.model.transform.AmodalRCNNTransform.paste_masks`; identical RLEs),
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
    if "image_size" in output:  # masks still in their boxes: paste while encoding
        size = [int(v) for v in array("image_size").reshape(-1)]
        amodal = paste_masks_to_rles(output["amodal_masks"], output["boxes"], size, mask_threshold)
        inmodal = (amodal if output["inmodal_masks"] is output["amodal_masks"]
                   else paste_masks_to_rles(output["inmodal_masks"], output["boxes"], size, mask_threshold))
    else:
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

def is_finite_number(value: Any) -> bool:
    """A finite int or float (not a bool, not a numeric string)."""
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
    if type(box) is not list or len(box) != 4 or not all(is_finite_number(v) for v in box):
        return f"bbox must be 4 finite numbers [x, y, w, h], got {box!r}"
    if box[2] < 0 or box[3] < 0:
        return f"bbox width and height must be >= 0, got {box!r}"
    for key in ("score", "occlusion_score"):
        if not is_finite_number(entry[key]):
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
