"""asn: amodal instance segmentation on KINS (Qi et al., CVPR 2019), reproducible on CPU and GPU."""

__version__ = "0.1.0"
