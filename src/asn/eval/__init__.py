"""Evaluation, following DESIGN.md section 7: the predictions format (:mod:`asn.eval.predictions`),
COCO Det / amodal / inmodal AP (:mod:`asn.eval.coco`), AP by occlusion bucket and occlusion
accuracy (:mod:`asn.eval.occlusion`), predictions derived from ground truth for tests and
benchmarks (:mod:`asn.eval.perturb`), and the seed aggregation of the tables (:mod:`asn.eval.seeds`)."""
