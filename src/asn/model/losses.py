"""Loss functions of the ASN heads (pure functions with empty-input guards).

The box losses are torchvision's ``fastrcnn_loss`` (re-exported); the mask loss is Mask
R-CNN's per-class binary cross entropy, generalized to take any ground-truth mask set
(amodal, inmodal or invisible), always cropped to the RoI box (the amodal proposal box).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import fastrcnn_loss, project_masks_on_boxes

__all__ = ["fastrcnn_loss", "mask_loss", "occlusion_loss", "mask_targets"]


def occlusion_loss(logits: Tensor, labels: Tensor, positive_weight: float) -> Tensor:
    """Two-way cross entropy of the occlusion classification branch.

    Args:
        logits: (R, 2) scores for (not occluded, occluded).
        labels: (R,) int64 in {0, 1}.
        positive_weight: class weight of "occluded" (the paper uses 8); torch's weighted mean
            divides by the summed weights of the RoIs.
    Returns:
        Scalar; 0 connected to the graph when R = 0.
    """
    if labels.numel() == 0:
        return logits.sum() * 0.0
    weight = torch.tensor([1.0, float(positive_weight)], dtype=logits.dtype, device=logits.device)
    return F.cross_entropy(logits, labels, weight=weight)


def mask_targets(
    gt_masks: list[Tensor], roi_boxes: list[Tensor], matched_idxs: list[Tensor], resolution: int
) -> Tensor:
    """Crop each RoI's matched ground-truth mask to the RoI box and resize it.

    Args:
        gt_masks: per image (N_i, H, W) uint8.
        roi_boxes: per image (P_i, 4) xyxy (positive RoIs only).
        matched_idxs: per image (P_i,) int64 into that image's ground truth.
        resolution: M of the (M, M) output.
    Returns:
        (sum P_i, M, M) float in [0, 1].
    """
    crops = [
        project_masks_on_boxes(masks, boxes, idxs, resolution)
        for masks, boxes, idxs in zip(gt_masks, roi_boxes, matched_idxs)
        if boxes.shape[0] > 0
    ]
    if not crops:
        device = roi_boxes[0].device if roi_boxes else torch.device("cpu")
        return torch.zeros((0, resolution, resolution), device=device)
    return torch.cat(crops, dim=0)


def mask_loss(
    mask_logits: Tensor,
    roi_boxes: list[Tensor],
    gt_masks: list[Tensor],
    gt_labels: list[Tensor],
    matched_idxs: list[Tensor],
) -> Tensor:
    """Per-class binary cross entropy against a given ground-truth mask set.

    Args:
        mask_logits: (P, K, M, M) for the P positive RoIs of the batch (images concatenated).
        roi_boxes: per image (P_i, 4) xyxy, sum P_i = P.
        gt_masks: per image (N_i, H, W) uint8, the mask set this head learns.
        gt_labels: per image (N_i,) int64.
        matched_idxs: per image (P_i,) int64.
    Returns:
        Scalar; 0 connected to the graph when P = 0.
    """
    if mask_logits.shape[0] == 0:
        return mask_logits.sum() * 0.0
    resolution = mask_logits.shape[-1]
    labels = torch.cat([lab[idx] for lab, idx in zip(gt_labels, matched_idxs)], dim=0)
    targets = mask_targets(gt_masks, roi_boxes, matched_idxs, resolution)
    picked = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(picked, targets.to(picked.dtype))
