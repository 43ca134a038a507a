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

from asn.model.layers import check_norm, conv3x3, kaiming_init
from asn.model.mlc import MultiLevelCoding
from asn.model.panet import AdaptiveMaxFusion, FullyConnectedFusion


def _conv_stack(in_channels: int, channels: int, num_convs: int, adaptive_levels: int,
                norm: str = "none") -> nn.ModuleList:
    check_norm(norm)
    convs: list[nn.Module] = []
    for index in range(num_convs):
        conv_in = in_channels if index == 0 else channels
        if index == 0 and adaptive_levels:
            convs.append(AdaptiveMaxFusion([conv3x3(conv_in, channels, norm) for _ in range(adaptive_levels)]))
        else:
            convs.append(conv3x3(conv_in, channels, norm))
    stack = nn.ModuleList(convs)
    kaiming_init(stack)
    return stack


class ConvFCHead(nn.Module):
    """``num_convs`` x (3x3 conv, ReLU) on (R, C_in, S, S) RoI features, then FC + ReLU.

    forward(x, tap_level=None, stop_at_tap=False) -> (fc (R, fc_dim) or None, tapped or None):
    ``tapped`` is the feature *after the tap_level-th conv* in the paper's MLC(a, b) sense:
    level 0 is the RoI feature itself (R, C_in, S, S), level k the output of the k-th conv
    (R, C, S, S). With ``stop_at_tap`` the remaining convs and the FC are skipped (inference only
    needs the tapped feature). ``x`` is a list of per-level tensors when ``adaptive_levels`` > 0,
    where level 0 is not a single feature and is refused.
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
        self.in_channels = in_channels

    def tap_channels(self, tap_level: int) -> int:
        """Channels of the feature after conv ``tap_level`` (0 = the RoI feature)."""
        return self.in_channels if tap_level == 0 else self.conv_channels

    def forward(
        self, x, tap_level: Optional[int] = None, stop_at_tap: bool = False
    ) -> tuple[Optional[Tensor], Optional[Tensor]]:
        tapped = None
        if tap_level == 0:
            if isinstance(x, (list, tuple)):
                raise ValueError("tap level 0 (the RoI feature) is not one tensor under adaptive feature pooling")
            tapped = x
            if stop_at_tap:
                return None, tapped
        for index, conv in enumerate(self.convs):
            x = conv(x)
            if tap_level is not None and index + 1 == tap_level:
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

    Optional parts: the MLC combination *after the* ``mlc_mask_level``-th conv (the paper's b:
    0 = on the RoI feature before any conv, ``num_convs`` = after the last conv, before the
    deconv); the remaining convs continue on the combined feature. PANet's fully-connected
    fusion branches after the third conv.

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
        if mlc is not None and not 0 <= mlc_mask_level <= num_convs:
            raise ValueError(f"mlc_mask_level must be in 0..{num_convs}, got {mlc_mask_level}")
        if mlc is not None and adaptive_levels and mlc_mask_level == 0:
            raise ValueError("mlc_mask_level=0 is not defined under adaptive feature pooling (PANet): "
                             "the RoI feature is one tensor per pyramid level; use 1..4")
        self.convs = _conv_stack(in_channels, conv_channels, num_convs, adaptive_levels, norm)
        self.predictor = MaskRCNNPredictor(conv_channels, conv_channels, num_classes)
        self.mlc = mlc
        self.mlc_mask_level = mlc_mask_level
        self.fc_fusion = FullyConnectedFusion(conv_channels, roi_resolution, norm=norm) if fc_fusion else None
        self.fc_fusion_after = min(2, num_convs - 1)

    def _combine(self, x: Tensor, box_feature: Optional[Tensor], occlusion_feature: Optional[Tensor]) -> Tensor:
        if box_feature is None or occlusion_feature is None:
            raise ValueError("this mask branch uses MLC: pass the box and occlusion features")
        return self.mlc(x, box_feature, occlusion_feature)

    def forward(
        self, x, box_feature: Optional[Tensor] = None, occlusion_feature: Optional[Tensor] = None
    ) -> Tensor:
        fc_input = None
        level = self.mlc_mask_level if self.mlc is not None else None
        if level == 0:
            x = self._combine(x, box_feature, occlusion_feature)
        for index, conv in enumerate(self.convs):
            x = conv(x)
            if index == self.fc_fusion_after:
                fc_input = x  # PANet's fc path branches off the conv output itself
            if level == index + 1:
                x = self._combine(x, box_feature, occlusion_feature)
        logits = self.predictor(x)
        if self.fc_fusion is not None:
            logits = logits + self.fc_fusion(fc_input)
        return logits
