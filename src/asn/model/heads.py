"""RoI heads of the ASN family: the 4conv + FC head (box and occlusion branches) and the
mask branch (4 conv + deconv + class-specific logits) with optional MLC and PANet parts.

The conv + FC head has the structure of torchvision's ``FastRCNNConvFCHead`` (3x3 convs with
ReLU, flatten, one FC with ReLU) but exposes the feature after a chosen conv, which MLC
needs. Under PANet's adaptive feature pooling the first conv of every head is one conv per
pyramid level fused by an element-wise max (:class:`asn.model.panet.AdaptiveMaxFusion`).
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.ops.misc import Conv2dNormActivation

from asn.model.mlc import MultiLevelCoding
from asn.model.panet import AdaptiveMaxFusion, FullyConnectedFusion


HEAD_NORMS = ("none", "gn")


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups (Wu & He, 2018), fewer when ``channels`` is not a multiple of 32."""
    groups = 32
    while channels % groups:
        groups //= 2
    return nn.GroupNorm(groups, channels)


def _conv3x3(in_channels: int, out_channels: int, norm: str = "none") -> nn.Module:
    # with a norm layer the conv has no bias (the norm's shift replaces it), as in detectron2
    return Conv2dNormActivation(in_channels, out_channels, kernel_size=3,
                                norm_layer=group_norm if norm == "gn" else None)


def _conv_stack(in_channels: int, channels: int, num_convs: int, adaptive_levels: int,
                norm: str = "none") -> nn.ModuleList:
    if norm not in HEAD_NORMS:
        raise ValueError(f"head_norm must be one of {HEAD_NORMS}, got {norm!r}")
    convs: list[nn.Module] = []
    for index in range(num_convs):
        conv_in = in_channels if index == 0 else channels
        if index == 0 and adaptive_levels:
            convs.append(AdaptiveMaxFusion([_conv3x3(conv_in, channels, norm) for _ in range(adaptive_levels)]))
        else:
            convs.append(_conv3x3(conv_in, channels, norm))
    stack = nn.ModuleList(convs)
    for module in stack.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return stack


class ConvFCHead(nn.Module):
    """``num_convs`` x (3x3 conv, ReLU) on (R, C_in, S, S) RoI features, then FC + ReLU.

    forward(x, tap_index=None, stop_at_tap=False) -> (fc (R, fc_dim) or None, tapped (R, C, S, S)
    or None): ``tapped`` is the output of conv ``tap_index`` (0-based); with ``stop_at_tap`` the
    remaining convs and the FC are skipped (inference only needs the tapped feature).
    ``x`` is a list of per-level tensors when ``adaptive_levels`` > 0.
    """

    def __init__(
        self,
        in_channels: int,
        conv_channels: int = 256,
        fc_dim: int = 1024,
        *,
        num_convs: int = 4,
        resolution: int = 7,
        adaptive_levels: int = 0,
        norm: str = "none",
    ):
        super().__init__()
        self.convs = _conv_stack(in_channels, conv_channels, num_convs, adaptive_levels, norm)
        self.fc = nn.Linear(conv_channels * resolution * resolution, fc_dim)
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = fc_dim
        self.conv_channels = conv_channels

    def forward(
        self, x, tap_index: Optional[int] = None, stop_at_tap: bool = False
    ) -> tuple[Optional[Tensor], Optional[Tensor]]:
        tapped = None
        for index, conv in enumerate(self.convs):
            x = conv(x)
            if index == tap_index:
                tapped = x
                if stop_at_tap:
                    return None, tapped
        return self.relu(self.fc(x.flatten(1))), tapped


class OcclusionPredictor(nn.Module):
    """FC to two logits (not occluded, occluded)."""

    def __init__(self, in_features: int):
        super().__init__()
        self.occlusion_score = nn.Linear(in_features, 2)
        nn.init.normal_(self.occlusion_score.weight, std=0.01)
        nn.init.zeros_(self.occlusion_score.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.occlusion_score(x)


class MaskBranch(nn.Module):
    """One mask branch: ``num_convs`` x (3x3 conv, ReLU) on 14x14 RoI features, deconv to 28x28,
    1x1 class-specific logits (torchvision's ``MaskRCNNPredictor``).

    Optional parts: MLC combination inserted before conv ``mlc_mask_level`` (0-based);
    PANet's fully-connected fusion branching after the third conv.

    forward(x, box_feature=None, occlusion_feature=None) -> (R, num_classes, 28, 28) logits.
    """

    def __init__(
        self,
        in_channels: int,
        conv_channels: int,
        num_classes: int,
        *,
        num_convs: int = 4,
        adaptive_levels: int = 0,
        fc_fusion: bool = False,
        mlc: Optional[MultiLevelCoding] = None,
        mlc_mask_level: int = 1,
        roi_resolution: int = 14,
        norm: str = "none",
    ):
        super().__init__()
        if mlc is not None and not 0 <= mlc_mask_level < num_convs:
            raise ValueError(f"mlc_mask_level must be in 0..{num_convs - 1}, got {mlc_mask_level}")
        if mlc is not None and adaptive_levels and mlc_mask_level == 0:
            raise ValueError("mlc_mask_level=0 is not defined under adaptive feature pooling (PANet): "
                             "the first mask layer fuses the pyramid levels; use 1..3")
        self.convs = _conv_stack(in_channels, conv_channels, num_convs, adaptive_levels, norm)
        self.predictor = MaskRCNNPredictor(conv_channels, conv_channels, num_classes)
        self.mlc = mlc
        self.mlc_mask_level = mlc_mask_level
        self.fc_fusion = FullyConnectedFusion(conv_channels, roi_resolution, norm=norm) if fc_fusion else None
        self.fc_fusion_after = min(2, num_convs - 1)

    def forward(
        self, x, box_feature: Optional[Tensor] = None, occlusion_feature: Optional[Tensor] = None
    ) -> Tensor:
        fc_input = None
        for index, conv in enumerate(self.convs):
            if self.mlc is not None and index == self.mlc_mask_level:
                if box_feature is None or occlusion_feature is None:
                    raise ValueError("this mask branch uses MLC: pass the box and occlusion features")
                x = self.mlc(x, box_feature, occlusion_feature)
            x = conv(x)
            if index == self.fc_fusion_after:
                fc_input = x
        logits = self.predictor(x)
        if self.fc_fusion is not None:
            logits = logits + self.fc_fusion(fc_input)
        return logits
