"""The ASN model family on torchvision: Mask R-CNN / PANet with the occlusion classification
branch, Multi-Level Coding and ORCNN (see :mod:`asn.model.build` for the variants)."""

from asn.model.build import (
    VARIANTS,
    AmodalRCNN,
    build_model,
    build_model_from_params,
    count_parameters,
    variant_defaults,
)

__all__ = ["VARIANTS", "AmodalRCNN", "build_model", "build_model_from_params", "count_parameters",
           "variant_defaults"]
