"""KITTI 2015 scene flow: the official 16-bit PNG encodings (:mod:`asn.sceneflow.io`) and the
official devkit error metrics D1 / D2 / Fl / SF (:mod:`asn.sceneflow.metrics`), DESIGN.md
section 7 (scene flow bullet); used by ``asn sceneflow-eval`` for the paper's Table 8."""
