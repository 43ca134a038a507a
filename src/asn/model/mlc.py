"""Multi-Level Coding (MLC), paper section 4.2 and Tables 5 and 7.

MLC(a, b), exactly as the paper defines it (section 5.2, Table 5): the RoI features of the box
and occlusion branches *after their a-th conv* (7x7, C_box channels) are *extracted* into a
global code, which is *combined* with the mask branch's feature *after its b-th conv* (14x14,
C_mask channels); 0 means the RoI feature before any conv. The paper's best and default is
MLC(1, 1), after the first conv of each branch: ``model.mlc_box_level: 1`` /
``model.mlc_mask_level: 1``. Both run 0..4 (the heads have 4 convs); the tapping itself lives in
:class:`asn.model.heads.ConvFCHead` and :class:`asn.model.heads.MaskBranch`. (Before this
convention the project counted the box level from 0 = after the first conv, so its old default
"(1, 1)" was the paper's MLC(2, 1); that model is ``mlc_box_level: 2`` now.)

Paper variant (default):
- extraction: concat(box, occ) (2C) -> deconv stride 2 (7->14) to C -> ``extraction_convs``
  3x3 convs (2 in the paper);
- combination: concat(extracted, mask feature) (2C) -> ``combination_convs`` 3x3 convs (3 in
  the paper), all 2C wide except the last which halves to C.

Table 7 switches: ``extraction_fusion="add"`` sums box and occ instead of concatenating;
``order_adjust=False`` runs the extraction convs on the 7x7 code before the deconv (our
reading of "order adjustment": the paper upsamples first, then convolves);
``extraction_convs`` / ``combination_convs`` in 1..3.

Released-code variant (``variant="released"``, the KINS reference code's
``mask_rcnn_fcn_head_v1upXconvs_ff``): extraction conv 2C->C at 7x7, deconv, conv; combination
two convs 2C->C, C->C. The part switches do not apply to it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asn.model.layers import conv_relu, deconv_relu, kaiming_init

FUSIONS = ("concat", "add")
MLC_VARIANTS = ("paper", "released")


class MultiLevelCoding(nn.Module):
    """Extraction + combination of one mask branch.

    Args:
        box_channels: channels of the tapped box / occlusion features (7x7).
        mask_channels: channels of the mask feature it is combined with (14x14); the output
            has the same channels so the mask branch continues unchanged.
    """

    def __init__(
        self,
        box_channels: int,
        mask_channels: int,
        *,
        extraction_fusion: str = "concat",
        order_adjust: bool = True,
        extraction_convs: int = 2,
        combination_convs: int = 3,
        variant: str = "paper",
        norm: str = "none",
    ):
        super().__init__()
        if extraction_fusion not in FUSIONS:
            raise ValueError(f"mlc_extraction_fusion must be one of {FUSIONS}, got {extraction_fusion!r}")
        if variant not in MLC_VARIANTS:
            raise ValueError(f"mlc_variant must be one of {MLC_VARIANTS}, got {variant!r}")
        for name, value in (("mlc_extraction_convs", extraction_convs), ("mlc_combination_convs", combination_convs)):
            if not (isinstance(value, int) and 1 <= value <= 3):
                raise ValueError(f"{name} must be 1, 2 or 3, got {value!r}")
        self.extraction_fusion = extraction_fusion if variant == "paper" else "concat"
        self.variant = variant
        code_channels = box_channels * (2 if self.extraction_fusion == "concat" else 1)
        extraction: list[nn.Module] = []
        combination: list[nn.Module] = []
        if variant == "released":
            extraction += conv_relu(code_channels, mask_channels, norm)
            extraction += deconv_relu(mask_channels, mask_channels)
            extraction += conv_relu(mask_channels, mask_channels, norm)
            combination += conv_relu(2 * mask_channels, mask_channels, norm)
            combination += conv_relu(mask_channels, mask_channels, norm)
        else:
            if order_adjust:
                extraction += deconv_relu(code_channels, mask_channels)
                for _ in range(extraction_convs):
                    extraction += conv_relu(mask_channels, mask_channels, norm)
            else:
                channels = code_channels
                for _ in range(extraction_convs):
                    extraction += conv_relu(channels, mask_channels, norm)
                    channels = mask_channels
                extraction += deconv_relu(mask_channels, mask_channels)
            for index in range(combination_convs):
                last = index == combination_convs - 1
                combination += conv_relu(2 * mask_channels, mask_channels if last else 2 * mask_channels, norm)
        self.extraction = nn.Sequential(*extraction)
        self.combination = nn.Sequential(*combination)
        kaiming_init(self)

    def extract(self, box_feature: Tensor, occlusion_feature: Tensor) -> Tensor:
        """(R, C_box, 7, 7) x 2 -> (R, C_mask, 14, 14)."""
        if self.extraction_fusion == "concat":
            code = torch.cat([box_feature, occlusion_feature], dim=1)
        else:
            code = box_feature + occlusion_feature
        return self.extraction(code)

    def combine(self, mask_feature: Tensor, extracted: Tensor) -> Tensor:
        """(R, C_mask, 14, 14) x 2 -> (R, C_mask, 14, 14)."""
        return self.combination(torch.cat([extracted, mask_feature], dim=1))

    def forward(self, mask_feature: Tensor, box_feature: Tensor, occlusion_feature: Tensor) -> Tensor:
        return self.combine(mask_feature, self.extract(box_feature, occlusion_feature))
