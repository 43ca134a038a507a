"""Table 3: annotator consistency, the mean mask IoU between annotation sets of the same images.

Given k COCO files over the same images whose annotations share ids (one file per annotator),
entry (a, b) of the matrix is the mean over all annotation ids of IoU(mask_a, mask_b), masks
rasterised with pycocotools. The majority-vote set keeps, per annotation id, the pixels that
more than half of the k annotators marked (k = 2: both); its row holds each annotator's mean
IoU with it. Segmentations may be polygons or RLE dicts; an annotation with no valid polygon
is an empty mask (its IoU with an empty mask counts as 1, with a non-empty one as 0).

Two stages (the paper's layout, Table 3): in KINS three annotators labelled the same images
twice, 4 months apart (stage 1, stage 2). :func:`cross_stage_statistics` gives the paper's
matrix: rows = the stage-2 annotations of annotators 1..k and their majority vote, columns =
the same in stage 1, entry = mean mask IoU between the two sets; its diagonal compares an
annotator with themself 4 months earlier (:func:`diagonal_pattern` says whether it is higher
than the off-diagonal and whether the majority votes agree best, as in the paper).
:func:`two_stage_statistics` returns that matrix as ``cross_stage`` plus each stage's own
statistics; with a ``reference`` (the released annotation, e.g. the normalized
``train_amodal.json``) each annotator's and each majority vote's masks are also compared with
it (an extra table: how close every stage came to the final annotation).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from asn.errors import InputError
from asn.io import read_json
from asn.stats.clusters import polygons_to_rles


def _load_set(path: Path) -> tuple[dict, dict[int, dict], dict[int, dict]]:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise InputError(path, "expected a COCO file with 'images' and 'annotations' lists")
    images = {}
    for im in data["images"]:
        if not isinstance(im, dict) or not {"id", "width", "height"} <= im.keys():
            raise InputError(path, "image entry needs id, width and height", f"image {im.get('id') if isinstance(im, dict) else im}")
        images[im["id"]] = im
    annotations = {}
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or "id" not in ann or "image_id" not in ann or "segmentation" not in ann:
            raise InputError(path, "annotation needs id, image_id and segmentation", "annotation")
        if ann["id"] in annotations:
            raise InputError(path, "duplicate annotation id", f"annotation {ann['id']}")
        if ann["image_id"] not in images:
            raise InputError(path, f"image_id {ann['image_id']} is not in images", f"annotation {ann['id']}")
        annotations[ann["id"]] = ann
    return data, images, annotations


def load_annotation_sets(
    paths: Sequence[str | os.PathLike], images_limit: int | None = None
) -> tuple[list[Path], dict, dict[int, dict], list[dict[int, dict]]]:
    """Load k annotation sets and check they cover the same images and annotation ids.

    Returns:
        ``(paths, first_file_data, images, annotations_per_set)`` with images restricted to the
        first ``images_limit`` image ids (sorted) when given.
    Raises:
        InputError naming the file and the image or annotation id that does not match.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise InputError(paths[0] if paths else "consistency", "need at least two annotation files")
    loaded = [_load_set(p) for p in paths]
    first_data, first_images, first_annotations = loaded[0]
    for path, (_, images, annotations) in zip(paths[1:], loaded[1:]):
        if set(images) != set(first_images):
            extra = sorted(set(images) - set(first_images))
            missing = sorted(set(first_images) - set(images))
            if missing:
                raise InputError(path, f"image id {missing[0]} of {paths[0].name} is missing "
                                 f"({len(missing)} missing): the files cover different images", f"image {missing[0]}")
            raise InputError(path, f"image id {extra[0]} is not in {paths[0].name} "
                             f"({len(extra)} extra): the files cover different images", f"image {extra[0]}")
        missing = sorted(set(first_annotations) - set(annotations))
        if missing:
            raise InputError(path, f"annotation id {missing[0]} of {paths[0].name} is missing "
                             f"({len(missing)} missing)", f"annotation {missing[0]}")
        extra = sorted(set(annotations) - set(first_annotations))
        if extra:
            raise InputError(path, f"annotation id {extra[0]} is not in {paths[0].name} "
                             f"({len(extra)} extra)", f"annotation {extra[0]}")
        for ann_id, ann in annotations.items():
            if ann["image_id"] != first_annotations[ann_id]["image_id"]:
                raise InputError(path, f"image_id {ann['image_id']} differs from {paths[0].name} "
                                 f"({first_annotations[ann_id]['image_id']})", f"annotation {ann_id}")
    image_ids = sorted(first_images)
    if images_limit is not None:
        image_ids = image_ids[: max(images_limit, 0)]
    images = {i: first_images[i] for i in image_ids}
    return paths, first_data, images, [a for _, _, a in loaded]


def _segment_rles(segmentations: list[Any], height: int, width: int) -> list[dict]:
    """RLE per segmentation (polygons or RLE dict); an empty mask where there is nothing."""
    rles: list[dict | None] = [None] * len(segmentations)
    polygon_index = [i for i, s in enumerate(segmentations) if isinstance(s, list)]
    polygon_rles = polygons_to_rles([segmentations[i] for i in polygon_index], height, width)
    for i, rle in zip(polygon_index, polygon_rles):
        rles[i] = rle
    for i, s in enumerate(segmentations):
        if isinstance(s, dict):
            rles[i] = mask_utils.frPyObjects(s, height, width) if isinstance(s.get("counts"), list) else s
    empty = None
    for i, rle in enumerate(rles):
        if rle is None:
            if empty is None:
                empty = mask_utils.encode(np.zeros((height, width, 1), np.uint8, order="F"))[0]
            rles[i] = empty
    return rles  # type: ignore[return-value]


def _pair_iou(rles_a: list[dict], rles_b: list[dict]) -> np.ndarray:
    """IoU of aligned mask pairs; two empty masks agree (IoU 1)."""
    if not rles_a:
        return np.zeros(0)
    intersection = mask_utils.area([mask_utils.merge([a, b], intersect=True) for a, b in zip(rles_a, rles_b)])
    area_a = mask_utils.area(rles_a).astype(np.float64)
    area_b = mask_utils.area(rles_b).astype(np.float64)
    union = area_a + area_b - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 1.0)


def _majority_rles(rles: list[list[dict]]) -> list[dict]:
    """Per instance, the pixels marked by more than half of the k sets (``rles[set][instance]``)."""
    k = len(rles)
    # decode the instance masks of every set once per image
    votes = sum(mask_utils.decode(r).astype(np.uint16) for r in rles)
    return list(mask_utils.encode(np.asfortranarray((votes * 2 > k).astype(np.uint8))))


def _load_reference(path: str | os.PathLike, sets: list[dict[int, dict]], images: dict) -> dict[int, dict]:
    """The reference annotations of every annotation id of the sets (same image ids), else InputError."""
    path = Path(path)
    _, ref_images, ref_annotations = _load_set(path)
    wanted = sorted(ann_id for ann_id, ann in sets[0].items() if ann["image_id"] in images)
    for ann_id in wanted:
        ref = ref_annotations.get(ann_id)
        if ref is None:
            raise InputError(path, "annotation id of the annotator files is missing from the reference",
                             f"annotation {ann_id}")
        if ref["image_id"] != sets[0][ann_id]["image_id"]:
            raise InputError(path, f"image_id {ref['image_id']} differs from the annotator files "
                             f"({sets[0][ann_id]['image_id']})", f"annotation {ann_id}")
        size = ref_images[ref["image_id"]]
        expected = images[ref["image_id"]]
        if (int(size["height"]), int(size["width"])) != (int(expected["height"]), int(expected["width"])):
            raise InputError(path, "image size differs from the annotator files", f"image {ref['image_id']}")
    return {ann_id: ref_annotations[ann_id] for ann_id in wanted}


def consistency_statistics(
    paths: Sequence[str | os.PathLike], images_limit: int | None = None,
    reference: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Mean mask IoU matrix between annotation sets and the majority-vote set.

    ``reference``: a COCO file holding every annotation id of the sets (it may hold more): the
    result then also has ``vs_reference`` [k] (each set's mean IoU with it) and
    ``majority_vs_reference``.

    Returns:
        dict with ``names`` (file stems), ``matrix`` [k][k] mean IoU, ``vs_majority`` [k],
        ``n_images``, ``n_instances`` and ``majority`` (a COCO dict with RLE segmentations over
        the used images).
    """
    paths, first_data, images, sets = load_annotation_sets(paths, images_limit)
    reference_annotations = _load_reference(reference, sets, images) if reference is not None else None
    reference_sums = np.zeros(len(sets))
    majority_reference_sum = 0.0
    k = len(sets)
    by_image: dict[int, list[int]] = {}
    for ann_id, ann in sets[0].items():
        if ann["image_id"] in images:
            by_image.setdefault(ann["image_id"], []).append(ann_id)
    iou_sums = np.zeros((k, k))
    majority_sums = np.zeros(k)
    n_instances = 0
    majority_annotations = []
    for image_id in sorted(by_image):
        ann_ids = sorted(by_image[image_id])
        h, w = int(images[image_id]["height"]), int(images[image_id]["width"])
        rles = [_segment_rles([s[i]["segmentation"] for i in ann_ids], h, w) for s in sets]
        for a in range(k):
            for b in range(a + 1, k):
                total = float(_pair_iou(rles[a], rles[b]).sum())
                iou_sums[a, b] += total
                iou_sums[b, a] += total
        majority_rles = _majority_rles(rles)
        for a in range(k):
            majority_sums[a] += float(_pair_iou(rles[a], list(majority_rles)).sum())
        if reference_annotations is not None:
            reference_rles = _segment_rles([reference_annotations[i]["segmentation"] for i in ann_ids], h, w)
            for a in range(k):
                reference_sums[a] += float(_pair_iou(rles[a], reference_rles).sum())
            majority_reference_sum += float(_pair_iou(list(majority_rles), reference_rles).sum())
        for ann_id, rle in zip(ann_ids, majority_rles):
            source = sets[0][ann_id]
            counts = rle["counts"]
            majority_annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": source.get("category_id"),
                "iscrowd": 0, "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "segmentation": {"size": [h, w], "counts": counts.decode() if isinstance(counts, bytes) else counts},
            })
        n_instances += len(ann_ids)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = iou_sums / n_instances if n_instances else np.full((k, k), np.nan)
        vs_majority = majority_sums / n_instances if n_instances else np.full(k, np.nan)
    if n_instances:
        np.fill_diagonal(matrix, 1.0)
    majority = {
        "images": [images[i] for i in sorted(images)],
        "annotations": majority_annotations,
        "categories": first_data.get("categories", []),
    }
    result = {
        "names": [p.stem for p in paths],
        "files": [str(p) for p in paths],
        "matrix": matrix.tolist(),
        "vs_majority": vs_majority.tolist(),
        "n_images": len(images),
        "n_instances": n_instances,
        "majority": majority,
    }
    if reference_annotations is not None:
        result["reference"] = str(reference)
        result["vs_reference"] = (reference_sums / n_instances if n_instances else np.full(k, np.nan)).tolist()
        result["majority_vs_reference"] = majority_reference_sum / n_instances if n_instances else float("nan")
    return result


def mean_pairwise(matrix: Sequence[Sequence[float]]) -> float:
    """Mean of the off-diagonal entries of a k x k IoU matrix (NaN for k < 2)."""
    values = [v for a, row in enumerate(matrix) for b, v in enumerate(row) if a != b]
    return float(np.mean(values)) if values else float("nan")


def diagonal_pattern(matrix: Sequence[Sequence[float]]) -> dict[str, Any]:
    """The paper's Table 3 pattern in a stage-2 x stage-1 matrix whose last row and column are the
    majority votes: the mean of the annotator diagonal (the same annotator in both stages)
    against the mean of the annotator off-diagonal cells (two different annotators), and
    whether the majority-vote cell (last row, last column) is the highest entry."""
    values = np.asarray(matrix, dtype=np.float64)
    k = values.shape[0] - 1
    annotators = values[:k, :k]
    diagonal = float(np.mean(np.diag(annotators))) if k else float("nan")
    off = float(np.mean(annotators[~np.eye(k, dtype=bool)])) if k > 1 else float("nan")
    corner = float(values[k, k])
    others = np.delete(values.reshape(-1), values.size - 1)
    return {"diagonal_mean": diagonal, "off_diagonal_mean": off, "diagonal_higher": bool(diagonal > off),
            "majority_cell": corner, "majority_highest": bool(others.size and corner > float(others.max()))}


def describe_pattern(pattern: dict[str, Any]) -> str:
    """One line: ``diagonal mean X > off-diagonal mean Y: yes; majority-vote cell highest: no``."""
    return (f"diagonal mean {pattern['diagonal_mean']:.4f} > off-diagonal mean {pattern['off_diagonal_mean']:.4f}: "
            f"{'yes' if pattern['diagonal_higher'] else 'no'}; majority-vote cell "
            f"({pattern['majority_cell']:.4f}) highest: {'yes' if pattern['majority_highest'] else 'no'}")


def cross_stage_statistics(
    stage1_paths: Sequence[str | os.PathLike], stage2_paths: Sequence[str | os.PathLike],
    images_limit: int | None = None,
) -> dict[str, Any]:
    """The paper's Table 3 matrix: entry (i, j) = mean over annotation ids of the mask IoU between
    row set i (stage-2 annotator i, the last row their majority vote) and column set j (stage-1
    annotator j, the last column their majority vote).

    Returns ``rows`` / ``columns`` (labels), ``matrix`` [(k+1) x (k+1)], ``pattern``
    (:func:`diagonal_pattern`), ``n_images``, ``n_instances``.
    """
    if len(stage1_paths) != len(stage2_paths):
        raise InputError(stage2_paths[0] if stage2_paths else "stage 2",
                         f"stage 2 has {len(stage2_paths)} annotator files, stage 1 has {len(stage1_paths)}")
    paths, _, images, sets = load_annotation_sets([*stage1_paths, *stage2_paths], images_limit)
    k = len(stage1_paths)
    by_image: dict[int, list[int]] = {}
    for ann_id, ann in sets[0].items():
        if ann["image_id"] in images:
            by_image.setdefault(ann["image_id"], []).append(ann_id)
    sums = np.zeros((k + 1, k + 1))
    n_instances = 0
    for image_id in sorted(by_image):
        ann_ids = sorted(by_image[image_id])
        h, w = int(images[image_id]["height"]), int(images[image_id]["width"])
        rles = [_segment_rles([s[i]["segmentation"] for i in ann_ids], h, w) for s in sets]
        columns = [*rles[:k], _majority_rles(rles[:k])]
        rows = [*rles[k:], _majority_rles(rles[k:])]
        for i, row in enumerate(rows):
            for j, column in enumerate(columns):
                sums[i, j] += float(_pair_iou(row, column).sum())
        n_instances += len(ann_ids)
    matrix = sums / n_instances if n_instances else np.full((k + 1, k + 1), np.nan)
    return {"rows": [*[f"{p.stem}, stage 2" for p in paths[k:]], "majority_vote, stage 2"],
            "columns": [*[f"{p.stem}, stage 1" for p in paths[:k]], "majority_vote, stage 1"],
            "matrix": matrix.tolist(), "pattern": diagonal_pattern(matrix) if n_instances else None,
            "n_images": len(images), "n_instances": n_instances}


def two_stage_statistics(
    stage1_paths: Sequence[str | os.PathLike], stage2_paths: Sequence[str | os.PathLike],
    reference: str | os.PathLike | None = None, images_limit: int | None = None,
) -> dict[str, Any]:
    """Consistency of the same annotators in two annotation stages (stage 1, stage 2).

    The stage-2 files must be the stage-1 annotators' (same count, same images and annotation
    ids). Returns stage 1's single-stage result (so readers of one stage keep working) with
    ``layout: two_stage``, ``cross_stage`` (:func:`cross_stage_statistics`, the paper's matrix)
    and ``stages``: the two single-stage results (without ``majority``). The majority vote
    written beside the table is stage 2's.
    """
    if len(stage1_paths) != len(stage2_paths):
        raise InputError(stage2_paths[0] if stage2_paths else "stage 2",
                         f"stage 2 has {len(stage2_paths)} annotator files, stage 1 has {len(stage1_paths)}")
    # one check over both stages: same images and annotation ids everywhere
    load_annotation_sets([*stage1_paths, *stage2_paths], images_limit)
    first = consistency_statistics(stage1_paths, images_limit, reference)
    second = consistency_statistics(stage2_paths, images_limit, reference)
    result = {key: value for key, value in first.items() if key != "majority"}
    result.update(layout="two_stage", majority=second["majority"],
                  cross_stage=cross_stage_statistics(stage1_paths, stage2_paths, images_limit),
                  stages=[{key: value for key, value in r.items() if key != "majority"} | {"stage": n}
                          for n, r in ((1, first), (2, second))])
    return result


def consistency_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Table 3 rows: one row per annotator (mean IoU with every other set and the majority)."""
    names = result["names"]
    columns = ["annotator", *names, "majority_vote"]
    rows = [[name, *result["matrix"][a], result["vs_majority"][a]] for a, name in enumerate(names)]
    return columns, rows


def two_stage_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The extra two-stage table (beside the paper's matrix): rows = each annotator, the majority
    vote, the mean pairwise IoU; columns = stage 1, stage 2. With a reference an annotator /
    majority entry is the mean IoU
    with the reference; without one an annotator entry is the mean IoU with its stage's
    majority vote and the majority row is NaN."""
    stages = result["stages"]
    with_reference = all("vs_reference" in s for s in stages)
    rows = []
    for a, name in enumerate(result["names"]):
        rows.append([name, *[s["vs_reference"][a] if with_reference else s["vs_majority"][a] for s in stages]])
    rows.append(["majority_vote", *[s["majority_vs_reference"] if with_reference else float("nan") for s in stages]])
    rows.append(["mean pairwise (between annotators)", *[mean_pairwise(s["matrix"]) for s in stages]])
    return ["annotation", *[f"stage {s['stage']}" for s in stages]], rows


def cross_stage_rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """table3.csv of the two-stage layout, one line per cell: the paper's matrix (``table``
    ``stage2_x_stage1``, ours beside the paper's cell) then the extra table
    (``vs_reference`` / ``vs_majority``, no paper value)."""
    from asn import paper

    columns = ["table", "row", "column", "mean_iou", "paper_row", "paper_column", "paper_mean_iou_kins"]
    cross = result["cross_stage"]
    rows: list[list[Any]] = []
    paper_rows, paper_columns = paper.TABLE3["rows_stage2"], paper.TABLE3["columns_stage1"]
    same_shape = len(cross["rows"]) == len(paper_rows)
    for i, row in enumerate(cross["rows"]):
        for j, column in enumerate(cross["columns"]):
            rows.append(["stage2_x_stage1", row, column, cross["matrix"][i][j],
                         *((paper_rows[i], paper_columns[j], paper.TABLE3["matrix"][i][j]) if same_shape
                           else ("", "", float("nan")))])
    extra_columns, extra_rows = two_stage_table(result)
    kind = "vs_reference" if all("vs_reference" in st for st in result["stages"]) else "vs_majority"
    for line in extra_rows:
        for column, value in zip(extra_columns[1:], line[1:]):
            rows.append([kind, line[0], column, value, "", "", float("nan")])
    return columns, rows


def write_consistency_outputs(
    out_dir: str | os.PathLike, result: dict[str, Any], source: str, command: str
) -> list[Path]:
    """table3.md / .csv / .json and majority_vote.json under ``out_dir`` (atomic writes)."""
    from asn.io import write_json_atomic, write_text_atomic
    from asn.stats.tables import csv_table, markdown_table

    out_dir = Path(out_dir)
    if result.get("layout") == "two_stage":
        text = _two_stage_markdown(result, source, command)
        columns, rows = cross_stage_rows(result)
    else:
        columns, rows = consistency_table(result)
        notes = [
            "Entry (row, column) = mean over annotation ids of the mask IoU between the two sets.",
            "majority_vote = per annotation id, pixels marked by more than half of the sets.",
            f"{result['n_images']} images, {result['n_instances']} instances per set.",
            "The paper's Table 3 compares two annotation stages (see `asn consistency --stage2`); a one-stage "
            "matrix has no paper counterpart.",
        ]
        text = markdown_table("Table 3: annotator consistency (mean mask IoU)", columns, rows, source, command, notes)
    written = [
        write_text_atomic(out_dir / "table3.md", text),
        write_text_atomic(out_dir / "table3.csv", csv_table(columns, rows)),
        write_json_atomic(out_dir / "table3.json", {k: v for k, v in result.items() if k != "majority"} | {"source": source}, indent=True),
        write_json_atomic(out_dir / "majority_vote.json", result["majority"]),
    ]
    return written


def _matrix_markdown(rows: Sequence[str], columns: Sequence[str], matrix, corner: str) -> list[str]:
    from asn.stats.tables import format_cell

    lines = [f"| {corner} | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    lines += [f"| {row} | " + " | ".join(format_cell(float(v)) for v in values) + " |"
              for row, values in zip(rows, matrix)]
    return lines


def _two_stage_markdown(result: dict[str, Any], source: str, command: str) -> str:
    """table3.md for two stages: the paper's matrix (ours, then the paper's, and whether each shows
    the paper's pattern), the extra table against the reference, then each stage's pairwise matrix."""
    from asn import paper
    from asn.stats.tables import format_cell

    cross = result["cross_stage"]
    ours_pattern = cross.get("pattern")
    paper_pattern = diagonal_pattern(paper.TABLE3["matrix"])
    lines = ["# Table 3: annotation consistency across two annotation stages (mean mask IoU)", "",
             f"Data source: {source}  ", f"Produced by: `{command}`", "",
             "Rows: the stage-2 annotations of each annotator and their majority vote; columns: the same in "
             "stage 1; entry = mean over annotation ids of the mask IoU between the two sets (the paper's layout). "
             "The diagonal compares an annotator with themself in the other stage.", "",
             "## Ours", ""]
    lines += _matrix_markdown(cross["rows"], cross["columns"], cross["matrix"], "stage 2 (rows) / stage 1 (columns)")
    lines += ["", f"- {cross['n_images']} images, {cross['n_instances']} instances per annotator and stage.",
              "- Our pattern (computed from the matrix above): "
              + (describe_pattern(ours_pattern) if ours_pattern else "n/a (no instances)") + ".", "",
              f"## Paper ({paper.LABEL_KINS}; {paper.cite('Table 3')}, {paper.TABLE3['images']} images)", ""]
    lines += _matrix_markdown(paper.TABLE3["rows_stage2"], paper.TABLE3["columns_stage1"], paper.TABLE3["matrix"],
                              "stage 2 (rows) / stage 1 (columns)")
    lines += ["", "- Paper's pattern (computed the same way): " + describe_pattern(paper_pattern) + ".",
              "- annX1 / annX2 = annotator X in stage 1 / stage 2; mv = majority vote of the three annotators; the "
              "two stages are 4 months apart.", "- Context, not a result of this project.", ""]
    columns, rows = two_stage_table(result)
    with_reference = all("vs_reference" in s for s in result["stages"])
    against = (f"the released annotation (`{result['stages'][0]['reference']}`, the final ground truth)"
               if with_reference else "the majority vote of the same stage (no reference given)")
    lines += ["## Extra: each stage against the released annotation" if with_reference
              else "## Extra: each stage against its majority vote", "",
              "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(v) for v in row) + " |" for row in rows]
    lines += ["", f"- annotator / majority_vote rows: mean over annotation ids of the mask IoU with {against}.",
              "- majority_vote = per annotation id, pixels marked by more than half of the annotators of that stage.",
              "- mean pairwise = mean IoU between two annotators of the same stage (their consistency).",
              "- No paper counterpart (the paper compares the stages with each other, above).", ""]
    text = "\n".join(lines)
    for stage in result["stages"]:
        stage_columns, stage_rows = consistency_table(stage)
        text += (f"\n## Stage {stage['stage']}: IoU between annotators\n\n| " + " | ".join(stage_columns)
                 + " |\n|" + "---|" * len(stage_columns) + "\n")
        text += "".join("| " + " | ".join(format_cell(v) for v in row) + " |\n" for row in stage_rows)
    return text
