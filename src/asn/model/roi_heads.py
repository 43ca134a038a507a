"""``AmodalRoIHeads``: torchvision's ``RoIHeads`` with an occlusion classification branch,
amodal / inmodal / invisible mask branches and Multi-Level Coding.

Training (per batch): torchvision's proposal sampling and matching, then
- box branch (4conv + FC) -> ``loss_classifier``, ``loss_box_reg`` (torchvision's loss);
- occlusion branch (same structure, same 7x7 RoI features) -> ``loss_occlusion``, labels from
  :func:`asn.model.targets.occlusion_labels` (``occlusion_rule="ratio"``) or
  :func:`asn.model.targets.occlusion_labels_released` (``"released"``);
- each enabled mask branch on the foreground RoIs -> ``loss_<name>_mask``, supervised by its
  own ground truth cropped to the (amodal) RoI box. With MLC only the foreground RoIs' box /
  occlusion features feed the mask branches.

Inference (two passes), in one of two orders (``inference_order``):
- ``"released"`` (default, the released code's order): the box branch scores and regresses the
  proposals; torchvision's post-processing (score threshold, per-class NMS, top-k) keeps the
  detections; their regressed boxes then go back through the box and occlusion branches, which
  yields the occlusion scores and the box / occlusion features MLC combines into the amodal
  and inmodal masks. Class scores are those of the first pass; NMS runs before the second pass
  so that it costs ~100 RoIs rather than every proposal.
- ``"paper"`` (section 4.3): every proposal's regressed box (that of its best foreground
  class) goes back through the box branch, whose second-pass class scores rank it; then the
  same post-processing (threshold, NMS, top-k) on those boxes and scores; then the occlusion
  branch and the masks on the kept boxes. The second pass runs on every proposal (~300 RoIs
  in the smoke preset, 1000 in the paper's), which is what it costs.

Outputs per image: ``boxes``, ``labels``, ``scores``, ``amodal_masks``, ``inmodal_masks``
(K, 1, 28, 28 probabilities here, pasted at image size by the transform), ``occlusion_scores``
(K,), and ``invisible_masks`` for ORCNN. Every variant returns all of these keys so the
evaluator can treat models alike; :attr:`AmodalRoIHeads.output_sources` says which head
produced each (a single-mask variant reports its one mask under both keys; without the
occlusion branch ``occlusion_scores`` are ``1 - |inmodal| / |amodal|`` of the predicted masks,
or zeros when only one mask set exists).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_inference

from asn.model.heads import ConvFCHead, MaskBranch
from asn.model.losses import fastrcnn_loss, mask_loss, occlusion_loss
from asn.model.targets import occluded_masks, occlusion_labels, occlusion_labels_released

OCCLUSION_RULES = ("ratio", "released")
INFERENCE_ORDERS = ("released", "paper")
MASK_BRANCH_NAMES = ("amodal", "inmodal", "invisible")


class AmodalRoIHeads(RoIHeads):
    """See the module docstring. Box-branch arguments are torchvision's ``RoIHeads`` ones."""

    def __init__(
        self,
        box_roi_pool: nn.Module,
        box_head: ConvFCHead,
        box_predictor: nn.Module,
        *,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        bbox_reg_weights: Optional[tuple[float, float, float, float]] = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        occlusion_head: Optional[ConvFCHead] = None,
        occlusion_predictor: Optional[nn.Module] = None,
        occlusion_threshold: float = 0.05,
        occlusion_positive_weight: float = 8.0,
        occlusion_rule: str = "ratio",
        mask_roi_pool: Optional[nn.Module] = None,
        mask_branches: Optional[dict[str, MaskBranch]] = None,
        mlc_box_level: int = 1,
        inference_order: str = "released",
    ):
        super().__init__(
            box_roi_pool, box_head, box_predictor,
            fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction, bbox_reg_weights,
            score_thresh, nms_thresh, detections_per_img,
        )
        if inference_order not in INFERENCE_ORDERS:
            raise ValueError(f"inference_order must be one of {INFERENCE_ORDERS}, got {inference_order!r}")
        self.inference_order = inference_order
        if occlusion_rule not in OCCLUSION_RULES:
            raise ValueError(f"occlusion_rule must be one of {OCCLUSION_RULES}, got {occlusion_rule!r}")
        if (occlusion_head is None) != (occlusion_predictor is None):
            raise ValueError("occlusion_head and occlusion_predictor come together")
        mask_branches = dict(mask_branches or {})
        unknown = set(mask_branches) - set(MASK_BRANCH_NAMES)
        if unknown:
            raise ValueError(f"unknown mask branches {sorted(unknown)}; valid: {MASK_BRANCH_NAMES}")
        if mask_branches and mask_roi_pool is None:
            raise ValueError("mask branches need mask_roi_pool")
        if "invisible" in mask_branches and not {"amodal", "inmodal"} <= set(mask_branches):
            raise ValueError("the invisible mask branch (ORCNN) needs both amodal and inmodal branches")
        self.occlusion_head = occlusion_head
        self.occlusion_predictor = occlusion_predictor
        self.occlusion_threshold = float(occlusion_threshold)
        self.occlusion_positive_weight = float(occlusion_positive_weight)
        self.occlusion_rule = occlusion_rule
        # torchvision's own mask attributes stay None: its forward is replaced below
        self.amodal_mask_roi_pool = mask_roi_pool
        self.mask_branches = nn.ModuleDict({k: mask_branches[k] for k in MASK_BRANCH_NAMES if k in mask_branches})
        self.mlc_box_level = int(mlc_box_level)
        uses_mlc = any(branch.mlc is not None for branch in self.mask_branches.values())
        if uses_mlc and not self.has_occlusion():
            raise ValueError("MLC needs the occlusion branch (it fuses box and occlusion features)")
        num_box_convs = len(box_head.convs)
        if uses_mlc and not 0 <= self.mlc_box_level <= num_box_convs:
            raise ValueError(f"mlc_box_level must be in 0..{num_box_convs}, got {mlc_box_level}")

    # ----------------------------------------------------------------- capabilities
    def has_occlusion(self) -> bool:
        return self.occlusion_head is not None and self.occlusion_predictor is not None

    def has_amodal(self) -> bool:
        return "amodal" in self.mask_branches

    def has_inmodal(self) -> bool:
        return "inmodal" in self.mask_branches

    def has_invisible(self) -> bool:
        return "invisible" in self.mask_branches

    def has_mlc(self) -> bool:
        return any(branch.mlc is not None for branch in self.mask_branches.values())

    def has_mask(self) -> bool:
        return len(self.mask_branches) > 0

    @property
    def output_sources(self) -> dict[str, str]:
        """Which head produced each output key (see the module docstring)."""
        amodal = "amodal" if self.has_amodal() else ("inmodal" if self.has_inmodal() else "none")
        inmodal = "inmodal" if self.has_inmodal() else ("amodal" if self.has_amodal() else "none")
        if self.has_occlusion():
            occlusion = "occlusion_branch"
        elif self.has_amodal() and self.has_inmodal():
            occlusion = "mask_ratio"
        else:
            occlusion = "zeros"
        sources = {"amodal_masks": amodal, "inmodal_masks": inmodal, "occlusion_scores": occlusion}
        if self.has_invisible():
            sources["invisible_masks"] = "invisible"
        return sources

    def required_target_keys(self) -> tuple[str, ...]:
        keys = ["boxes", "labels"]
        if self.has_amodal():
            keys.append("amodal_masks")
        if self.has_inmodal():
            keys.append("inmodal_masks")
        if self.has_occlusion():
            keys.append("occlusion_ratios")
        return tuple(keys)

    def check_targets(self, targets):
        if targets is None:
            raise ValueError("targets should not be None")
        for index, target in enumerate(targets):
            for key in self.required_target_keys():
                if key not in target:
                    raise ValueError(f"targets[{index}] has no {key!r} key, which this model trains on")
        if self.has_occlusion() and self.occlusion_rule == "released":
            for index, target in enumerate(targets):
                if "amodal_masks" not in target or "inmodal_masks" not in target:
                    raise ValueError(f"targets[{index}]: occlusion_rule='released' needs both mask sets")

    # ----------------------------------------------------------------- training pieces
    def occlusion_targets(
        self,
        proposals: list[Tensor],
        labels: list[Tensor],
        matched_idxs: list[Tensor],
        targets: list[dict[str, Tensor]],
    ) -> Tensor:
        """Occlusion label of every sampled RoI of the batch, (R,) int64."""
        per_image = []
        for boxes, labels_in_image, idxs, target in zip(proposals, labels, matched_idxs, targets):
            if self.occlusion_rule == "released":
                per_image.append(
                    occlusion_labels_released(
                        boxes, labels_in_image, idxs, occluded_masks(target["amodal_masks"], target["inmodal_masks"])
                    )
                )
                continue
            ratios = target["occlusion_ratios"]
            if ratios.numel() == 0:
                matched = torch.zeros(idxs.shape, dtype=torch.float32, device=idxs.device)
            else:
                matched = ratios.to(torch.float32)[idxs]
            per_image.append(occlusion_labels(matched, labels_in_image, self.occlusion_threshold))
        return torch.cat(per_image, dim=0)

    def _gt_masks(self, name: str, targets: list[dict[str, Tensor]]) -> list[Tensor]:
        if name == "invisible":
            return [occluded_masks(t["amodal_masks"], t["inmodal_masks"]) for t in targets]
        return [t[f"{name}_masks"] for t in targets]

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: Optional[list[dict[str, Tensor]]] = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if self.training:
            return [], self._forward_train(features, proposals, image_shapes, targets)
        return self._forward_inference(features, proposals, image_shapes), {}

    def _forward_train(self, features, proposals, image_shapes, targets) -> dict[str, Tensor]:
        if targets is None:
            raise ValueError("targets should not be None in training")
        for index, target in enumerate(targets):
            if not target["boxes"].is_floating_point():
                raise TypeError(f"targets[{index}]['boxes'] must be float, got {target['boxes'].dtype}")
            if target["labels"].dtype != torch.int64:
                raise TypeError(f"targets[{index}]['labels'] must be int64, got {target['labels'].dtype}")
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        tap = self.mlc_box_level if self.has_mlc() else None
        pooled = self.box_roi_pool(features, proposals, image_shapes)
        box_fc, box_tap = self.box_head(pooled, tap)
        class_logits, box_regression = self.box_predictor(box_fc)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}

        occlusion_tap = None
        if self.has_occlusion():
            occlusion_fc, occlusion_tap = self.occlusion_head(pooled, tap)
            occlusion_logits = self.occlusion_predictor(occlusion_fc)
            occlusion_gt = self.occlusion_targets(proposals, labels, matched_idxs, targets)
            losses["loss_occlusion"] = occlusion_loss(occlusion_logits, occlusion_gt, self.occlusion_positive_weight)

        if self.has_mask():
            mask_proposals, positive_matched_idxs, positive_global = [], [], []
            offset = 0
            for boxes, labels_in_image, idxs in zip(proposals, labels, matched_idxs):
                positive = torch.where(labels_in_image > 0)[0]
                mask_proposals.append(boxes[positive])
                positive_matched_idxs.append(idxs[positive])
                positive_global.append(positive + offset)
                offset += boxes.shape[0]
            positive_global_idx = torch.cat(positive_global)
            box_feature = box_tap[positive_global_idx] if box_tap is not None else None
            occlusion_feature = occlusion_tap[positive_global_idx] if occlusion_tap is not None else None
            mask_pooled = self.amodal_mask_roi_pool(features, mask_proposals, image_shapes)
            gt_labels = [t["labels"] for t in targets]
            for name, branch in self.mask_branches.items():
                logits = branch(mask_pooled, box_feature, occlusion_feature)
                losses[f"loss_{name}_mask"] = mask_loss(
                    logits, mask_proposals, self._gt_masks(name, targets), gt_labels, positive_matched_idxs
                )
        return losses

    def regressed_boxes(self, class_logits: Tensor, box_regression: Tensor, proposals: list[Tensor],
                        image_shapes: list[tuple[int, int]]) -> list[Tensor]:
        """Each proposal's box regressed for its highest-scoring foreground class, clipped to its
        image: (sum R_i, num_classes) logits and (sum R_i, 4 * num_classes) deltas -> [(R_i, 4)]."""
        counts = [p.shape[0] for p in proposals]
        if sum(counts) == 0:
            return [p.clone() for p in proposals]
        decoded = self.box_coder.decode(box_regression, proposals)  # (R, num_classes, 4)
        best = F.softmax(class_logits, -1)[:, 1:].argmax(dim=1) + 1
        chosen = decoded[torch.arange(decoded.shape[0], device=decoded.device), best]
        out = []
        for boxes, shape in zip(chosen.split(counts), image_shapes):
            height, width = shape
            out.append(torch.stack([boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                                    boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)], dim=1))
        return out

    def _forward_inference(self, features, proposals, image_shapes) -> list[dict[str, Tensor]]:
        pooled = self.box_roi_pool(features, proposals, image_shapes)
        box_fc, _ = self.box_head(pooled)
        class_logits, box_regression = self.box_predictor(box_fc)
        if self.inference_order == "paper":
            proposals = self.regressed_boxes(class_logits, box_regression, proposals, image_shapes)
            pooled = self.box_roi_pool(features, proposals, image_shapes)
            box_fc, _ = self.box_head(pooled)
            class_logits, _ = self.box_predictor(box_fc)
            # the boxes are final: zero deltas decode every class's box to the regressed box itself
            box_regression = torch.zeros_like(box_regression)
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        counts = [b.shape[0] for b in boxes]
        result = [{"boxes": b, "labels": lab, "scores": s} for b, lab, s in zip(boxes, labels, scores)]

        # second pass: the regressed boxes go back through the box and occlusion branches
        box_tap = occlusion_tap = occlusion_scores = None
        if self.has_occlusion() or self.has_mlc():
            tap = self.mlc_box_level if self.has_mlc() else None
            pooled = self.box_roi_pool(features, boxes, image_shapes)
            if self.has_mlc():
                _, box_tap = self.box_head(pooled, tap, stop_at_tap=True)
            if self.has_occlusion():
                occlusion_fc, occlusion_tap = self.occlusion_head(pooled, tap)
                occlusion_scores = F.softmax(self.occlusion_predictor(occlusion_fc), dim=-1)[:, 1]

        probs: dict[str, list[Tensor]] = {}
        if self.has_mask():
            mask_pooled = self.amodal_mask_roi_pool(features, boxes, image_shapes)
            for name, branch in self.mask_branches.items():
                logits = branch(mask_pooled, box_tap, occlusion_tap)
                probs[name] = list(maskrcnn_inference(logits, labels))

        for index, pred in enumerate(result):
            amodal = probs.get("amodal", probs.get("inmodal"))
            inmodal = probs.get("inmodal", probs.get("amodal"))
            if amodal is not None:
                pred["amodal_masks"] = amodal[index]
                pred["inmodal_masks"] = inmodal[index]
            if "invisible" in probs:
                pred["invisible_masks"] = probs["invisible"][index]
            if occlusion_scores is not None:
                pred["occlusion_scores"] = occlusion_scores.split(counts)[index]
            elif "amodal" in probs and "inmodal" in probs:
                amodal_bin = probs["amodal"][index] > 0.5
                visible = (amodal_bin & (probs["inmodal"][index] > 0.5)).flatten(1).sum(1).float()
                area = amodal_bin.flatten(1).sum(1).float()
                pred["occlusion_scores"] = torch.where(area > 0, 1 - visible / area.clamp(min=1), torch.zeros_like(area))
            else:
                pred["occlusion_scores"] = torch.zeros_like(pred["scores"])
        return result
