"""Target validation and the pure label rules of the ASN model family.

Everything here is a pure function on tensors (no module state), so the rules can be tested
in isolation and reused by the evaluator:

- :func:`validate_targets` checks a batch of torchvision-style targets against what a variant
  needs and returns normalized copies (masks as uint8, ``occlusion_ratios`` filled in);
- :func:`occlusion_ratios_from_masks` is the paper's ratio ``1 - |inmodal| / |amodal|`` (a rule of
  the data, defined in :mod:`asn.data.dataset` and imported here for the model's callers);
- :func:`occlusion_labels` is the paper's RoI rule (foreground and matched ratio > threshold);
- :func:`occlusion_labels_released` is the rule of the released code (foreground and any
  occluded pixel of the matched ground truth inside the RoI window);
- :func:`occluded_masks` is ``amodal and not inmodal`` (the invisible part, ORCNN's target).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

# a rule of the data, defined there; importable from here too, as the model's callers do
from asn.data.dataset import occlusion_ratios_from_masks

MASK_KEYS = ("amodal_masks", "inmodal_masks")


def occluded_masks(amodal_masks: Tensor, inmodal_masks: Tensor) -> Tensor:
    """The invisible (occluded) part of each instance: amodal and not inmodal.

    Args:
        amodal_masks, inmodal_masks: (N, H, W) uint8/bool.
    Returns:
        (N, H, W) uint8.
    """
    return (amodal_masks.ne(0) & inmodal_masks.eq(0)).to(torch.uint8)


def occlusion_labels(matched_occlusion_ratios: Tensor, labels: Tensor, threshold: float) -> Tensor:
    """Paper rule: a RoI is occluded (1) iff it is foreground and the occlusion ratio of its
    matched ground truth exceeds ``threshold``.

    Args:
        matched_occlusion_ratios: (R,) float, ratio of the ground truth each RoI is matched to
            (any value for background RoIs).
        labels: (R,) int64 class labels of the RoIs, 0 = background (-1 = ignored counts as not
            foreground).
        threshold: ratio threshold, e.g. 0.05.
    Returns:
        (R,) int64 in {0, 1}; empty in, empty out.
    """
    if labels.numel() == 0:
        return torch.zeros((0,), dtype=torch.int64, device=labels.device)
    positive = (labels > 0) & (matched_occlusion_ratios > threshold)
    return positive.to(torch.int64)


def occlusion_labels_released(
    roi_boxes: Tensor,
    labels: Tensor,
    matched_idxs: Tensor,
    occluded_masks_of_image: Tensor,
) -> Tensor:
    """Released-code rule: a RoI is occluded (1) iff it is foreground and its matched ground
    truth has at least one occluded pixel inside the RoI window.

    Args:
        roi_boxes: (R, 4) xyxy in the coordinates of ``occluded_masks_of_image``.
        labels: (R,) int64, 0 = background.
        matched_idxs: (R,) int64 index of the matched ground truth (clamped, any value for
            background RoIs).
        occluded_masks_of_image: (N, H, W) uint8/bool, invisible part of every ground truth.
    Returns:
        (R,) int64 in {0, 1}.
    """
    num_rois = labels.numel()
    if num_rois == 0 or occluded_masks_of_image.shape[0] == 0:
        return torch.zeros((num_rois,), dtype=torch.int64, device=labels.device)
    _, height, width = occluded_masks_of_image.shape
    # summed-area table: the occluded pixel count inside any window costs four lookups
    integral = occluded_masks_of_image.ne(0).to(torch.int32).cumsum(1).cumsum(2)
    integral = torch.nn.functional.pad(integral, (1, 0, 1, 0))
    x1 = roi_boxes[:, 0].floor().clamp(0, width).long()
    y1 = roi_boxes[:, 1].floor().clamp(0, height).long()
    x2 = roi_boxes[:, 2].ceil().clamp(0, width).long()
    y2 = roi_boxes[:, 3].ceil().clamp(0, height).long()
    gt = matched_idxs.clamp(0, occluded_masks_of_image.shape[0] - 1)
    count = integral[gt, y2, x2] - integral[gt, y1, x2] - integral[gt, y2, x1] + integral[gt, y1, x1]
    return ((labels > 0) & (count > 0)).to(torch.int64)


def _fail(error: type[Exception], index: int, key: str, reason: str) -> Exception:
    return error(f"targets[{index}][{key!r}]: {reason}")


def validate_targets(
    images: Sequence[Tensor],
    targets: Sequence[dict[str, Tensor]] | None,
    *,
    num_classes: int,
    need_amodal_masks: bool,
    need_inmodal_masks: bool,
    need_occlusion_ratios: bool,
) -> list[dict[str, Tensor]]:
    """Check training targets and return normalized shallow copies.

    Args:
        images: list of (3, H, W) float tensors (the targets' masks must be H x W).
        targets: one dict per image with ``boxes`` (N, 4) float amodal xyxy, ``labels`` (N,)
            int64 in 1..num_classes-1, optional ``amodal_masks`` / ``inmodal_masks`` (N, H, W)
            uint8 or bool, optional ``occlusion_ratios`` (N,) float in [0, 1].
        num_classes: including background.
        need_*: what the variant trains. ``occlusion_ratios`` are computed from the two mask
            sets when absent.
    Returns:
        New dicts (the input dicts are not modified) with masks as uint8 and
        ``occlusion_ratios`` present when needed.
    Raises:
        TypeError for wrong container or dtype, ValueError for a missing key, a wrong shape,
        a count mismatch between keys, a degenerate box or a label out of range. The message
        names the image index and the key.
    """
    if targets is None:
        raise ValueError("training needs targets: one dict per image, got None")
    if not isinstance(targets, (list, tuple)):
        raise TypeError(f"targets must be a list of dicts, got {type(targets).__name__}")
    if len(targets) != len(images):
        raise ValueError(f"got {len(images)} images but {len(targets)} targets; need one target dict per image")
    normalized: list[dict[str, Tensor]] = []
    for index, (image, target) in enumerate(zip(images, targets)):
        if not isinstance(target, dict):
            raise TypeError(f"targets[{index}] must be a dict, got {type(target).__name__}")
        out = dict(target)
        for key in ("boxes", "labels"):
            if key not in target:
                raise _fail(ValueError, index, key, "missing (every target needs 'boxes' and 'labels')")
            if not isinstance(target[key], Tensor):
                raise _fail(TypeError, index, key, f"must be a torch.Tensor, got {type(target[key]).__name__}")
        boxes, labels = target["boxes"], target["labels"]
        if not boxes.is_floating_point():
            raise _fail(TypeError, index, "boxes", f"must be float, got {boxes.dtype}")
        if boxes.shape == (0,):
            # torch.tensor([]) is the usual way to write "no objects": accept it as (0, 4)
            boxes = boxes.reshape(0, 4)
            out["boxes"] = boxes
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise _fail(ValueError, index, "boxes", f"expected shape (N, 4), got {tuple(boxes.shape)}")
        num = boxes.shape[0]
        if labels.numel() == 0 and num == 0:
            labels = labels.reshape(0).to(torch.int64)
            out["labels"] = labels
        if labels.dtype != torch.int64:
            raise _fail(TypeError, index, "labels", f"must be int64, got {labels.dtype}")
        if labels.shape != (num,):
            raise _fail(ValueError, index, "labels", f"expected shape ({num},) to match boxes, got {tuple(labels.shape)}")
        if num:
            if not torch.isfinite(boxes).all():
                raise _fail(ValueError, index, "boxes", "contains NaN or infinite values")
            degenerate = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
            if degenerate.any():
                bad = int(torch.where(degenerate)[0][0])
                raise _fail(ValueError, index, "boxes", f"box {bad} = {boxes[bad].tolist()} has x2<=x1 or y2<=y1")
            if labels.min() < 1 or labels.max() >= num_classes:
                raise _fail(
                    ValueError, index, "labels",
                    f"values must be in 1..{num_classes - 1} (0 is background), got min {int(labels.min())} "
                    f"max {int(labels.max())}",
                )
        height, width = image.shape[-2:]
        for key, needed in (("amodal_masks", need_amodal_masks), ("inmodal_masks", need_inmodal_masks)):
            if key not in target:
                if needed:
                    raise _fail(ValueError, index, key, "missing, but this model variant trains on it")
                continue
            masks = target[key]
            if not isinstance(masks, Tensor):
                raise _fail(TypeError, index, key, f"must be a torch.Tensor, got {type(masks).__name__}")
            if masks.dtype not in (torch.uint8, torch.bool):
                raise _fail(TypeError, index, key, f"must be uint8 or bool, got {masks.dtype}")
            if masks.shape != (num, height, width):
                raise _fail(
                    ValueError, index, key,
                    f"expected shape ({num}, {height}, {width}) (N boxes, image H, W), got {tuple(masks.shape)}",
                )
            out[key] = masks.to(torch.uint8)
        if "occlusion_ratios" in target:
            ratios = target["occlusion_ratios"]
            if not isinstance(ratios, Tensor) or not ratios.is_floating_point():
                raise _fail(TypeError, index, "occlusion_ratios", "must be a float tensor")
            if ratios.shape != (num,):
                raise _fail(ValueError, index, "occlusion_ratios", f"expected shape ({num},), got {tuple(ratios.shape)}")
            if num and ((ratios < 0) | (ratios > 1) | ~torch.isfinite(ratios)).any():
                raise _fail(ValueError, index, "occlusion_ratios", "values must be in [0, 1]")
        elif need_occlusion_ratios:
            if "amodal_masks" not in out or "inmodal_masks" not in out:
                raise _fail(
                    ValueError, index, "occlusion_ratios",
                    "missing, and cannot be computed without both 'amodal_masks' and 'inmodal_masks'",
                )
            out["occlusion_ratios"] = occlusion_ratios_from_masks(out["amodal_masks"], out["inmodal_masks"])
        normalized.append(out)
    return normalized
