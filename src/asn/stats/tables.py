"""Tables 1 and 2 and the shared Markdown / CSV rendering of every statistics table.

Every Markdown table starts with a header that names the data source (synthetic world vs
KINS) and the command that produced it, so a table copied out of ``reports/`` keeps its
provenance.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Sequence

import numpy as np

from asn.data.categories import KINS_CATEGORIES

# Paper order: people first, then vehicles.
TABLE1_ORDER: tuple[int, ...] = (2, 1, 3, 4, 5, 6, 7, 8)


def format_cell(value: Any, digits: int = 4) -> str:
    """Numbers rounded for reading; NaN as 'n/a'."""
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(float(value)) else f"{float(value):.{digits}f}"
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value)


def markdown_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], source: str, command: str,
    notes: Sequence[str] = (),
) -> str:
    """A Markdown document: title, provenance lines, the table, then notes."""
    lines = [f"# {title}", "", f"Data source: {source}  ", f"Produced by: `{command}`", ""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(format_cell(v) for v in row) + " |")
    if notes:
        lines.append("")
        lines.extend(f"- {note}" for note in notes)
    return "\n".join(lines) + "\n"


def csv_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV text with a header row (full precision floats, empty for NaN)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            ["" if isinstance(v, (float, np.floating)) and not math.isfinite(float(v))
             else (float(v) if isinstance(v, np.floating) else int(v) if isinstance(v, np.integer) else v)
             for v in row]
        )
    return buffer.getvalue()


def table1_rows(category_ids_by_split: dict[str, np.ndarray]) -> tuple[list[str], list[list[Any]]]:
    """Table 1: instances per category and supercategory, per split and in total.

    Args:
        category_ids_by_split: split -> int [n] category id per instance.
    Returns:
        ``(columns, rows)``: a row per supercategory followed by its subcategories (ids in
        :data:`TABLE1_ORDER`; person-sitting keeps its row even with 0 instances), then a total.
        Ratios are fractions of all instances (``ratio``) and of the supercategory
        (``ratio_in_supercategory``). Unknown category ids are counted in the total only.
    """
    splits = list(category_ids_by_split)
    counts = {
        s: np.bincount(np.asarray(ids, np.int64).clip(min=0), minlength=max(KINS_CATEGORIES) + 1)
        for s, ids in category_ids_by_split.items()
    }
    totals_by_split = {s: int(np.asarray(ids).size) for s, ids in category_ids_by_split.items()}
    grand_total = sum(totals_by_split.values())
    columns = ["category", "supercategory", *[f"{s}_count" for s in splits], "total", "ratio",
               "ratio_in_supercategory"]
    rows: list[list[Any]] = []
    supercategories: dict[str, list[int]] = {}
    for cid in TABLE1_ORDER:
        supercategories.setdefault(KINS_CATEGORIES[cid][1], []).append(cid)

    def count(cid: int, split: str) -> int:
        c = counts[split]
        return int(c[cid]) if cid < c.size else 0

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    for supercategory, cids in supercategories.items():
        super_counts = [sum(count(c, s) for c in cids) for s in splits]
        super_total = sum(super_counts)
        rows.append([supercategory, "-", *super_counts, super_total, ratio(super_total, grand_total), 1.0 if super_total else float("nan")])
        for cid in cids:
            sub_counts = [count(cid, s) for s in splits]
            sub_total = sum(sub_counts)
            rows.append([KINS_CATEGORIES[cid][0], supercategory, *sub_counts, sub_total,
                         ratio(sub_total, grand_total), ratio(sub_total, super_total)])
    rows.append(["total", "-", *[totals_by_split[s] for s in splits], grand_total,
                 1.0 if grand_total else float("nan"), float("nan")])
    return columns, rows


def table2_rows(means: dict[str, dict[str, dict[str, float]]]) -> tuple[list[str], list[list[Any]]]:
    """Table 2 rows from ``means[split][kind] = mean_measures(...)`` (kind amodal / inmodal)."""
    columns = ["split", "segments", "convexity", "simplicity", "n_segments", "n_measured", "n_multi_part"]
    rows = []
    for split, by_kind in means.items():
        for kind in ("amodal", "inmodal"):
            m = by_kind[kind]
            rows.append([split, kind, m["convexity"], m["simplicity"], m["n_segments"],
                         m["n_measured"], m["n_multi_part"]])
    return columns, rows


# ----------------------------------------------------------------------------------------------
# the paper's columns beside ours (asn.paper; labelled paper-reported, never mixed with ours)
# ----------------------------------------------------------------------------------------------
TABLE1_PAPER_COLUMNS = ("ratio_percent", "paper_kins_count", "paper_kins_ratio_percent")


def table1_with_paper(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[list[str], list[list[Any]]]:
    """Table 1 rows (:func:`table1_rows`) with our ratio in percent and the paper's count and
    ratio (percent, as printed) of the same category, supercategory or total."""
    from asn import paper

    index = {name: i for i, name in enumerate(columns)}
    out = []
    for row in rows:
        ratio = row[index["ratio"]]
        ours = "n/a" if not math.isfinite(float(ratio)) else f"{100.0 * float(ratio):.2f}"
        ref = paper_table1_entry(row[index["category"]])
        out.append([*row, ours, *((ref["count"], f"{ref['ratio_percent']:.2f}") if ref else ("", ""))])
    return [*columns, *TABLE1_PAPER_COLUMNS], out


def paper_table1_entry(name: str) -> dict[str, Any] | None:
    """The paper's Table 1 ``{"count", "ratio_percent"}`` of a category, supercategory (people /
    vehicle) or ``total``; None when the paper has no such row."""
    from asn import paper

    if name in paper.TABLE1:
        return paper.TABLE1[name]
    if name == "total":
        return {"count": paper.table1_total(), "ratio_percent": 100.0}
    return paper.table1_general(name)


TABLE1_PAPER_NOTES = (
    "paper_kins_count / paper_kins_ratio_percent: paper-reported on KINS (Qi et al., CVPR 2019, Table 1; 190,626 "
    "instances, ratio = count / 190,626 in percent); context, not a result of this project.",
    "person-sitting: a paper row (2,250 instances); the public KINS files hold none (category 3, count 0 here), "
    "and it is excluded from the experiments, as in the paper.",
)


def table2_with_paper(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[list[str], list[list[Any]]]:
    """Table 2 rows (:func:`table2_rows`) tagged ``ours``, then the paper's BSDS-A, COCO-A and KINS
    rows (paper-reported on that dataset, 3 decimals as printed; column pairing flagged:
    :data:`asn.paper.TABLE2_PAIRING_FLAG`)."""
    from asn import paper

    out: list[list[Any]] = [[*row, "ours"] for row in rows]
    blank = [float("nan")] * (len(columns) - 4)
    for dataset, values in paper.TABLE2.items():
        for kind in ("amodal", "inmodal"):
            out.append([dataset, kind, f"{values['convexity'][kind]:.3f}", f"{values['simplicity'][kind]:.3f}", *blank,
                        f"paper-reported on {dataset} ({paper.cite('Table 2')})"])
    return [*columns, "source"], out


def table2_paper_notes() -> list[str]:
    from asn import paper

    return [f"Rows with source 'paper-reported': the paper's numbers ({paper.cite('Table 2')}; BSDS-A and COCO-A as "
            "the paper reports them, KINS on the real data); context, not a result of this project.",
            paper.TABLE2_PAIRING_FLAG]


# our two count columns stay last (the DVC plot of figure4c.csv draws the last column by default)
FIGURE4C_COLUMNS = ("bucket", "paper_value", "clusters_fraction", "paper_kins_max_occlusion_order_fraction",
                    "instances_fraction", "paper_kins_max_match_number_fraction", "paper_kins_max_occlusion_order",
                    "paper_kins_max_match_number", "clusters_by_max_order", "instances_by_match_number")


def figure4c_rows(order_counts: Sequence[int], match_counts: Sequence[int]) -> list[list[Any]]:
    """Figure 4(c) rows (:data:`FIGURE4C_COLUMNS`): per bucket (1..5, >5) the fractions of each of
    our series beside the paper's (values 1..5, '>6', paired by position; NOTES['figure4c']),
    the paper's counts, then our counts. The counts differ in scale, so the fractions of each
    series are what compare."""
    from asn import paper
    from asn.stats.clusters import BUCKET_LABELS

    ours_order, ours_match = paper.fractions(order_counts), paper.fractions(match_counts)
    ref = paper.FIGURE4C
    ref_order, ref_match = paper.fractions(ref["max_occlusion_order"]), paper.fractions(ref["max_match_number"])
    return [[label, ref["values"][i], ours_order[i], ref_order[i], ours_match[i], ref_match[i],
             ref["max_occlusion_order"][i], ref["max_match_number"][i], int(order_counts[i]), int(match_counts[i])]
            for i, label in enumerate(BUCKET_LABELS)]


FIGURE4C_CAVEAT = ("Paper bars (paper-reported on KINS, Qi et al., CVPR 2019, Figure 4(c)): the text extraction "
                   "interleaves the two series; the pairing by bar position used here is the likely one, not "
                   "certain. The paper's last value is printed '>6' (no '6'); it is paired with our '>5'.")
FIGURE4AB_NOTE = "no numbers in the paper"


def summary_comparison(summary: dict[str, Any]) -> list[list[Any]]:
    """Section 3.2's dataset statistics, ours (summary.json) beside the paper's: rows of
    ``[statistic, ours, paper-reported on KINS, note]`` (ours None where we compute none)."""
    from asn import paper

    d = paper.DATASET

    def pct(key: str) -> Any:
        value = summary.get(key)
        return None if value is None else 100.0 * float(value)

    per_split = summary.get("per_split") or {}
    return [
        ["images", summary.get("n_images"), d["images_total"], "train + test"],
        ["train images", (per_split.get("train") or {}).get("n_images"), d["images_train"], ""],
        ["test images", (per_split.get("test") or {}).get("n_images"), d["images_test"],
         "section 5 of the paper says 7,518"],
        ["instances per image", summary.get("instances_per_image"), d["instances_per_image"], ""],
        ["points per polygon", summary.get("points_per_polygon"), d["points_per_polygon"],
         "ours: vertices per amodal polygon part"],
        ["pixel coverage (%)", pct("amodal_pixel_coverage"), d["pixel_coverage_percent"],
         "ours: share of image pixels inside the union of the amodal masks, mean over images"],
        ["partially occluded instances (%)", pct("fraction_partially_occluded"), d["partially_occluded_percent"],
         "ours: occlusion ratio > 0"],
        ["mean occlusion ratio (%)", pct("mean_occlusion_ratio"), d["mean_occlusion_ratio_percent"],
         "ours: mean over all instances"],
        ["images with mean box IoU > 0.65 (%)", pct("box_consistency_share_above_0_65"),
         d["box_consistency"]["images_with_mean_box_iou_above_0.65_percent"],
         "inmodal boxes vs KITTI label_2 boxes (Figure 4(b))"],
        ["objects per image, KINS", summary.get("instances_per_image"), d["box_consistency"]["objects_per_image_kins"],
         "the paper's box-consistency subset; ours: all images"],
        ["objects per image, KITTI detection labels", None,
         d["box_consistency"]["objects_per_image_kitti_detection"], "not computed here"],
        ["clusters with max occlusion order > 6 (%)", pct("cluster_max_order_above_6_fraction"),
         d["max_occlusion_order_above_6_percent_of_clusters"], "share of all occlusion clusters"],
        ["annotation minutes per image", None, d["minutes_per_image"], "no counterpart (synthetic world)"],
        ["annotation minutes per instance", None, d["minutes_per_instance"], "no counterpart (synthetic world)"],
    ]
