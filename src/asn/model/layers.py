"""Conv / norm building blocks shared by the RoI heads, MLC, PANet's fc fusion and the backbone.

One home for them so that no two model modules import each other for a helper: ``heads``,
``mlc``, ``panet`` and ``backbones`` all import from here and from nowhere else in the model.

- :func:`group_norm`: GroupNorm with 32 groups (fewer when the width is not a multiple of 32);
- :func:`conv3x3`: torchvision's ``Conv2dNormActivation`` 3x3 conv + (GroupNorm) + ReLU, the
  unit of the 4-conv box / occlusion / mask heads;
- :func:`conv_relu` / :func:`deconv_relu`: the same conv as a flat list of modules (MLC and the
  fc fusion keep their layers in one ``nn.Sequential``, so the state-dict names stay flat);
- :func:`kaiming_init`: He (fan-out) init of every conv / deconv of a module, biases zero.
"""

from __future__ import annotations

from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

HEAD_NORMS = ("none", "gn")


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups (Wu & He, 2018), fewer when ``channels`` is not a multiple of 32."""
    groups = 32
    while channels % groups:
        groups //= 2
    return nn.GroupNorm(groups, channels)


def check_norm(norm: str) -> None:
    if norm not in HEAD_NORMS:
        raise ValueError(f"head_norm must be one of {HEAD_NORMS}, got {norm!r}")


def conv3x3(in_channels: int, out_channels: int, norm: str = "none") -> nn.Module:
    """3x3 conv + (GroupNorm) + ReLU; with a norm layer the conv has no bias (the norm's shift
    replaces it), as in detectron2."""
    check_norm(norm)
    return Conv2dNormActivation(in_channels, out_channels, kernel_size=3,
                                norm_layer=group_norm if norm == "gn" else None)


def conv_relu(in_channels: int, out_channels: int, norm: str = "none") -> list[nn.Module]:
    """The same unit as :func:`conv3x3`, as a list of modules to splice into a Sequential."""
    check_norm(norm)
    if norm == "gn":
        return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), group_norm(out_channels),
                nn.ReLU(inplace=True)]
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True)]


def deconv_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """2x2 transposed conv of stride 2 (doubles the resolution) + ReLU."""
    return [nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2), nn.ReLU(inplace=True)]


def kaiming_init(module: nn.Module) -> None:
    """He init (fan-out, ReLU) of every conv and deconv weight in ``module``; biases zero."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
