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

from asn.errors import InputError

METRICS = (("det_ap", "Det"), ("amodal_ap", "Amodal Seg"), ("inmodal_ap", "Inmodal Seg"))

# Paper Table 4 (Qi et al., CVPR 2019), COCO AP in percent on KINS, R50-FPN, transcribed from
# the paper: (Det, Amodal Seg, Inmodal Seg). Shown beside our numbers, never mixed with them.
PAPER_TABLE4: dict[str, tuple[str, tuple[float, float, float]]] = {
    "orcnn": ("ORCNN", (30.9, 29.0, 26.4)),
    "mrcnn": ("Mask R-CNN", (30.9, 29.3, 26.6)),
    "mrcnn_asn": ("Mask R-CNN + ASN", (32.7, 31.1, 28.7)),
    "panet": ("PANet", (32.3, 30.4, 27.6)),
    "panet_asn": ("PANet + ASN", (33.4, 32.2, 29.7)),
}

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


def build_table(per_variant: Mapping[str, list[dict]], paper: Mapping[str, tuple] = PAPER_TABLE4,
                comparisons: Sequence[tuple[str, str]] = COMPARISONS) -> dict[str, Any]:
    """Rows of mean/variance per variant and metric, the paper's numbers, and the comparisons."""
    rows = []
    for variant, runs in per_variant.items():
        row: dict[str, Any] = {"variant": variant, "name": paper.get(variant, (variant,))[0], "seeds": len(runs),
                               "seed_list": [r["_seed"] for r in runs],
                               "mlflow_run_keys": [r.get("mlflow", {}).get("run_key") for r in runs]}
        for key, _ in METRICS:
            row[key] = seed_stats([r[key] for r in runs])
        if variant in paper:
            row["paper"] = dict(zip([k for k, _ in METRICS], paper[variant][1]))
        rows.append(row)
    by_variant = {row["variant"]: row for row in rows}
    results = []
    for ours, baseline in comparisons:
        if ours in by_variant and baseline in by_variant:
            results.append({"ours": ours, "baseline": baseline, **{
                key: compare(by_variant[ours][key]["values"], by_variant[baseline][key]["values"])
                for key, _ in METRICS}})
    return {"rows": rows, "comparisons": results, "variance": "sample (ddof=1, divisor n-1)"}


def _cell(stats: Mapping[str, Any]) -> str:
    if stats["variance"] is None:
        return f"{stats['mean']:.1f} ± n/a"
    return f"{stats['mean']:.1f} ± {stats['variance']:.2f}"


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
    lines.append("| Variant | Seeds | " + " | ".join(f"{n} (ours)" for n in names) + " | "
                 + " | ".join(f"{n} (paper, KINS)" for n in names) + " |")
    lines.append("|" + "---|" * (2 + 2 * len(names)))
    for row in table["rows"]:
        ours = [_cell(row[key]) for key, _ in METRICS]
        paper = [f"{row['paper'][key]:.1f}" if "paper" in row else "–" for key, _ in METRICS]
        lines.append(f"| {row['name']} (`{row['variant']}`) | {row['seeds']} | " + " | ".join(ours) + " | "
                     + " | ".join(paper) + " |")
    lines += ["", "Paper columns: paper-reported numbers on KINS (Qi et al., CVPR 2019, Table 4, R50-FPN); "
              "they are context, not a result of this run.", ""]
    if table["comparisons"]:
        lines += ["## Does ASN beat its baseline here?", ""]
        for result in table["comparisons"]:
            for key, name in METRICS:
                lines.append(f"- `{result['ours']}` vs `{result['baseline']}`, {name}: {_verdict(result[key])}")
        lines.append("")
    lines += ["## Per-seed values and MLflow runs", "",
              "Each (variant, seed) is one MLflow run tagged `asn.run_key`; search "
              "`tags.\"asn.run_key\" = '<key>'` in the experiment.", "",
              "| Variant | Seed | " + " | ".join(names) + " | MLflow run key |", "|" + "---|" * (3 + len(names))]
    for row in table["rows"]:
        for index, seed in enumerate(row["seed_list"]):
            values = " | ".join(f"{row[key]['values'][index]:.2f}" for key, _ in METRICS)
            lines.append(f"| `{row['variant']}` | {seed} | {values} | `{row['mlflow_run_keys'][index]}` |")
    return "\n".join(lines) + "\n"


def render_csv(table: Mapping[str, Any]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    head = ["variant", "name", "seeds"]
    for key, _ in METRICS:
        head += [f"{key}_mean", f"{key}_variance", f"{key}_min", f"{key}_max", f"{key}_paper_kins"]
    writer.writerow(head)
    for row in table["rows"]:
        line = [row["variant"], row["name"], row["seeds"]]
        for key, _ in METRICS:
            stats = row[key]
            line += [f"{stats['mean']:.4f}", "" if stats["variance"] is None else f"{stats['variance']:.4f}",
                     f"{stats['min']:.4f}", f"{stats['max']:.4f}",
                     f"{row['paper'][key]:.1f}" if "paper" in row else ""]
        writer.writerow(line)
    return buffer.getvalue()


def plot(table: Mapping[str, Any], path: str | Path, *, title: str) -> None:
    """Per-variant AP: one panel per metric, each seed a dot, the mean a bar with ±1 sample std,
    the paper's KINS number a hollow diamond (context only)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from asn.io import write_bytes_atomic

    rows = table["rows"]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.8), sharey=False)
    x = np.arange(len(rows))
    for ax, (key, name) in zip(axes, METRICS):
        means = [row[key]["mean"] for row in rows]
        stds = [row[key]["std"] or 0.0 for row in rows]
        ax.bar(x, means, yerr=stds, color="#9ecae1", edgecolor="#3182bd", capsize=4, label="ours: mean ± std")
        for i, row in enumerate(rows):
            values = row[key]["values"]
            jitter = np.linspace(-0.18, 0.18, len(values)) if len(values) > 1 else [0.0]
            ax.scatter(i + np.asarray(jitter), values, s=12, color="#08519c", zorder=3,
                       label="ours: one seed" if i == 0 else None)
            if "paper" in row:
                ax.scatter([i], [row["paper"][key]], marker="D", facecolors="none", edgecolors="#d95f02",
                           zorder=4, label="paper (KINS)" if i == 0 else None)
        ax.set_xticks(x, [row["variant"] for row in rows], rotation=30, ha="right")
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
