"""Input/output transform that carries both mask sets.

torchvision's :class:`GeneralizedRCNNTransform` resizes only ``target["masks"]`` and pastes
back only ``result["masks"]``. The amodal models need the same for ``amodal_masks`` and
``inmodal_masks`` (and ORCNN's ``invisible_masks`` on the output side).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.models.detection.transform import GeneralizedRCNNTransform

TARGET_MASK_KEYS = ("amodal_masks", "inmodal_masks")
RESULT_MASK_KEYS = ("amodal_masks", "inmodal_masks", "invisible_masks")


class AmodalRCNNTransform(GeneralizedRCNNTransform):
    """Normalize, resize and batch images; resize both target mask sets with them; paste the
    predicted (K, 1, 28, 28) mask probabilities of every mask key back at original size.

    ``paste_masks = False`` (set by the evaluation) leaves the masks in their boxes and adds
    ``image_size`` (H, W) to each result instead: the evaluation pastes and encodes them in one
    pass (:func:`asn.eval.predictions.paste_masks_to_rles`, the same binary masks).
    """

    paste_masks: bool = True

    def resize(self, image: Tensor, target: Optional[dict[str, Tensor]] = None):
        image, target = super().resize(image, target)
        if target is None:
            return image, target
        size = image.shape[-2:]
        for key in TARGET_MASK_KEYS:
            if key in target:
                masks = target[key]
                if masks.shape[0] == 0:
                    target[key] = masks.new_zeros((0, *size), dtype=torch.uint8)
                elif masks.shape[-2:] != size:
                    # nearest, as torchvision does for "masks": keeps them binary
                    masks = torch.nn.functional.interpolate(masks[:, None].float(), size=tuple(size))[:, 0]
                    target[key] = masks.to(torch.uint8)
        return image, target

    def postprocess(
        self,
        result: list[dict[str, Tensor]],
        image_shapes: list[tuple[int, int]],
        original_image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        if self.training:
            return result
        result = super().postprocess(result, image_shapes, original_image_sizes)
        for pred, original_size in zip(result, original_image_sizes):
            if not self.paste_masks:
                pred["image_size"] = torch.tensor(original_size, dtype=torch.int64)
                continue
            pasted: dict[int, Tensor] = {}
            for key in RESULT_MASK_KEYS:
                if key in pred:
                    # single-mask variants return one tensor under two keys: paste it once
                    source = pred[key]
                    if id(source) not in pasted:
                        pasted[id(source)] = paste_masks_in_image(source, pred["boxes"], original_size)
                    pred[key] = pasted[id(source)]
        return result
