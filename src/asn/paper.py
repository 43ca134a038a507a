"""Every number the paper prints (Qi et al., CVPR 2019, "Amodal Instance Segmentation with KINS
Dataset"): Tables 1-8, Figure 4(c) and the statistics of section 3, with the notes on layouts
that the printed text leaves ambiguous.

These are the paper's numbers on the real KINS / KITTI 2015 data, transcribed from its text
(:data:`SOURCE`). Our tables show them *beside* ours, labelled :data:`LABEL_KINS` (or
:data:`LABEL_KITTI` for Table 8), never as results of this project. This module is the only
home of them: :mod:`asn.eval.seeds`, :mod:`asn.sweeps`, :mod:`asn.stats`,
:mod:`asn.sceneflow.table8` and ``asn report`` read them from here.

Units are the paper's: AP in percent, Table 1 ratios in percent, Table 2 / 3 values as
fractions, Table 6's occlusion accuracy as a fraction (0.872; our metrics.json has a
percentage, see :func:`occlusion_accuracy_percent`), Table 8 errors in percent.
"""

from __future__ import annotations

from typing import Any, Optional

SOURCE = ("Qi, Jiang, Liu, Shen, Jia. Amodal Instance Segmentation with KINS Dataset. CVPR 2019, "
          "pp. 3014-3023 (CVF open access version). Values as printed in the paper; transcribed from its text.")
SHORT = "Qi et al., CVPR 2019"
LABEL_KINS = "paper-reported on KINS"
LABEL_KITTI = "paper-reported on KITTI 2015"


def cite(item: str) -> str:
    """``"Qi et al., CVPR 2019, Table 4"`` for ``item`` = ``"Table 4"``, ``"Figure 4(c)"``, ..."""
    return f"{SHORT}, {item}"


# ----------------------------------------------------------------------------------------------
# notes on what the printed text leaves open (quoted from the transcription's notes)
# ----------------------------------------------------------------------------------------------
NOTES: dict[str, str] = {
    "general": "Numbers are the paper's, on the real KINS / KITTI 2015 data. Show them beside ours, "
               "labelled as paper-reported; never as our results.",
    "table1_columns": "Column-to-count pairing checked three ways: the ratios equal count / 190,626 (the column "
                      "total); 'tram' and 'truck' are the two classes near 1 % (text of section 3.2); and the "
                      "public KINS test split has misc 9,791 > van 5,352, which only the pairing below fits.",
    "table2_columns": "The text extraction puts the header 'simplicity' before 'convexity', but the formula block "
                      "lists convexity first. The pairing here is by magnitude: area/hull of near-convex amodal "
                      "vehicle outlines is above 0.8, and perimeter-based simplicity of 30-point polygons is "
                      "lower. Flag this pairing in the report.",
    "table3_layout": "Rows are the stage-2 annotations (ann12, ann22, ann32, annmv2), columns the stage-1 "
                     "annotations (ann11, ann21, ann31, annmv1); entry = mean IoU between the two. 'mv' = majority "
                     "vote of the three annotators. Diagonal = the same annotator 4 months apart; annmv1 x annmv2 "
                     "= 0.843 is the highest entry.",
    "table5_mlc": "MLC(a, b) = features after the a-th conv of the box/occlusion branches combined with the "
                  "feature after the b-th conv of the mask branch; a = 0 / b = 0 is the RoI feature before any "
                  "conv. The paper's best and default is MLC(1, 1): after the first conv of each branch (section "
                  "5.2). Table 4's 'Mask R-CNN + ASN' row equals Table 5's MLC(1, 1) row.",
    "table7_codes": "A 4-digit code names MLC's four parts in order (1 extraction fusion, 2 extraction convs, 3 "
                    "combination fusion, 4 combination convs); a 0 marks the one part changed from the default, "
                    "and 'modification' says how. '1111' is the default MLC.",
    "table8": "Errors in percent, averaged over background and foreground of the KITTI 2015 validation set; lower "
              "is better. OSF = Menze and Geiger 2015; ISF = Behl et al. 2017 (instance scene flow); 'ISF with "
              "KINS' = ISF whose instance masks come from a model trained on KINS.",
    "figure4c": "Bars as printed, two series (max match number, max occlusion order) over values 1, 2, 3, 4, 5, "
                ">6. The text extraction interleaves them; the pairing by bar position below is the likely one, "
                "not certain. The text states: clusters with max occlusion order above 6 are 1.54 % of the "
                "dataset.",
    "figure4ab": "Figure 4(a) (occlusion ratio histogram) and 4(b) (box consistency histogram) print no numbers "
                 "in the paper; only section 3's text gives related figures (mean occlusion ratio 31.7 %, 78.34 % "
                 "of images with mean box IoU above 0.65).",
    "figure5": "Mask R-CNN trained longer (20,000 vs 24,000 iterations) shrinks the masks of occluded parts: the "
               "paper's overfitting observation that motivates ASN.",
}

# ----------------------------------------------------------------------------------------------
# section 3: the dataset
# ----------------------------------------------------------------------------------------------
DATASET: dict[str, Any] = {
    "images_total": 14991, "images_train": 7474, "images_test": 7517,
    "instances_per_image": 12.53, "points_per_polygon": 33.70, "pixel_coverage_percent": 8.3,
    "partially_occluded_percent": 53.6, "mean_occlusion_ratio_percent": 31.7,
    "minutes_per_image": 8, "minutes_per_instance": 0.38,
    "box_consistency": {"objects_per_image_kins": 12.74, "objects_per_image_kitti_detection": 6.93,
                        "images_with_mean_box_iou_above_0.65_percent": 78.34},
    "max_occlusion_order_above_6_percent_of_clusters": 1.54,
    "experiments": {"categories": 7, "excluded": "person-sitting", "train_images": 7474, "test_images": 7518,
                    "note": "section 5 says 7,518 test images, section 3 says 7,517"},
}

# ----------------------------------------------------------------------------------------------
# Table 1: class distribution (paper order); ratios in percent of the 190,626 instances
# ----------------------------------------------------------------------------------------------
TABLE1_TITLE = "Class distribution of KINS"
TABLE1: dict[str, dict[str, Any]] = {
    "pedestrian": {"general": "people", "count": 20134, "ratio_percent": 10.56},
    "cyclist": {"general": "people", "count": 5120, "ratio_percent": 2.69},
    "person-sitting": {"general": "people", "count": 2250, "ratio_percent": 1.18},
    "car": {"general": "vehicle", "count": 129164, "ratio_percent": 67.76},
    "van": {"general": "vehicle", "count": 11306, "ratio_percent": 5.93},
    "tram": {"general": "vehicle", "count": 2074, "ratio_percent": 1.09},
    "truck": {"general": "vehicle", "count": 1756, "ratio_percent": 0.92},
    "misc": {"general": "vehicle", "count": 18822, "ratio_percent": 9.87},
}
TABLE1_PEOPLE_PERCENT = 14.43


def table1_general(name: str) -> Optional[dict[str, Any]]:
    """Paper count and ratio of a general class (``people`` / ``vehicle``), summed from its rows;
    the people share is the printed 14.43 %."""
    members = [row for row in TABLE1.values() if row["general"] == name]
    if not members:
        return None
    total = sum(row["count"] for row in members)
    ratio = (TABLE1_PEOPLE_PERCENT if name == "people"
             else round(sum(row["ratio_percent"] for row in members), 2))
    return {"count": total, "ratio_percent": ratio}


def table1_total() -> int:
    """190,626: the column total the printed ratios divide by."""
    return sum(row["count"] for row in TABLE1.values())


# ----------------------------------------------------------------------------------------------
# Table 2: shape statistics, means over segments (pairing of the two columns: NOTES["table2_columns"])
# ----------------------------------------------------------------------------------------------
TABLE2_TITLE = "Shape statistics of amodal and inmodal segments (means over segments)"
TABLE2: dict[str, dict[str, dict[str, float]]] = {
    "BSDS-A": {"convexity": {"inmodal": 0.718, "amodal": 0.834}, "simplicity": {"inmodal": 0.616, "amodal": 0.643}},
    "COCO-A": {"convexity": {"inmodal": 0.746, "amodal": 0.856}, "simplicity": {"inmodal": 0.658, "amodal": 0.685}},
    "KINS": {"convexity": {"inmodal": 0.709, "amodal": 0.830}, "simplicity": {"inmodal": 0.610, "amodal": 0.639}},
}
TABLE2_PAIRING_FLAG = ("Column pairing flagged: the paper's text extraction is ambiguous about which column is "
                       "convexity and which simplicity; the paper numbers here are paired by magnitude "
                       "(convexity = the larger pair).")

# ----------------------------------------------------------------------------------------------
# Table 3: rows = stage-2 annotations, columns = stage-1 annotations, entry = mean IoU
# ----------------------------------------------------------------------------------------------
TABLE3_TITLE = ("Consistency (mean IoU) of three annotators and their majority vote across two annotation "
                "stages 4 months apart")
TABLE3: dict[str, Any] = {
    "rows_stage2": ("ann12", "ann22", "ann32", "annmv2"),
    "columns_stage1": ("ann11", "ann21", "ann31", "annmv1"),
    "matrix": ((0.836, 0.802, 0.805, 0.834),
               (0.809, 0.840, 0.818, 0.836),
               (0.804, 0.816, 0.835, 0.833),
               (0.838, 0.836, 0.837, 0.843)),
    "images": 1000,
}

# ----------------------------------------------------------------------------------------------
# Table 4: Det / Amodal Seg / Inmodal Seg AP (%), KINS test set, mean of 5 runs (paper order)
# ----------------------------------------------------------------------------------------------
TABLE4_TITLE = "Det / Amodal Seg / Inmodal Seg AP (%) on the KINS test set, mean of 5 runs, variance 0.3"
AP_METRICS = ("det_ap", "amodal_ap", "inmodal_ap")
TABLE4: dict[str, tuple[float, float, float]] = {
    "MNC": (20.9, 18.5, 16.1),
    "FCIS": (25.6, 23.5, 20.8),
    "ORCNN": (30.9, 29.0, 26.4),
    "Mask R-CNN": (31.3, 29.3, 26.6),
    "Mask R-CNN + ASN": (32.7, 31.1, 28.7),
    "PANet": (32.3, 30.4, 27.6),
    "PANet + ASN": (33.4, 32.2, 29.7),
}
TABLE4_PARAMETERS = {"PANet": 44056576, "Mask R-CNN + ASN": 13402240}
TABLE4_SETUP = ("8 NVIDIA P40 GPUs, batch 8, 24,000 iterations, SGD lr 0.02 momentum 0.9, lr x0.1 at 20,000 and "
                "22,000; amodal boxes as box ground truth; five runs averaged, 'the variance is 0.3'")
# our variant -> the Table 4 row it implements (MNC and FCIS are not implemented here)
TABLE4_VARIANTS: dict[str, str] = {
    "orcnn": "ORCNN",
    "mrcnn": "Mask R-CNN",
    "mrcnn_asn": "Mask R-CNN + ASN",
    "panet": "PANet",
    "panet_asn": "PANet + ASN",
}

# ----------------------------------------------------------------------------------------------
# Table 5: mask heads, OC and MLC(a, b) (NOTES["table5_mlc"]); None = not printed (no such head)
# ----------------------------------------------------------------------------------------------
TABLE5_TITLE = "Mask heads, occlusion classification (OC) and MLC fusion position (paper's MLC(a, b))"
TABLE5: tuple[dict[str, Any], ...] = (
    {"model": "Mask R-CNN, inmodal mask only", "mlc": None, "values": (31.0, None, 26.4)},
    {"model": "Mask R-CNN, amodal mask only", "mlc": None, "values": (31.1, 29.2, None)},
    {"model": "Mask R-CNN, amodal + inmodal", "mlc": None, "values": (31.3, 29.3, 26.6)},
    {"model": "Mask R-CNN + OC", "mlc": None, "values": (31.9, 30.0, 27.9)},
    {"model": "Mask R-CNN + OC + MLC(0,0)", "mlc": (0, 0), "values": (32.5, 31.0, 28.6)},
    {"model": "Mask R-CNN + OC + MLC(1,1)", "mlc": (1, 1), "values": (32.7, 31.1, 28.7)},
    {"model": "Mask R-CNN + OC + MLC(2,2)", "mlc": (2, 2), "values": (32.3, 30.6, 28.2)},
    {"model": "Mask R-CNN + OC + MLC(3,3)", "mlc": (3, 3), "values": (31.7, 29.8, 28.0)},
    {"model": "Mask R-CNN + OC + MLC(0,3)", "mlc": (0, 3), "values": (31.9, 29.8, 27.9)},
    {"model": "Mask R-CNN + OC + MLC(3,0)", "mlc": (3, 0), "values": (31.8, 29.7, 27.8)},
)

# ----------------------------------------------------------------------------------------------
# Table 6: OC overlap threshold (MR = Mask R-CNN); values (det, amodal, inmodal, occlusion accuracy
# as a FRACTION, as printed)
# ----------------------------------------------------------------------------------------------
TABLE6_TITLE = "Overlap threshold of the occlusion classification branch (MR = Mask R-CNN)"
TABLE6_METRICS = ("det_ap", "amodal_ap", "inmodal_ap", "occlusion_accuracy")
TABLE6: tuple[dict[str, Any], ...] = (
    {"model": "MR", "threshold": None, "values": (31.3, 29.3, 26.6, 0.866)},
    {"model": "MR + OC(0%)", "threshold": 0.00, "values": (31.7, 29.7, 27.5, 0.871)},
    {"model": "MR + OC(5%)", "threshold": 0.05, "values": (31.9, 30.0, 27.9, 0.872)},
    {"model": "MR + OC(15%)", "threshold": 0.15, "values": (31.4, 29.6, 27.3, 0.869)},
    {"model": "MR + OC(20%)", "threshold": 0.20, "values": (31.2, 29.4, 26.7, 0.866)},
)


def occlusion_accuracy_percent(fraction: float) -> float:
    """The paper prints occlusion accuracy as a fraction (0.872); our metrics.json's
    ``occlusion_accuracy`` is a percentage (87.2): the paper's value in our unit."""
    return round(100.0 * float(fraction), 6)


# ----------------------------------------------------------------------------------------------
# Table 7: the four MLC parts (NOTES["table7_codes"]: digits = 1 extraction fusion, 2 extraction
# convs, 3 combination fusion, 4 combination convs; 0 = the part changed)
# ----------------------------------------------------------------------------------------------
TABLE7_TITLE = "Operations of the four MLC parts"
TABLE7_PARTS = ("extraction fusion", "extraction convs", "combination fusion", "combination convs")
TABLE7: tuple[dict[str, Any], ...] = (
    {"code": "0111", "modification": "ADD", "values": (32.1, 30.5, 27.9)},
    {"code": "1011", "modification": "Order Adjustment", "values": (32.4, 30.6, 28.0)},
    {"code": "1011", "modification": "1 CONV", "values": (31.9, 30.3, 27.6)},
    {"code": "1011", "modification": "3 CONV", "values": (32.7, 31.0, 28.6)},
    {"code": "1101", "modification": "ADD", "values": (32.3, 30.6, 28.1)},
    {"code": "1110", "modification": "Order Adjustment", "values": (32.6, 31.0, 28.5)},
    {"code": "1110", "modification": "1 CONV", "values": (32.0, 30.1, 27.5)},
    {"code": "1110", "modification": "3 CONV", "values": (32.6, 31.1, 28.6)},
    {"code": "1111", "modification": None, "values": (32.7, 31.1, 28.7)},
)


def table7_label(row: dict[str, Any]) -> str:
    """``"0111 ADD"``, ``"1111 (default MLC)"``."""
    return f"{row['code']} {row['modification']}" if row["modification"] else f"{row['code']} (default MLC)"


# ----------------------------------------------------------------------------------------------
# Table 8: scene flow errors (%) on the KITTI 2015 validation set (NOTES["table8"])
# ----------------------------------------------------------------------------------------------
TABLE8_TITLE = "Scene flow errors (%) on the KITTI 2015 validation set, background and foreground averaged"
TABLE8_METRICS = ("D1", "D2", "Fl", "SF")
TABLE8: dict[str, tuple[float, float, float, float]] = {
    "OSF": (4.74, 6.99, 8.55, 9.94),
    "ISF": (3.61, 4.84, 6.50, 7.46),
    "ISF with KINS": (3.56, 4.75, 6.39, 7.35),
}

# ----------------------------------------------------------------------------------------------
# Figure 4(c): bars as printed (series pairing: NOTES["figure4c"])
# ----------------------------------------------------------------------------------------------
FIGURE4C_TITLE = ("Cluster statistics: number of objects (max match number) and clusters (max occlusion order) "
                  "per value")
FIGURE4C: dict[str, Any] = {
    "values": ("1", "2", "3", "4", "5", ">6"),
    "max_match_number": (97840, 45474, 7380, 4105, 4789, 2984),
    "max_occlusion_order": (63920, 24987, 11819, 4129, 1821, 2895),
    "definitions": "max occlusion order of a cluster = the number of occluded instances in it; max match number "
                   "of an object = the number of instances overlapping it",
}

FIGURE5 = NOTES["figure5"]


def fractions(counts) -> list[float]:
    """Counts as fractions of their series' total (how bars of different scale are compared)."""
    total = float(sum(counts))
    return [float(c) / total if total else float("nan") for c in counts]

