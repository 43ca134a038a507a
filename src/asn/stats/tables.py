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
