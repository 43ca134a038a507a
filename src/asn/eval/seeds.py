"""Seed statistics and the results tables (paper Table 4 and the ablations): mean and variance
over seeds, the paper's numbers beside ours, and the honest ASN-vs-baseline comparison.

Variance: the **sample** variance over seeds (``ddof=1``, divisor n - 1), the unbiased estimate
for a handful of seeds; the paper says only "the variance is 0.3" without defining it. With a
single seed the variance is undefined and shown as ``n/a``.

"Beyond the seed spread" (the comparison line): the seeds of the two variants do not overlap
(every seed of one is above every seed of the other); Welch's t-test p-value is given beside it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from asn import paper as _paper
from asn.errors import InputError

METRICS = (("det_ap", "Det"), ("amodal_ap", "Amodal Seg"), ("inmodal_ap", "Inmodal Seg"))
# The scene-order columns of Table 4 (asn.eval.order, no paper counterpart): each accuracy beside
# its coverage, so a high accuracy on a few matched pairs reads as what it is.
ORDER_METRICS = (("order_pair_accuracy", "Order acc."), ("order_pair_coverage", "Pairs matched"),
                 ("order_cluster_accuracy", "Cluster order"), ("order_cluster_coverage", "Clusters matched"))
ORDER_NOTE = ("Order columns (ours, percent, no paper counterpart; asn.eval.order, each metrics.json's "
              "order_definition): Order acc. = share of the overlapping ground-truth pairs whose two instances "
              "are both matched (amodal mask IoU >= 0.5, one-to-one) where the predicted front/back relation is "
              "KINS' (ico_id); Pairs matched = share of those pairs matched at all (the coverage); Cluster order "
              "= share of fully matched KINS clusters whose every pair is right; Clusters matched = share of "
              "clusters fully matched. n/a: no seed has a value (no matched pair, or metrics from before the "
              "order scores); (k/n): only k of the n seeds have one.")

# Paper Table 4 (asn.paper.TABLE4, COCO AP in percent on KINS, R50-FPN): our variant -> (the
# paper's row name, (Det, Amodal Seg, Inmodal Seg)). Shown beside our numbers, never mixed with them.
PAPER_TABLE4: dict[str, tuple[str, tuple[float, float, float]]] = {
    variant: (name, _paper.TABLE4[name]) for variant, name in _paper.TABLE4_VARIANTS.items()}
# The paper's Table 4 rows no variant of ours implements (MNC, FCIS): (name, values, note).
PAPER_TABLE4_ONLY: tuple[tuple[str, tuple[float, ...], str], ...] = tuple(
    (name, values, "not implemented here") for name, values in _paper.TABLE4.items()
    if name not in _paper.TABLE4_VARIANTS.values())
PAPER_TABLE4_SOURCE = _paper.cite("Table 4") + ", R50-FPN"

# The honest comparisons of Table 4: (ours, baseline)
COMPARISONS = (("mrcnn_asn", "mrcnn"), ("panet_asn", "panet"))


def seed_stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample variance (ddof=1; None for one seed), sample std, min, max and n of ``values``."""
    array = np.asarray(list(values), dtype=float)
    if array.size == 0:
        raise ValueError("no values")
    n = int(array.size)
    variance = float(array.var(ddof=1)) if n > 1 else None
    return {"mean": float(array.mean()), "variance": variance,
            "std": math.sqrt(variance) if variance is not None else None,
            "min": float(array.min()), "max": float(array.max()), "n": n, "values": [float(v) for v in array]}


def compare(ours: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """Difference of means, whether the seed ranges separate, and Welch's t-test p-value."""
    a, b = np.asarray(ours, dtype=float), np.asarray(baseline, dtype=float)
    result: dict[str, Any] = {"difference": float(a.mean() - b.mean()),
                              "separated": bool(a.min() > b.max() or a.max() < b.min()),
                              "welch_p": None}
    if a.size > 1 and b.size > 1 and (a.var(ddof=1) > 0 or b.var(ddof=1) > 0):
        from scipy.stats import ttest_ind

        result["welch_p"] = float(ttest_ind(a, b, equal_var=False).pvalue)
    return result


def collect(eval_dir: str | Path, variants: Iterable[str], seeds: Iterable[int]) -> dict[str, list[dict]]:
    """``{variant: [metrics.json of each seed]}`` from ``<eval_dir>/<variant>-<seed>/metrics.json``.

    A missing or unreadable file raises :class:`InputError` naming it (a table is never built
    from part of its seeds without saying so).
    """
    import orjson

    out: dict[str, list[dict]] = {}
    for variant in variants:
        rows = []
        for seed in seeds:
            path = Path(eval_dir) / f"{variant}-{seed}" / "metrics.json"
            try:
                metrics = orjson.loads(path.read_bytes())
            except FileNotFoundError:
                raise InputError(path, f"no metrics for {variant} seed {seed}; run its evaluate stage") from None
            except orjson.JSONDecodeError as error:
                raise InputError(path, f"not valid JSON: {error}") from None
            missing = [key for key, _ in METRICS if not isinstance(metrics.get(key), (int, float))]
            if missing:
                raise InputError(path, f"lacks {missing}")
            rows.append({**metrics, "_path": str(path), "_seed": int(seed)})
        out[variant] = rows
    return out


def _paper_values(values: Sequence[Any] | Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """``{metric: value or None}`` from a tuple aligned with ``keys`` or a mapping."""
    if isinstance(values, Mapping):
        return {key: values.get(key) for key in keys}
    return {key: (None if value is None else float(value)) for key, value in zip(keys, values)}


def build_table(per_variant: Mapping[str, list[dict]], paper: Mapping[str, tuple] = PAPER_TABLE4,
                comparisons: Sequence[tuple[str, str]] = COMPARISONS, *,
                paper_only: Sequence[tuple] = PAPER_TABLE4_ONLY, paper_source: str = PAPER_TABLE4_SOURCE,
                paper_label: str = _paper.LABEL_KINS,
                order_metrics: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Rows of mean/variance per variant and metric, the paper's numbers, and the comparisons.

    ``order_metrics``: extra ``(key, column name)`` columns of ours only (Table 4 passes
    ORDER_METRICS): per row ``row[key]`` = seed_stats of the seeds with a number (None when no
    seed has one) and ``row[key + "_per_seed"]`` the raw values.

    ``paper``: ``{variant: (paper row name, values aligned with METRICS, [note])}``; a value may
    be None (the paper prints none). ``paper_only``: ``(name, values, note)`` of paper rows no
    variant of ours stands for (kept in ``table["paper_only"]``, rendered as paper-only rows).
    """
    keys = [k for k, _ in METRICS]
    rows = []
    for variant, runs in per_variant.items():
        row: dict[str, Any] = {"variant": variant, "name": paper.get(variant, (variant,))[0], "seeds": len(runs),
                               "seed_list": [r["_seed"] for r in runs],
                               "mlflow_run_keys": [r.get("mlflow", {}).get("run_key") for r in runs]}
        for key, _ in METRICS:
            row[key] = seed_stats([r[key] for r in runs])
        for key, _ in order_metrics:
            values = [r.get(key) for r in runs]
            numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            row[key] = seed_stats(numbers) if numbers else None
            row[key + "_per_seed"] = [None if v is None else float(v) for v in values]
        if variant in paper:
            entry = paper[variant]
            row["paper_name"] = entry[0]
            row["paper"] = _paper_values(entry[1], keys)
            if len(entry) > 2 and entry[2]:
                row["paper_note"] = entry[2]
        rows.append(row)
    by_variant = {row["variant"]: row for row in rows}
    results = []
    for ours, baseline in comparisons:
        if ours in by_variant and baseline in by_variant:
            results.append({"ours": ours, "baseline": baseline, **{
                key: compare(by_variant[ours][key]["values"], by_variant[baseline][key]["values"])
                for key, _ in METRICS}})
    only = [{"name": item[0], "paper": _paper_values(item[1], keys), "note": item[2] if len(item) > 2 else ""}
            for item in paper_only]
    has_paper = bool(only) or any("paper" in row for row in rows)
    return {"rows": rows, "comparisons": results, "variance": "sample (ddof=1, divisor n-1)",
            "paper_only": only, "paper_source": paper_source if has_paper else None,
            "paper_label": paper_label, "paper_notes": [],
            **({"order_metrics": [list(m) for m in order_metrics]} if order_metrics else {})}


def _paper_cell(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def paper_footer(table: Mapping[str, Any]) -> str:
    """The line under a table that says what its paper columns are."""
    if not table.get("paper_source"):
        return "Paper columns: none — this table has no counterpart in the paper."
    return (f"Paper columns: {table.get('paper_label', _paper.LABEL_KINS)} ({table['paper_source']}); they are "
            "context, not a result of this run.")


def _cell(stats: Mapping[str, Any]) -> str:
    if stats["variance"] is None:
        return f"{stats['mean']:.1f} ± n/a"
    return f"{stats['mean']:.1f} ± {stats['variance']:.2f}"


def _optional_cell(stats: Mapping[str, Any] | None, seeds: int) -> str:
    if not stats:
        return "n/a"
    return _cell(stats) + (f" ({stats['n']}/{seeds})" if stats["n"] < seeds else "")


def _verdict(result: Mapping[str, Any]) -> str:
    sign = "higher" if result["difference"] > 0 else "lower"
    beyond = "beyond the seed spread (no overlap)" if result["separated"] else "within the seed spread (seeds overlap)"
    p = f", Welch p = {result['welch_p']:.3f}" if result["welch_p"] is not None else ""
    return f"{abs(result['difference']):.2f} AP {sign}, {beyond}{p}"


def render_markdown(table: Mapping[str, Any], *, title: str, header: Mapping[str, str], command: str) -> str:
    """The table as markdown: provenance header, our mean ± variance, the paper in a side column."""
    lines = [f"# {title}", ""]
    for key, value in header.items():
        lines.append(f"- **{key}**: {value}")
    lines += [f"- **Variance**: {table['variance']} over the seeds of each row; cells are mean ± variance",
              f"- **Regenerate**: `{command}`", ""]
    names = [name for _, name in METRICS]
    label = table.get("paper_label", _paper.LABEL_KINS)
    extra = [tuple(m) for m in table.get("order_metrics", [])]
    extra_head = "".join(f" {n} (ours) |" for _, n in extra)
    lines.append("| Variant | Seeds | " + " | ".join(f"{n} (ours)" for n in names) + f" | Paper row ({label}) | "
                 + " | ".join(f"{n} (paper)" for n in names) + " |" + extra_head)
    lines.append("|" + "---|" * (3 + 2 * len(names) + len(extra)))
    for row in table["rows"]:
        ours = [_cell(row[key]) for key, _ in METRICS]
        if "paper" in row:
            name = row.get("paper_name", "")
            if row.get("paper_note"):
                name += f" ({row['paper_note']})"
            paper_cells = [_paper_cell(row["paper"].get(key)) for key, _ in METRICS]
        else:
            name = "no paper row" + (f" ({row['paper_note']})" if row.get("paper_note") else "")
            paper_cells = ["–" for _ in METRICS]
        lines.append(f"| {row['name']} (`{row['variant']}`) | {row['seeds']} | " + " | ".join(ours) + f" | {name} | "
                     + " | ".join(paper_cells) + " |"
                     + "".join(f" {_optional_cell(row.get(key), row['seeds'])} |" for key, _ in extra))
    for item in table.get("paper_only", []):
        lines.append(f"| paper only: {item['name']}" + (f" — {item['note']}" if item.get("note") else "")
                     + " | – | " + " | ".join("–" for _ in METRICS) + f" | {item['name']} | "
                     + " | ".join(_paper_cell(item["paper"].get(key)) for key, _ in METRICS) + " |"
                     + " – |" * len(extra))
    lines += ["", paper_footer(table)]
    if extra:
        lines += ["", ORDER_NOTE]
    lines += [f"- {note}" for note in table.get("paper_notes", [])]
    lines.append("")
    if table["comparisons"]:
        lines += ["## Does ASN beat its baseline here?", ""]
        for result in table["comparisons"]:
            for key, name in METRICS:
                lines.append(f"- `{result['ours']}` vs `{result['baseline']}`, {name}: {_verdict(result[key])}")
        lines.append("")
    lines += ["## Per-seed values and MLflow runs", "",
              "Each (variant, seed) is one MLflow run tagged `asn.run_key`; search "
              "`tags.\"asn.run_key\" = '<key>'` in the experiment.", "",
              "| " + " | ".join(["Variant", "Seed", *names, *(n for _, n in extra), "MLflow run key"]) + " |",
              "|" + "---|" * (3 + len(names) + len(extra))]
    for row in table["rows"]:
        for index, seed in enumerate(row["seed_list"]):
            values = " | ".join(f"{row[key]['values'][index]:.2f}" for key, _ in METRICS)
            for key, _ in extra:
                value = row.get(key + "_per_seed", [None] * (index + 1))[index]
                values += " | " + ("n/a" if value is None else f"{value:.2f}")
            lines.append(f"| `{row['variant']}` | {seed} | {values} | `{row['mlflow_run_keys'][index]}` |")
    return "\n".join(lines) + "\n"


def render_csv(table: Mapping[str, Any]) -> str:
    """One line per variant (our mean / variance / min / max and the paper's value per metric),
    then one per paper-only row (our cells empty); ``paper_row`` names the paper's row."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    head = ["variant", "name", "seeds"]
    for key, _ in METRICS:
        head += [f"{key}_mean", f"{key}_variance", f"{key}_min", f"{key}_max", f"{key}_paper_kins"]
    head += ["paper_row", "paper_note"]
    extra = [tuple(m) for m in table.get("order_metrics", [])]
    for key, _ in extra:
        head += [f"{key}_mean", f"{key}_variance", f"{key}_n"]
    writer.writerow(head)
    for row in table["rows"]:
        line = [row["variant"], row["name"], row["seeds"]]
        for key, _ in METRICS:
            stats = row[key]
            value = row.get("paper", {}).get(key)
            line += [f"{stats['mean']:.4f}", "" if stats["variance"] is None else f"{stats['variance']:.4f}",
                     f"{stats['min']:.4f}", f"{stats['max']:.4f}", "" if value is None else f"{value:.1f}"]
        line += [row.get("paper_name", "") if "paper" in row else "", row.get("paper_note", "")]
        for key, _ in extra:
            stats = row.get(key)
            line += (["", "", "0"] if not stats else [
                f"{stats['mean']:.4f}", "" if stats["variance"] is None else f"{stats['variance']:.4f}", str(stats["n"])])
        writer.writerow(line)
    for item in table.get("paper_only", []):
        line = ["", item["name"], 0]
        for key, _ in METRICS:
            value = item["paper"].get(key)
            line += ["", "", "", "", "" if value is None else f"{value:.1f}"]
        writer.writerow(line + [item["name"], item.get("note", "")] + ["", "", "0"] * len(extra))
    return buffer.getvalue()


def plot(table: Mapping[str, Any], path: str | Path, *, title: str) -> None:
    """Per-variant AP: one panel per metric, each seed a dot, the mean a bar with ±1 sample std,
    the paper's number a hollow diamond (context only; paper-only rows get a diamond alone)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from asn.io import write_bytes_atomic

    rows = table["rows"]
    only = list(table.get("paper_only", []))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.8), sharey=False)
    x = np.arange(len(rows))
    label = table.get("paper_label", _paper.LABEL_KINS)
    for ax, (key, name) in zip(axes, METRICS):
        means = [row[key]["mean"] for row in rows]
        stds = [row[key]["std"] or 0.0 for row in rows]
        ax.bar(x, means, yerr=stds, color="#9ecae1", edgecolor="#3182bd", capsize=4, label="ours: mean ± std")
        marked = False
        for i, row in enumerate(rows):
            values = row[key]["values"]
            jitter = np.linspace(-0.18, 0.18, len(values)) if len(values) > 1 else [0.0]
            ax.scatter(i + np.asarray(jitter), values, s=12, color="#08519c", zorder=3,
                       label="ours: one seed" if i == 0 else None)
            value = row.get("paper", {}).get(key)
            if value is not None:
                ax.scatter([i], [value], marker="D", facecolors="none", edgecolors="#d95f02",
                           zorder=4, label=None if marked else label)
                marked = True
        for j, item in enumerate(only):
            value = item["paper"].get(key)
            if value is not None:
                ax.scatter([len(rows) + j], [value], marker="D", facecolors="none", edgecolors="#d95f02",
                           zorder=4, label=None if marked else label)
                marked = True
        ax.set_xticks(np.arange(len(rows) + len(only)),
                      [row["variant"] for row in rows] + [f"{item['name']} (paper only)" for item in only],
                      rotation=30, ha="right")
        ax.set_title(f"{name} AP")
        ax.set_ylabel("AP (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    # fixed metadata: the same table gives the same bytes
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
