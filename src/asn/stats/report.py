"""The `stats` stage: statistics of a normalized dataset -> tables, metrics, plots, pictures.

Outputs under ``out_dir`` (each written atomically, and only after every statistic has been
computed, so bad input leaves no partial output):
    table1.md/.csv        instances per category and supercategory (Table 1), the paper's beside
    table2.md/.csv        convexity and simplicity, amodal and inmodal (Table 2), + the paper's rows
    summary.json          DVC metrics: summary numbers, Table 2 means, box consistency share
    figure4a.png/.csv     occlusion-ratio histogram (the paper prints no numbers for it)
    figure4b.png/.csv     per-image mean box IoU histogram (+ share of images above 0.65; idem)
    figure4c.png/.csv     max order per cluster and match number, counts for 1..5 and >5, and the
                          fractions of each series beside the paper's bars
    table3.md/.csv/.json  annotator consistency (when annotator files exist) + majority_vote.json

The paper's numbers (asn.paper) appear beside ours, labelled paper-reported on KINS.
    vis/NNNNNN.png        amodal masks with order digits | inmodal masks
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from asn import paper
from asn.errors import InputError
from asn.io import atomic_dir, read_json, write_json_atomic, write_text_atomic
from asn.stats.boxes import share_above
from asn.stats.clusters import BUCKET_LABELS, MAX_ORDER_DEFINITION, bucket_counts
from asn.stats.compute import compute_statistics
from asn.stats.shapes import mean_measures
from asn.stats.tables import (FIGURE4AB_NOTE, FIGURE4C_CAVEAT, FIGURE4C_COLUMNS, TABLE1_PAPER_NOTES, csv_table,
                              figure4c_rows, markdown_table, table1_rows, table1_with_paper, table2_paper_notes,
                              table2_rows, table2_with_paper)

BOX_IOU_THRESHOLD = 0.65
OCCLUSION_BINS = np.linspace(0.0, 1.0, 11)
BOX_IOU_BINS = np.linspace(0.0, 1.0, 21)


def data_source_label(raw_dir: str | os.PathLike | None, synthetic: bool | None, source: str | None) -> str:
    """Provenance text for table headers: explicit ``source``, then ``synthetic``, then the raw
    folder's ``manifest.json`` (keys ``source`` or ``data_source``), else ``unknown``."""
    if source:
        return source
    if synthetic:
        return "synthetic (embedded KINS-format world, not KINS)"
    if raw_dir is not None:
        manifest = Path(raw_dir) / "manifest.json"
        if manifest.is_file():
            data = read_json(manifest)
            value = data.get("source", data.get("data_source")) if isinstance(data, dict) else None
            if value:
                if str(value) == "synthetic":
                    return "synthetic (embedded KINS-format world, not KINS)"
                return "KINS (KITTI images, KINS annotations)" if str(value) == "kins" else str(value)
    return "unknown (pass --synthetic or --source)"


def _histogram_rows(values: np.ndarray, bins: np.ndarray) -> list[list[Any]]:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    counts, _ = np.histogram(values, bins=bins)
    total = counts.sum()
    return [[float(lo), float(hi), int(c), (c / total) if total else float("nan")]
            for lo, hi, c in zip(bins[:-1], bins[1:], counts)]


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def _json_number(value: float) -> float | None:
    """NaN is not JSON: None instead."""
    return None if value is None or not np.isfinite(value) else float(value)


def find_annotator_files(raw_dir: str | os.PathLike | None) -> list[Path]:
    """``raw/annotators/annotator_*.json`` sorted by name (empty when there are none)."""
    if raw_dir is None:
        return []
    return _annotator_files(Path(raw_dir) / "annotators")


def find_stage2_annotator_files(raw_dir: str | os.PathLike | None) -> list[Path]:
    """``raw/annotators/stage2/annotator_*.json``: the same annotators' second annotation stage (Table 3's
    second stage; empty when there are none)."""
    return [] if raw_dir is None else _annotator_files(Path(raw_dir) / "annotators" / "stage2")


def _annotator_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("annotator_*.json")) if folder.is_dir() else []


def run_stats(
    gt_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    raw_dir: str | os.PathLike | None = None,
    splits: list[str] | tuple[str, ...] = ("train", "test"),
    n_vis: int = 4,
    workers: int = 2,
    source_label: str = "unknown",
    command: str = "asn stats",
    annotator_files: list[Path] | None = None,
    annotator_source_label: str | None = None,
    chunk_pixels: int = 20_000_000,
    annotator_stage2_files: list[Path] | None = None,
    annotator_reference: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Compute every statistic, then write the outputs listed in the module docstring.

    Table 3 has the paper's two-stage layout when ``annotator_stage2_files`` are given (the
    same annotators' second annotation stage), each stage scored against ``annotator_reference`` (the
    released annotation, e.g. ``<gt>/train_amodal.json``) when given.

    Returns:
        the summary dict (as written to summary.json) plus ``timings`` (seconds per part,
        summed over the split workers) and ``written`` (paths).
    """
    gt_dir = Path(gt_dir)
    out_dir = Path(out_dir)
    splits = list(splits)
    if not splits:
        raise InputError(gt_dir, "no split given")
    if not gt_dir.is_dir():
        raise InputError(gt_dir, "normalized ground-truth folder not found")
    label_dir = Path(raw_dir) / "training" / "label_2" if raw_dir is not None else None
    t_start = time.perf_counter()
    per_split = compute_statistics(gt_dir, splits, label_dir=label_dir, workers=workers,
                                   chunk_pixels=chunk_pixels, n_vis=n_vis)
    consistency = None
    if annotator_files:
        from asn.stats.consistency import consistency_statistics

        t_c = time.perf_counter()
        if annotator_stage2_files:
            from asn.stats.consistency import two_stage_statistics

            consistency = two_stage_statistics(annotator_files, annotator_stage2_files, annotator_reference)
        else:
            consistency = consistency_statistics(annotator_files)
        consistency_seconds = time.perf_counter() - t_c
    t_report = time.perf_counter()

    # --- aggregate ---------------------------------------------------------------------
    def concat(key: str) -> np.ndarray:
        return np.concatenate([per_split[s][key] for s in splits])

    occlusion = concat("occlusion_ratio")
    n_instances = int(occlusion.size)
    n_images = int(sum(per_split[s]["image_ids"].size for s in splits))
    part_points = concat("amodal_part_points")
    means: dict[str, dict[str, dict[str, float]]] = {}
    for s in [*splits, "all"]:
        means[s] = {}
        for kind in ("amodal", "inmodal"):
            arrays = {key: (concat(f"{kind}_{key}") if s == "all" else per_split[s][f"{kind}_{key}"])
                      for key in ("convexity", "simplicity", "n_parts")}
            means[s][kind] = mean_measures(arrays)
    if len(splits) == 1:
        means.pop("all")
    has_order = any(per_split[s]["has_order"] for s in splits)
    cluster_max_order = concat("cluster_max_order")
    match_number = concat("match_number")
    box_mean_iou = per_split["train"].get("box_mean_iou") if "train" in per_split else None

    table_means = means.get("all", means[splits[0]])
    summary: dict[str, Any] = {
        "source": source_label,
        "splits": splits,
        "n_images": n_images,
        "n_instances": n_instances,
        "instances_per_image": n_instances / n_images if n_images else None,
        "points_per_polygon": _json_number(float(part_points.mean())) if part_points.size else None,
        "amodal_pixel_coverage": _json_number(_nanmean(concat("covered_fraction"))),
        "fraction_partially_occluded": _json_number(float((occlusion[np.isfinite(occlusion)] > 0).mean()))
        if np.isfinite(occlusion).any() else None,
        "mean_occlusion_ratio": _json_number(_nanmean(occlusion)),
        "amodal_convexity": _json_number(table_means["amodal"]["convexity"]),
        "amodal_simplicity": _json_number(table_means["amodal"]["simplicity"]),
        "inmodal_convexity": _json_number(table_means["inmodal"]["convexity"]),
        "inmodal_simplicity": _json_number(table_means["inmodal"]["simplicity"]),
        "box_consistency_images": int(np.isfinite(box_mean_iou).sum()) if box_mean_iou is not None else 0,
        "box_consistency_mean_iou": _json_number(_nanmean(box_mean_iou)) if box_mean_iou is not None else None,
        "box_consistency_share_above_0_65": _json_number(share_above(box_mean_iou, BOX_IOU_THRESHOLD))
        if box_mean_iou is not None else None,
        "n_clusters": int(cluster_max_order.size),
        "cluster_max_order_above_6_fraction": _json_number(float((cluster_max_order > 6).mean()))
        if has_order and cluster_max_order.size else None,
        "instances_without_overlap": int((match_number == 0).sum()),
        "per_split": {
            s: {
                "n_images": int(per_split[s]["image_ids"].size),
                "n_instances": int(per_split[s]["category_id"].size),
                "amodal_convexity": _json_number(means[s]["amodal"]["convexity"]),
                "amodal_simplicity": _json_number(means[s]["amodal"]["simplicity"]),
                "inmodal_convexity": _json_number(means[s]["inmodal"]["convexity"]),
                "inmodal_simplicity": _json_number(means[s]["inmodal"]["simplicity"]),
            }
            for s in splits
        },
    }
    if consistency is not None:
        from asn.stats.consistency import mean_pairwise

        summary["annotator_mean_iou"] = _json_number(mean_pairwise(consistency["matrix"]))
        for stage in consistency.get("stages", []):
            if stage["stage"] == 2:
                summary["annotator_mean_iou_stage2"] = _json_number(mean_pairwise(stage["matrix"]))

    # --- tables --------------------------------------------------------------------------
    written: list[Path] = []
    columns, rows = table1_with_paper(*table1_rows({s: per_split[s]["category_id"] for s in splits}))
    notes1 = ["ratio = share of all instances; ratio_in_supercategory = share within its supercategory; "
              "ratio_percent = ratio in percent (as the paper prints it).", *TABLE1_PAPER_NOTES]
    outputs: dict[str, str | bytes] = {
        "table1.md": markdown_table("Table 1: instances per category", columns, rows, source_label, command, notes1),
        "table1.csv": csv_table(columns, rows),
    }
    columns, rows = table2_with_paper(*table2_rows(means))
    notes2 = [
        "convexity = area / area(convex hull); simplicity = sqrt(4*pi*area) / perimeter; means over segments.",
        "Multi-part segments: area = sum of part areas, hull = convex hull of all parts, perimeter = sum of "
        "all boundary lengths (holes included).",
        "Inmodal polygons are traced from the RLE masks (OpenCV contours through pixel centres, holes kept).",
        "Segments without a ring of 3+ vertices or with zero area are not measured (n_segments - n_measured).",
        *table2_paper_notes(),
    ]
    outputs["table2.md"] = markdown_table("Table 2: shape convexity and simplicity", columns, rows, source_label, command, notes2)
    outputs["table2.csv"] = csv_table(columns, rows)

    # --- figure data -------------------------------------------------------------------
    from asn.stats.plots import bar_chart_png

    fig_a = _histogram_rows(occlusion, OCCLUSION_BINS)
    outputs["figure4a.csv"] = csv_table(["bin_low", "bin_high", "instances", "fraction"], fig_a)
    fig_b = _histogram_rows(box_mean_iou if box_mean_iou is not None else np.zeros(0), BOX_IOU_BINS)
    outputs["figure4b.csv"] = csv_table(["bin_low", "bin_high", "images", "fraction"], fig_b)
    order_counts = bucket_counts(cluster_max_order) if has_order else {k: 0 for k in ("0", *BUCKET_LABELS)}
    match_counts = bucket_counts(match_number)
    fig_c = figure4c_rows([order_counts[label] for label in BUCKET_LABELS],
                          [match_counts[label] for label in BUCKET_LABELS])
    outputs["figure4c.csv"] = csv_table(FIGURE4C_COLUMNS, fig_c)
    summary["cluster_max_order_counts"] = {k: order_counts[k] for k in BUCKET_LABELS}
    summary["cluster_max_order_definition"] = MAX_ORDER_DEFINITION
    summary["match_number_counts"] = {k: match_counts[k] for k in ("0", *BUCKET_LABELS)}

    if consistency is not None:
        summary["annotator_files"] = [str(p) for p in annotator_files or []]
        if annotator_stage2_files:
            summary["annotator_stage2_files"] = [str(p) for p in annotator_stage2_files]

    # Nothing was written so far: any bad input has already raised.
    for name, content in outputs.items():
        written.append(write_text_atomic(out_dir / name, content) if isinstance(content, str) else None)
    bar_chart_png(out_dir / "figure4a.png", [f"{r[0]:.1f}-{r[1]:.1f}" for r in fig_a],
                  {"instances": [r[2] for r in fig_a]},
                  f"Figure 4(a): occlusion ratio\n({source_label})\n({FIGURE4AB_NOTE}; text: mean occlusion "
                  f"ratio {paper.DATASET['mean_occlusion_ratio_percent']} % on KINS)",
                  "occlusion ratio", "instances")
    written.append(out_dir / "figure4a.png")
    share = summary["box_consistency_share_above_0_65"]
    bar_chart_png(out_dir / "figure4b.png", [f"{r[0]:.2f}" for r in fig_b], {"images": [r[2] for r in fig_b]},
                  f"Figure 4(b): mean box IoU per image; share > 0.65: "
                  f"{'n/a' if share is None else f'{share:.3f}'}\n({source_label})\n({FIGURE4AB_NOTE}; text: "
                  f"{paper.DATASET['box_consistency']['images_with_mean_box_iou_above_0.65_percent']} % of KINS "
                  "images > 0.65)",
                  "mean IoU (bin start)", "images",
                  vline=BOX_IOU_THRESHOLD / 0.05 - 0.5)
    written.append(out_dir / "figure4b.png")
    from asn.stats.plots import paired_panels_png

    paired_panels_png(
        out_dir / "figure4c.png", [r[0] if r[0] == r[1] else f"{r[0]} / {r[1]}" for r in fig_c],
        {"max occlusion order (clusters); a pair counts 1": {"ours": [r[2] for r in fig_c],
                                                              "paper-reported on KINS": [r[3] for r in fig_c]},
         "max match number (instances overlapping one)": {"ours": [r[4] for r in fig_c],
                                                          "paper-reported on KINS": [r[5] for r in fig_c]}},
        f"Figure 4(c): fractions of each series, ours ({source_label}) beside the paper's",
        "value (ours / the paper's where they differ)", "fraction of the series", footnote=FIGURE4C_CAVEAT)
    written.append(out_dir / "figure4c.png")
    if consistency is not None:
        from asn.stats.consistency import write_consistency_outputs

        label = annotator_source_label or (
            f"{source_label}; synthetic annotators" if "synthetic" in source_label else source_label)
        written.extend(write_consistency_outputs(out_dir, consistency, label, command))
    if n_vis > 0:
        from asn.stats.visualize import render_instances

        split0 = splits[0]
        image_folder = None
        if raw_dir is not None:
            image_folder = Path(raw_dir) / ("training" if split0 == "train" else "testing") / "image_2"
        # the folder is replaced whole, so pictures of a previous run do not linger
        with atomic_dir(out_dir / "vis") as vis_tmp:
            for item in per_split[split0]["vis"]:
                name = Path(item["file_name"]).stem + ".png"
                render_instances(vis_tmp / name, image_folder / item["file_name"] if image_folder else None,
                                 item["height"], item["width"], item["amodal_segmentations"],
                                 item["inmodal_rles"], item["orders"])
                written.append(out_dir / "vis" / name)
    timings: dict[str, float] = {}
    for s in splits:
        for key, value in per_split[s]["timings"].items():
            timings[key] = timings.get(key, 0.0) + value
    if consistency is not None:
        timings["consistency"] = consistency_seconds
    timings["report"] = time.perf_counter() - t_report
    timings["compute_wall"] = t_report - t_start
    summary_path = write_json_atomic(out_dir / "summary.json", summary, indent=True)
    written = [p for p in written if p is not None] + [summary_path]
    return summary | {"timings": timings, "written": [str(p) for p in written]}
