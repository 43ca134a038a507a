"""PANet pieces (Liu et al., CVPR 2018) on top of torchvision's FPN.

- :class:`BottomUpPathAugmentation`: N2 = P2, N(i+1) = ReLU(conv3x3(ReLU(conv3x3/2(N_i)) + P(i+1))),
  plus a max-pooled extra level for the RPN like torchvision's ``LastLevelMaxPool``;
- :class:`PANetBackbone`: a torchvision ``BackboneWithFPN`` followed by the augmentation;
- :class:`AdaptiveRoIAlign`: adaptive feature pooling, every RoI pooled from *all* levels
  (a list with one tensor per level); the heads fuse them with an element-wise max after
  their first layer (:class:`AdaptiveMaxFusion`);
- :class:`FullyConnectedFusion`: the mask head's fc path (conv4_fc, conv5_fc halving the
  channels, fc to a class-agnostic 28x28 map added to every class's FCN logits).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align
from torchvision.ops.poolers import _convert_to_roi_format, _infer_scale

from asn.model.layers import conv_relu, kaiming_init


class BottomUpPathAugmentation(nn.Module):
    """Bottom-up path on FPN outputs; keeps the feature names and channel width."""

    def __init__(self, channels: int, num_levels: int = 4):
        super().__init__()
        self.down_convs = nn.ModuleList(
            [nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(num_levels - 1)]
        )
        self.fuse_convs = nn.ModuleList([nn.Conv2d(channels, channels, 3, padding=1) for _ in range(num_levels - 1)])
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                nn.init.zeros_(module.bias)

    def forward(self, fpn_features: "OrderedDict[str, Tensor]") -> "OrderedDict[str, Tensor]":
        names = [name for name in fpn_features if name != "pool"]
        if len(names) != len(self.down_convs) + 1:
            raise ValueError(f"expected {len(self.down_convs) + 1} FPN levels besides 'pool', got {names}")
        augmented = [fpn_features[names[0]]]
        for index, name in enumerate(names[1:]):
            lateral = fpn_features[name]
            down = F.relu(self.down_convs[index](augmented[-1]))
            if down.shape[-2:] != lateral.shape[-2:]:
                down = F.interpolate(down, size=lateral.shape[-2:], mode="nearest")
            augmented.append(F.relu(self.fuse_convs[index](down + lateral)))
        out: OrderedDict[str, Tensor] = OrderedDict(zip(names, augmented))
        if "pool" in fpn_features:
            out["pool"] = F.max_pool2d(augmented[-1], 1, 2, 0)
        return out


class PANetBackbone(nn.Module):
    """FPN backbone + bottom-up path augmentation; same outputs as the FPN (names, width)."""

    def __init__(self, fpn_backbone: nn.Module):
        super().__init__()
        self.fpn_backbone = fpn_backbone
        self.out_channels = fpn_backbone.out_channels
        self.augmentation = BottomUpPathAugmentation(self.out_channels, num_levels=4)

    def forward(self, images: Tensor) -> "OrderedDict[str, Tensor]":
        return self.augmentation(self.fpn_backbone(images))


class AdaptiveRoIAlign(nn.Module):
    """RoIAlign of every box on every listed level.

    forward(features, boxes, image_shapes) -> list of (R, C, S, S), one per level, where
    R = total boxes of the batch (images concatenated in order).
    """

    def __init__(self, featmap_names: list[str], output_size: int, sampling_ratio: int = 2):
        super().__init__()
        self.featmap_names = list(featmap_names)
        self.output_size = (output_size, output_size)
        self.sampling_ratio = sampling_ratio

    def forward(self, features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]):
        levels = [features[name] for name in self.featmap_names]
        max_height = max(shape[0] for shape in image_shapes)
        max_width = max(shape[1] for shape in image_shapes)
        rois = _convert_to_roi_format(boxes)
        return [
            roi_align(
                level,
                rois,
                output_size=self.output_size,
                spatial_scale=_infer_scale(level, [max_height, max_width]),
                sampling_ratio=self.sampling_ratio,
            )
            for level in levels
        ]


class AdaptiveMaxFusion(nn.Module):
    """First layer of a head under adaptive pooling: one layer per level, then element-wise max."""

    def __init__(self, level_layers: list[nn.Module]):
        super().__init__()
        self.level_layers = nn.ModuleList(level_layers)

    def forward(self, per_level: list[Tensor]) -> Tensor:
        if not isinstance(per_level, (list, tuple)) or len(per_level) != len(self.level_layers):
            raise ValueError(f"adaptive pooling head expects a list of {len(self.level_layers)} level features")
        fused = self.level_layers[0](per_level[0])
        for layer, feature in zip(self.level_layers[1:], per_level[1:]):
            fused = torch.maximum(fused, layer(feature))
        return fused


class FullyConnectedFusion(nn.Module):
    """PANet's fc path of the mask head: (R, C, 14, 14) -> (R, 1, 28, 28) class-agnostic logits."""

    def __init__(self, channels: int, roi_resolution: int = 14, mask_resolution: int = 28, norm: str = "none"):
        super().__init__()
        self.convs = nn.Sequential(*conv_relu(channels, channels, norm), *conv_relu(channels, channels // 2, norm))
        self.fc = nn.Linear((channels // 2) * roi_resolution * roi_resolution, mask_resolution * mask_resolution)
        self.mask_resolution = mask_resolution
        kaiming_init(self.convs)

    def forward(self, feature: Tensor) -> Tensor:
        x = self.convs(feature).flatten(1)
        return self.fc(x).view(-1, 1, self.mask_resolution, self.mask_resolution)
