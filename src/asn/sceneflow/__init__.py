"""KITTI 2015 scene flow and the paper's Table 8: the official 16-bit PNG encodings
(:mod:`asn.sceneflow.io`), the official devkit error metrics D1 / D2 / Fl / SF
(:mod:`asn.sceneflow.metrics`, used by ``asn sceneflow-eval``), the synthetic stereo / motion
world (:mod:`asn.sceneflow.world`), the OpenCV baseline (:mod:`asn.sceneflow.baseline`), the
instance-aware rigid refinement (:mod:`asn.sceneflow.refine`) and the Table 8 arms
(:mod:`asn.sceneflow.table8`, ``asn sceneflow``); DESIGN.md section 7."""
