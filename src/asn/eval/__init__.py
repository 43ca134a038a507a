"""Evaluation: COCO Det / amodal / inmodal AP, AP by occlusion bucket and occlusion accuracy
(:mod:`asn.eval.coco`), following DESIGN.md section 7."""
