"""Backbones: torchvision ResNet bodies with torchvision's FPN, no downloads.

``BACKBONES`` maps a name to the ResNet body, the FPN width and the size preset the builder
uses by default (each value can still be overridden): ``resnet50_fpn`` is the paper's,
``resnet18_fpn`` a full-width lighter one, ``resnet18_fpn_small`` the smoke (CPU) profile from
NOTES.md: ResNet-18 body + 64-channel FPN + 64-channel box / mask convs + 256-wide box FC,
64 sampled RoIs (128 in NOTES), 300 RPN proposals, 128x416 images, anchors 8..128 px.

ImageNet weights come only from a local file (``weights_path``), read with
``torch.load(weights_only=True)``; with weights the batch norms are frozen and the first
layers are not trained (torchvision's fine-tuning defaults), without them batch norm trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops import misc as misc_nn_ops

from asn.errors import InputError
from asn.model.layers import group_norm

_PAPER_SIZES: dict[str, Any] = dict(
    min_size=800, max_size=1333, box_conv_channels=256, box_fc_dim=1024, mask_conv_channels=256,
    rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000,
    rpn_post_nms_top_n_train=2000, rpn_post_nms_top_n_test=1000,
    box_batch_size_per_image=512, anchor_sizes=(32, 64, 128, 256, 512),
)

BACKBONES: dict[str, dict[str, Any]] = {
    "resnet50_fpn": dict(body="resnet50", fpn_channels=256, **_PAPER_SIZES),
    "resnet18_fpn": dict(body="resnet18", fpn_channels=256, **_PAPER_SIZES),
    "resnet18_fpn_small": dict(
        body="resnet18", fpn_channels=64, min_size=128, max_size=416,
        box_conv_channels=64, box_fc_dim=256, mask_conv_channels=64,
        rpn_pre_nms_top_n_train=600, rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_train=300, rpn_post_nms_top_n_test=300,
        box_batch_size_per_image=64,  # RoIAlign backward is single-threaded on CPU: 64 sampled RoIs, not 128
        # objects in the 128 px tall smoke images are 6-60 px (median 19): anchors a quarter of the paper's
        anchor_sizes=(8, 16, 32, 64, 128),
    ),
}

_BODIES = {"resnet50": resnet50, "resnet18": resnet18}
BACKBONE_NORMS = ("auto", "bn", "gn", "frozen_bn")


def load_body_weights(body: nn.Module, weights_path: str | Path) -> None:
    """Load an ImageNet state dict (torchvision ResNet naming) into ``body``.

    A classifier (``fc.*``) in the file is accepted and ignored; any other missing or
    unexpected key raises :class:`asn.errors.InputError` naming the file.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise InputError(path, "backbone weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a corrupt/unsafe file
        raise InputError(path, f"cannot read backbone weights: {error}") from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(path, f"expected a state dict, got {type(state).__name__}")
    try:
        result = body.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise InputError(path, f"state dict does not fit the backbone: {error}") from error
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    unexpected = [k for k in result.unexpected_keys if not k.startswith("fc.")]
    if missing or unexpected:
        raise InputError(
            path, f"state dict does not fit the backbone: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def build_backbone(
    name: str,
    *,
    fpn_channels: Optional[int] = None,
    weights_path: str | Path | None = None,
    trainable_layers: Optional[int] = None,
    norm: str = "auto",
) -> nn.Module:
    """ResNet body + FPN with outputs '0'..'3' and 'pool' of ``fpn_channels`` channels.

    ``norm`` is the body's normalization: ``auto`` = frozen batch norm with ImageNet weights
    (torchvision's fine-tuning default), trained batch norm without; ``gn`` = GroupNorm (32
    groups), which does not depend on the batch size, for from-scratch training at small
    batches (He et al., "Rethinking ImageNet Pre-training"); ``bn``; ``frozen_bn``.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid: {sorted(BACKBONES)}")
    if norm not in BACKBONE_NORMS:
        raise ValueError(f"backbone_norm must be one of {BACKBONE_NORMS}, got {norm!r}")
    preset = BACKBONES[name]
    pretrained = weights_path is not None
    if norm == "auto":
        norm = "frozen_bn" if pretrained else "bn"
    norm_layer = {"frozen_bn": misc_nn_ops.FrozenBatchNorm2d, "bn": nn.BatchNorm2d, "gn": group_norm}[norm]
    body = _BODIES[preset["body"]](weights=None, norm_layer=norm_layer)
    if pretrained:
        load_body_weights(body, weights_path)
    if trainable_layers is None:
        trainable_layers = 3 if pretrained else 5
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_backbone_layers must be in 0..5, got {trainable_layers}")
    # same freezing rule as torchvision's _resnet_fpn_extractor, which fixes the FPN width at 256
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        layers_to_train.append("bn1")
    for name, parameter in body.named_parameters():
        if not any(name.startswith(layer) for layer in layers_to_train):
            parameter.requires_grad_(False)
    stage2_channels = body.inplanes // 8
    return BackboneWithFPN(
        body,
        {f"layer{k}": str(v) for v, k in enumerate((1, 2, 3, 4))},
        [stage2_channels * 2 ** (i - 1) for i in (1, 2, 3, 4)],
        fpn_channels or preset["fpn_channels"],
        extra_blocks=LastLevelMaxPool(),
    )
