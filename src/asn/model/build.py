"""Variant registry and builder: ``build_model(variant, num_classes, backbone, ...)``.

Variants (``VARIANTS``; every switch and knob can be overridden by keyword):

============== ===== ========= === ====== ======= =========
variant        PANet occlusion MLC amodal inmodal invisible
============== ===== ========= === ====== ======= =========
mrcnn_inmodal                        -      x
mrcnn_amodal                         x      -
mrcnn                                x      x
mrcnn_oc             x               x      x
mrcnn_asn            x         x     x      x
panet          x                     x      x
panet_asn      x     x         x     x      x
orcnn                                x      x       x
============== ===== ========= === ====== ======= =========

Mask R-CNN here is the paper's: 4conv + FC box head (C=256 at paper width), 4-conv mask
heads. ``mrcnn_asn`` is the default ASN (OC + MLC(1, 1)).

Knobs (:func:`variant_defaults` lists them with their defaults for a backbone):
occlusion_threshold (ratio above which a RoI is "occluded"), occlusion_positive_weight,
occlusion_rule ("ratio" = paper, "released" = any occluded pixel in the RoI window),
mlc_box_level a / mlc_mask_level b (the paper's MLC(a, b): after the a-th box / occlusion conv
and the b-th mask conv, 0 = the RoI feature, 0..4; see :mod:`asn.model.mlc`), mlc_extraction_fusion
("concat"|"add"), mlc_order_adjust, mlc_extraction_convs / mlc_combination_convs (1..3),
mlc_variant ("paper"|"released"), and sizes: min_size, max_size, fpn_channels,
box_conv_channels, box_fc_dim, mask_conv_channels, rpn_{pre,post}_nms_top_n_{train,test}, anchor_sizes (one per P2..P6),
box_batch_size_per_image, box_positive_fraction, box_score_thresh, box_nms_thresh,
box_detections_per_img, trainable_backbone_layers (None = 3 with weights, 5 without),
head_norm ("none" = the paper's heads | "gn" = GroupNorm after every head / MLC conv, which
from-scratch training needs) and backbone_norm ("auto" = frozen BN with weights, BN without |
"bn" | "gn" | "frozen_bn"), inference_order ("released" = NMS before the second pass, as the
released code | "paper" = second pass on every regressed box, then NMS; see
:mod:`asn.model.roi_heads`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign

from asn.model.backbones import BACKBONES, build_backbone
from asn.model.heads import ConvFCHead, MaskBranch, OcclusionPredictor
from asn.model.mlc import MultiLevelCoding
from asn.model.panet import AdaptiveRoIAlign, PANetBackbone
from asn.model.roi_heads import AmodalRoIHeads
from asn.model.targets import validate_targets
from asn.model.transform import AmodalRCNNTransform

_SWITCHES = ("panet", "occlusion", "mlc", "amodal_mask", "inmodal_mask", "invisible_mask")


def _variant(**on: bool) -> dict[str, bool]:
    return {switch: bool(on.get(switch, False)) for switch in _SWITCHES}


VARIANTS: dict[str, dict[str, bool]] = {
    "mrcnn_inmodal": _variant(inmodal_mask=True),
    "mrcnn_amodal": _variant(amodal_mask=True),
    "mrcnn": _variant(amodal_mask=True, inmodal_mask=True),
    "mrcnn_oc": _variant(amodal_mask=True, inmodal_mask=True, occlusion=True),
    "mrcnn_asn": _variant(amodal_mask=True, inmodal_mask=True, occlusion=True, mlc=True),
    "panet": _variant(panet=True, amodal_mask=True, inmodal_mask=True),
    "panet_asn": _variant(panet=True, amodal_mask=True, inmodal_mask=True, occlusion=True, mlc=True),
    "orcnn": _variant(amodal_mask=True, inmodal_mask=True, invisible_mask=True),
}

_HEAD_DEFAULTS: dict[str, Any] = dict(
    occlusion_threshold=0.05,
    occlusion_positive_weight=8.0,
    occlusion_rule="ratio",
    mlc_box_level=1,
    mlc_mask_level=1,
    mlc_extraction_fusion="concat",
    mlc_order_adjust=True,
    mlc_extraction_convs=2,
    mlc_combination_convs=3,
    mlc_variant="paper",
    box_positive_fraction=0.25,
    box_score_thresh=0.05,
    box_nms_thresh=0.5,
    box_detections_per_img=100,
    trainable_backbone_layers=None,
    head_norm="none",
    backbone_norm="auto",
    inference_order="released",
)

_FEATURE_NAMES = ["0", "1", "2", "3"]
HEAD_CONVS = 4  # convs of the box, occlusion and mask heads (the paper's 4conv + FC / 4-conv FCN)


def variant_defaults(variant: str, backbone: str = "resnet18_fpn") -> dict[str, Any]:
    """Every keyword ``build_model`` accepts for ``variant`` on ``backbone``, with its default."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}; valid: {sorted(VARIANTS)}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; valid: {sorted(BACKBONES)}")
    sizes = {k: v for k, v in BACKBONES[backbone].items() if k != "body"}
    return {**VARIANTS[variant], **_HEAD_DEFAULTS, **sizes}


class AmodalRCNN(GeneralizedRCNN):
    """torchvision ``GeneralizedRCNN`` whose training targets are validated up front.

    ``model(images, targets)``: images are (3, H, W) float in [0, 1]; targets as in
    :func:`asn.model.targets.validate_targets`. Training returns the loss dict, inference a
    list of dicts (see :mod:`asn.model.roi_heads` for the keys and ``output_sources``).
    """

    def __init__(self, backbone, rpn, roi_heads: AmodalRoIHeads, transform, *, num_classes: int, variant: str,
                 config: dict[str, Any], backbone_name: Optional[str] = None):
        super().__init__(backbone, rpn, roi_heads, transform)
        self.num_classes = num_classes
        self.variant = variant
        self.config = dict(config)
        self.backbone_name = backbone_name

    @property
    def output_sources(self) -> dict[str, str]:
        return self.roi_heads.output_sources

    def forward(self, images: list[Tensor], targets: Optional[list[dict[str, Tensor]]] = None):
        if not isinstance(images, (list, tuple)) or not images:
            raise TypeError("images must be a non-empty list of (3, H, W) float tensors")
        for index, image in enumerate(images):
            if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
                shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
                raise ValueError(f"images[{index}]: expected a (3, H, W) tensor, got {shape}")
            if not image.is_floating_point():
                raise TypeError(f"images[{index}]: expected float in [0, 1], got {image.dtype}")
        if self.training:
            heads = self.roi_heads
            targets = validate_targets(
                images, targets, num_classes=self.num_classes,
                need_amodal_masks=heads.has_amodal() or heads.has_invisible()
                or (heads.has_occlusion() and heads.occlusion_rule == "released"),
                need_inmodal_masks=heads.has_inmodal() or heads.has_invisible()
                or (heads.has_occlusion() and heads.occlusion_rule == "released"),
                need_occlusion_ratios=heads.has_occlusion(),
            )
        else:
            targets = None
        return super().forward(list(images), targets)


def build_model(
    variant: str,
    num_classes: int,
    backbone: str = "resnet18_fpn",
    weights_path: str | Path | None = None,
    **overrides: Any,
) -> AmodalRCNN:
    """Build a model of the family by name.

    Args:
        variant: a key of :data:`VARIANTS`.
        num_classes: including background (KINS experiments: 7 categories + 1).
        backbone: a key of :data:`asn.model.backbones.BACKBONES`.
        weights_path: local ImageNet state dict of the ResNet body (nothing is downloaded).
        overrides: any key of :func:`variant_defaults`; an unknown key raises ValueError.
    """
    config = variant_defaults(variant, backbone)
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(f"unknown model option(s) {unknown}; valid: {sorted(config)}")
    config.update(overrides)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 (background included), got {num_classes!r}")
    if not (config["amodal_mask"] or config["inmodal_mask"]):
        raise ValueError("at least one of amodal_mask / inmodal_mask must be on")
    if config["mlc"] and not config["occlusion"]:
        raise ValueError("mlc needs occlusion=True (MLC fuses box and occlusion features)")
    for key in ("mlc_box_level", "mlc_mask_level"):
        if not (isinstance(config[key], int) and 0 <= config[key] <= HEAD_CONVS):
            raise ValueError(f"{key} must be an int in 0..{HEAD_CONVS} (MLC(a, b): after the a-th / b-th conv, "
                             f"0 = the RoI feature), got {config[key]!r}")
    if config["mlc"] and config["panet"] and 0 in (config["mlc_box_level"], config["mlc_mask_level"]):
        raise ValueError("MLC level 0 (the RoI feature) is not one tensor under PANet's adaptive feature pooling "
                         "(one per pyramid level); use levels 1..4 with panet")
    if not 0.0 <= float(config["occlusion_threshold"]) < 1.0:
        raise ValueError(f"occlusion_threshold must be in [0, 1), got {config['occlusion_threshold']}")
    if float(config["occlusion_positive_weight"]) <= 0:
        raise ValueError(f"occlusion_positive_weight must be > 0, got {config['occlusion_positive_weight']}")

    body = build_backbone(
        backbone, fpn_channels=config["fpn_channels"], weights_path=weights_path,
        trainable_layers=config["trainable_backbone_layers"], norm=config["backbone_norm"],
    )
    norm = config["head_norm"]
    channels = body.out_channels
    adaptive_levels = len(_FEATURE_NAMES) if config["panet"] else 0
    if config["panet"]:
        body = PANetBackbone(body)
        box_pool: nn.Module = AdaptiveRoIAlign(_FEATURE_NAMES, 7, sampling_ratio=2)
        mask_pool: nn.Module = AdaptiveRoIAlign(_FEATURE_NAMES, 14, sampling_ratio=2)
    else:
        box_pool = MultiScaleRoIAlign(_FEATURE_NAMES, 7, sampling_ratio=2)
        mask_pool = MultiScaleRoIAlign(_FEATURE_NAMES, 14, sampling_ratio=2)

    anchor_sizes = tuple(int(size) for size in config["anchor_sizes"])
    if len(anchor_sizes) != 5 or any(size <= 0 for size in anchor_sizes):
        raise ValueError(f"anchor_sizes must be 5 positive ints (P2..P6), got {config['anchor_sizes']!r}")
    anchor_generator = AnchorGenerator(tuple((size,) for size in anchor_sizes), ((0.5, 1.0, 2.0),) * 5)
    rpn = RegionProposalNetwork(
        anchor_generator, RPNHead(channels, anchor_generator.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
        pre_nms_top_n=dict(training=config["rpn_pre_nms_top_n_train"], testing=config["rpn_pre_nms_top_n_test"]),
        post_nms_top_n=dict(training=config["rpn_post_nms_top_n_train"], testing=config["rpn_post_nms_top_n_test"]),
        nms_thresh=0.7,
    )

    box_conv, box_fc = config["box_conv_channels"], config["box_fc_dim"]
    box_head = ConvFCHead(channels, box_conv, box_fc, adaptive_levels=adaptive_levels, norm=norm)
    box_predictor = FastRCNNPredictor(box_fc, num_classes)
    occlusion_head = occlusion_predictor = None
    if config["occlusion"]:
        occlusion_head = ConvFCHead(channels, box_conv, box_fc, adaptive_levels=adaptive_levels, norm=norm)
        occlusion_predictor = OcclusionPredictor(box_fc)

    mask_conv = config["mask_conv_channels"]
    mask_level = config["mlc_mask_level"]
    branches: dict[str, MaskBranch] = {}
    for name, switch in (("amodal", "amodal_mask"), ("inmodal", "inmodal_mask"), ("invisible", "invisible_mask")):
        if not config[switch]:
            continue
        mlc = None
        if config["mlc"]:
            mlc = MultiLevelCoding(
                box_head.tap_channels(config["mlc_box_level"]), channels if mask_level == 0 else mask_conv,
                extraction_fusion=config["mlc_extraction_fusion"], order_adjust=bool(config["mlc_order_adjust"]),
                extraction_convs=config["mlc_extraction_convs"], combination_convs=config["mlc_combination_convs"],
                variant=config["mlc_variant"], norm=norm,
            )
        branches[name] = MaskBranch(
            channels, mask_conv, num_classes, adaptive_levels=adaptive_levels, fc_fusion=bool(config["panet"]),
            mlc=mlc, mlc_mask_level=mask_level, norm=norm,
        )

    roi_heads = AmodalRoIHeads(
        box_pool, box_head, box_predictor,
        batch_size_per_image=config["box_batch_size_per_image"], positive_fraction=config["box_positive_fraction"],
        score_thresh=config["box_score_thresh"], nms_thresh=config["box_nms_thresh"],
        detections_per_img=config["box_detections_per_img"],
        occlusion_head=occlusion_head, occlusion_predictor=occlusion_predictor,
        occlusion_threshold=config["occlusion_threshold"],
        occlusion_positive_weight=config["occlusion_positive_weight"], occlusion_rule=config["occlusion_rule"],
        mask_roi_pool=mask_pool, mask_branches=branches, mlc_box_level=config["mlc_box_level"],
        inference_order=config["inference_order"],
    )
    transform = AmodalRCNNTransform(
        config["min_size"], config["max_size"], [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    )
    return AmodalRCNN(body, rpn, roi_heads, transform, num_classes=num_classes, variant=variant, config=config,
                      backbone_name=backbone)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter counts by part: backbone body, FPN (+ PANet path), RPN, box, occlusion, each mask
    branch (MLC counted separately), total."""
    def n(module: Optional[nn.Module]) -> int:
        return sum(p.numel() for p in module.parameters()) if module is not None else 0

    backbone = model.backbone
    fpn_backbone = backbone.fpn_backbone if isinstance(backbone, PANetBackbone) else backbone
    heads: AmodalRoIHeads = model.roi_heads
    counts = {
        "backbone_body": n(fpn_backbone.body),
        "fpn": n(fpn_backbone.fpn),
        "panet_bottom_up": n(backbone.augmentation) if isinstance(backbone, PANetBackbone) else 0,
        "rpn": n(model.rpn),
        "box_branch": n(heads.box_head) + n(heads.box_predictor),
        "occlusion_branch": n(heads.occlusion_head) + n(heads.occlusion_predictor),
    }
    for name, branch in heads.mask_branches.items():
        counts[f"{name}_mask_branch"] = n(branch) - n(branch.mlc)
        counts[f"{name}_mlc"] = n(branch.mlc)
    counts["total"] = n(model)
    return counts


# model: keys that say how a run initialises and trains the model, read by asn.engine.train
# (asn.engine.trunk), not by the builder: the architecture does not depend on them
TRAINING_KEYS = ("init", "trunk_parts", "freeze")


def build_model_from_params(model_params: Mapping[str, Any]) -> AmodalRCNN:
    """Build the model described by params.yaml's ``model:`` section.

    ``variant``, ``backbone``, ``weights_path`` and ``num_classes`` select the model;
    :data:`TRAINING_KEYS` (``init``, ``trunk_parts``, ``freeze``) are for the training loop; every
    other key (and those under ``overrides``) is a :func:`build_model` keyword, so Tables 5-7
    are params.yaml edits (``dvc exp run -S model.mlc_box_level=2``), not code changes.
    """
    params = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in model_params.items()}
    missing = [k for k in ("variant", "num_classes") if k not in params]
    if missing:
        raise ValueError(f"model parameters lack {missing}")
    overrides = {**{k: v for k, v in params.items()
                    if k not in ("variant", "backbone", "weights_path", "num_classes",
                                 "overrides", *TRAINING_KEYS)},
                 **(params.get("overrides") or {})}
    return build_model(params["variant"], int(params["num_classes"]),
                       backbone=params.get("backbone", "resnet18_fpn"),
                       weights_path=params.get("weights_path") or None, **overrides)
