"""Numbers printed in the paper (Qi et al., CVPR 2019, "Amodal Instance Segmentation with KINS
Dataset"), transcribed for the side columns of our tables. Context only, never a result of ours.

A table is filled in only from a source someone can check (``*_SOURCE``); an empty dict means
"not transcribed", and the reports say so instead of guessing. Table 4 lives beside its
aggregation (:data:`asn.eval.seeds.PAPER_TABLE4`).
"""

from __future__ import annotations

# Table 1: {category: {"total": int, "ratio": float}}
TABLE1: dict[str, dict[str, float]] = {}
TABLE1_SOURCE = ""

# Table 2: {(dataset, segments): {"convexity": float, "simplicity": float}}
TABLE2: dict[tuple[str, str], dict[str, float]] = {}
TABLE2_SOURCE = ""

# Table 3 (two-stage layout): {row label ("annotator_1".."annotator_3", "majority_vote"):
# {"stage 1": mean IoU, "stage 2": mean IoU}}
TABLE3: dict[str, dict[str, float]] = {}
TABLE3_SOURCE = ""
