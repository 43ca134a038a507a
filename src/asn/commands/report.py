"""`asn report`: reports/README.md, the index of every table (1-8) and figure with its provenance.

Each entry names the file, its data source, profile, seeds, git commit, the MLflow experiment to
browse and the command that regenerates it, read from the files the stages and sweeps wrote
(nothing is recomputed here). Tables 1-3, section 3.2's statistics and Figure 4(c) get the
paper's values (:mod:`asn.paper`, labelled paper-reported on KINS) beside ours; a table that has
not been generated yet is listed with the command that makes it, never left out.

Tables 5-7 come from Prefect sweeps, which DVC does not track: the DVC stage `report` reads them
when they exist at the time it runs; after a sweep, `asn report` refreshes the index. The index
lists every sweep with the command that regenerates it and its last wall time, and ends with the
paper's claims tested one by one on our tables (:mod:`asn.claims`); Figure 5 (bench/figure5.py,
reports/figures/figure5.json) is read when present.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from pathlib import Path
from typing import Any, Mapping, Optional

from asn.errors import InputError

HELP = """Write reports/README.md: an index of Tables 1-8 and the figures, each with its data
source, profile, seeds, git commit, the command that regenerates it and the MLflow experiment
to browse; the statistics tables (1-3), section 3.2's statistics and Figure 4(c) with the
paper's values beside ours; the sweeps with their commands and wall times; and the paper's
claims, each tested on our tables (effect, seed spread, Welch p, verdict). Reads what the stats /
aggregate / sceneflow stages, the asn-ablation sweeps and bench/figure5.py wrote (the latter in
reports/figures/ beside the index); recomputes nothing."""

STATS_COMMAND = "dvc repro stats"
SWEEP_TABLES = ("table5", "table6", "table7", "inference_order")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stats", type=Path, required=True, help="folder written by `asn stats` (summary.json, table1-3)")
    parser.add_argument("--tables", type=Path, required=True, help="folder of table4.json and the sweeps' tableN.json")
    parser.add_argument("--out", type=Path, required=True, help="the index to write (Markdown)")


def _read_json(path: Path) -> Optional[dict]:
    from asn.io import read_json

    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(path, f"expected a JSON object, got {type(data).__name__}")
    return data


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise InputError(path, "missing: run `dvc repro stats` first")
    try:
        return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(path, f"cannot read CSV: {error}") from error


def _rel(path: Path, base: Path) -> str:
    """Link target relative to the index's folder (the index lives in reports/)."""
    import os

    return Path(os.path.relpath(path, base)).as_posix()


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or value == "":
        return "n/a"
    if isinstance(value, str) and "." in value:  # CSV cells
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"
    return str(value)


def _provenance_row(label: str, link: str, source: str, profile: str, seeds: str, commit: str,
                    command: str, experiment: str) -> str:
    return f"| {label} | {link} | {source} | {profile} | {seeds} | {commit} | {command} | {experiment} |"


def _short(commit: Optional[str]) -> str:
    return f"`{commit[:10]}`" if commit else "n/a"


def _model_table_row(label: str, path: Path, base: Path, data: Optional[Mapping[str, Any]], command: str,
                     experiment: str) -> str:
    if data is None:
        return _provenance_row(label, "not generated yet", "-", "-", "-", "-", f"`{command}`", f"`{experiment}`")
    seeds = sorted({s for row in data.get("rows", []) for s in row.get("seed_list", [])})
    source = str(data.get("data_source", "?"))
    source = "synthetic world (not KINS)" if source == "synthetic" else source
    return _provenance_row(label, f"[{path.name}]({_rel(path, base)})", source, str(data.get("profile", "?")),
                           ", ".join(str(s) for s in seeds) or "n/a", _short(data.get("git_commit")),
                           f"`{command}`", f"`{experiment}`")


def build_index(stats_dir: Path, tables_dir: Path, out: Path, *, commit: str) -> str:
    """The Markdown text of the index (deterministic in its inputs and ``commit``)."""
    from asn import paper

    base = out.parent
    summary = _read_json(stats_dir / "summary.json")
    if summary is None:
        raise InputError(stats_dir / "summary.json", "missing: run `dvc repro stats` first")
    stats_source = str(summary.get("source", "?"))
    synthetic = "synthetic" in stats_source
    table4 = _read_json(tables_dir / "table4.json")
    sweeps = {name: _read_json(tables_dir / f"{name}.json") for name in SWEEP_TABLES}
    table8 = _read_json(tables_dir / "table8.json")

    lines = [
        "# Reports: every table and figure of the paper, regenerated",
        "",
        f"Generated by `dvc repro report` (or `asn report --stats {_rel(stats_dir, Path('.'))} "
        f"--tables {_rel(tables_dir, Path('.'))} --out {_rel(out, Path('.'))}`) at commit {_short(commit)}.",
        "",
        ("**Data: the embedded synthetic world, not KINS.** Every number below that is ours describes "
         "synthetic data; paper columns are the paper's numbers on KINS, given for context."
         if synthetic else f"**Data: {stats_source}.**"),
        "",
        "Browse every training / evaluation run: `make ui` (MLflow on 127.0.0.1:5000), experiments "
        "`table4`, `table5`, `table6`, `table7`, `inference_order`; `asn runs --metrics <metrics.json>` names the run "
        "behind one number.",
        "",
        "## Index",
        "",
        "| Item | File | Data | Profile | Seeds | Git commit | Regenerate | MLflow experiment |",
        "|---|---|---|---|---|---|---|---|",
    ]
    stats_label = "synthetic world (not KINS)" if synthetic else stats_source
    for label, name in (("Table 1: instances per category", "table1.md"),
                        ("Table 2: convexity and simplicity", "table2.md"),
                        ("Table 3: annotation consistency", "table3.md"),
                        ("Figure 4(a): occlusion ratio of instances (the paper prints no numbers)", "figure4a.png"),
                        ("Figure 4(b): mean box IoU per image (the paper prints no numbers)", "figure4b.png"),
                        ("Figure 4(c): max occlusion order and match number, beside the paper's bars",
                         "figure4c.png")):
        path = stats_dir / name
        link = f"[{name}]({_rel(path, base)})" if path.is_file() else "not generated yet"
        lines.append(_provenance_row(label, link, stats_label, "n/a (statistics)", "n/a", _short(commit),
                                     f"`{STATS_COMMAND}`", "-"))
    lines.append(_model_table_row("Table 4: Det / Amodal / Inmodal AP", tables_dir / "table4.md", base, table4,
                                  "dvc repro aggregate", "table4"))
    if table4 is not None and (tables_dir / "table4.png").is_file():
        lines.append(_provenance_row("Table 4 figure: AP per variant with every seed",
                                     f"[table4.png]({_rel(tables_dir / 'table4.png', base)})", "as Table 4",
                                     "as Table 4", "as Table 4", "as Table 4", "`dvc repro aggregate`", "`table4`"))
    titles = {"table5": "Table 5: mask heads, OC, MLC position", "table6": "Table 6: OC threshold",
              "table7": "Table 7: MLC parts",
              "inference_order": "Inference order (section 4.3 vs the released code), with ms / image"}
    for name in SWEEP_TABLES:
        lines.append(_model_table_row(titles[name], tables_dir / f"{name}.md", base, sweeps[name],
                                      f"prefect deployment run 'asn-ablation/{name}'", name))
    lines.append(_model_table_row("Table 8: scene flow with instance masks", tables_dir / "table8.md", base,
                                  table8, "dvc repro sceneflow", "-").replace("| `-` |", "| - (files only) |"))
    figure5 = _read_json(base / "figures" / "figure5.json")
    lines.append(_figure5_row(base / "figures", base, figure5))
    lines += [
        "",
        "Tables 5-7 and the inference order are Prefect sweeps (`make prefect`, then the command in the row; see pipelines/README.md). "
        "DVC does not track them: after a sweep, `asn report` refreshes this index. "
        + ("Table 8 (scene flow) is not wired into the pipeline yet." if table8 is None else ""),
        "",
    ]
    lines += _sweeps_section(sweeps, figure5)
    lines += _table1_section(stats_dir, paper)
    lines += _table2_section(stats_dir, paper)
    lines += _summary_section(summary, paper)
    lines += _table3_section(stats_dir, paper)
    lines += _figure4c_section(summary, paper)
    lines += _model_summary(table4, sweeps, base, tables_dir)
    lines += _claims_section(stats_dir, {"table4": table4, **sweeps, "table8": table8}, figure5, synthetic)
    lines += _scene_order_figures(base / "figures", base)
    return "\n".join(lines).rstrip("\n") + "\n"


SWEEP_COMMANDS = {name: (f"prefect deployment run 'asn-ablation/{name}'", f"python pipelines/ablation.py --table {name}")
                  for name in SWEEP_TABLES}


def _figure5_row(folder: Path, base: Path, data: Optional[Mapping[str, Any]]) -> str:
    from asn.claims import COMMANDS

    label = "Figure 5: predicted / true amodal area of occluded instances over training iterations"
    if data is None:
        return _provenance_row(label, "not generated yet", "-", "-", "-", "-", f"`{COMMANDS['figure5']}`", "-")
    source = str(data.get("data_source", "?"))
    source = "synthetic world (not KINS)" if source == "synthetic" else source
    seeds = sorted({str(run.get("seed")) for run in data.get("runs") or []})
    link = f"[figure5.png]({_rel(folder / 'figure5.png', base)}), [figure5.json]({_rel(folder / 'figure5.json', base)})"
    return _provenance_row(label, link, source, str(data.get("profile", "?")), ", ".join(seeds) or "n/a",
                           _short(data.get("git_commit")), f"`{data.get('command') or COMMANDS['figure5']}`", "- (files only)")


def _sweeps_section(sweeps: Mapping[str, Optional[Mapping[str, Any]]], figure5: Optional[Mapping[str, Any]]) -> list[str]:
    """The sweeps outside DVC, each with the command that regenerates it and its last wall time."""
    from asn.claims import COMMANDS

    lines = ["## Sweeps and benchmarks outside `make run` (how to regenerate each)", "",
             "`make run` rebuilds Table 4, Table 8 and this index; these are run on their own (Prefect: `make prefect` "
             "first). An arm that is a Table 4 model reuses it (same params and data hash), so run `make run` first.", "",
             "| Item | Regenerate (Prefect deployment) | Without a server | Last run: wall time | Jobs: trained / reused "
             "from Table 4 / from the Prefect cache |", "|---|---|---|---|---|"]
    for name in SWEEP_TABLES:
        deployment, local = SWEEP_COMMANDS[name]
        timing = (sweeps.get(name) or {}).get("timing") or {}
        wall = (_duration(timing.get("wall_s")) if timing else "not run yet" if sweeps.get(name) is None
                else "not recorded (a run before timings were kept)")
        jobs = (f"{timing.get('trained')} / {timing.get('reused')} / {timing.get('cached')} of {timing.get('jobs')}"
                if timing else "–")
        lines.append(f"| {name} | `{deployment}` | `{local}` | {wall} | {jobs} |")
    wall = _duration((figure5 or {}).get("wall_s")) if figure5 else "not run yet"
    lines.append(f"| figure5 | – | `{(figure5 or {}).get('command') or COMMANDS['figure5']}` | {wall} | – |")
    return lines + [""]


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "n/a"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.2f} h"


def _claims_section(stats_dir: Path, tables: Mapping[str, Optional[Mapping[str, Any]]],
                    figure5: Optional[Mapping[str, Any]], synthetic: bool) -> list[str]:
    """The paper's claims, each tested on our tables (asn.claims)."""
    from asn import claims

    table2 = _read_csv(stats_dir / "table2.csv") if (stats_dir / "table2.csv").is_file() else None
    results = claims.evaluate_claims(tables, table2_rows=table2, figure5=figure5)
    return claims.render_markdown(results, synthetic=synthetic)


def _scene_order_figures(folder: Path, base: Path) -> list[str]:
    """The scene-order pictures `make view` writes (asn view --figures), when there are any."""
    pictures = sorted(p for p in folder.glob("*.png") if not p.stem.startswith("figure5")) if folder.is_dir() else []
    if not pictures:
        return []
    lines = ["## Scene order: ground truth beside predictions (Figures 1(c) and 3 style)", "",
             "Top: inmodal fill, amodal outline and each instance's order digit (KINS' ico_id for the ground "
             "truth, the order rebuilt from the masks for the predictions, asn.eval.order). Bottom: the layered "
             "view, amodal masks near to far, darker the farther. Regenerate: `make view` (asn view --figures); "
             "browse every image: `make view`.", ""]
    for path in pictures:
        lines += [f"![{path.stem}]({_rel(path, base)})", ""]
    return lines


def _paper_note(item: Optional[str], label: Optional[str] = None) -> str:
    from asn import paper

    if not item:
        return "Paper columns: none — no counterpart in the paper."
    return f"Paper columns: {label or paper.LABEL_KINS} ({paper.cite(item)}); context, not a result of this project."


def _table1_section(stats_dir: Path, paper) -> list[str]:
    from asn.stats.tables import paper_table1_entry

    rows = _read_csv(stats_dir / "table1.csv")
    lines = ["## Table 1: instances per category, ours beside the paper's", "",
             f"| Category | Ours: total | Ours: ratio (%) | Paper ({paper.LABEL_KINS}): count | Paper: ratio (%) |",
             "|---|---|---|---|---|"]
    for row in rows:
        name = row.get("category", "")
        ref = paper_table1_entry(name)
        try:
            ours = f"{100.0 * float(row.get('ratio')):.2f}"
        except (TypeError, ValueError):
            ours = "n/a"
        lines.append(f"| {name} | {row.get('total', 'n/a')} | {ours} | "
                     + (f"{ref['count']} | {ref['ratio_percent']:.2f} |" if ref else "n/a | n/a |"))
    return lines + ["", _paper_note("Table 1"),
                    "person-sitting: a paper row (2,250 instances); the public KINS files hold none, and it is "
                    "excluded from the experiments, as in the paper.", ""]


def _table2_section(stats_dir: Path, paper) -> list[str]:
    rows = _read_csv(stats_dir / "table2.csv")
    lines = ["## Table 2: shape convexity and simplicity, ours beside the paper's", "",
             "| Dataset | Segments | Convexity | Simplicity |", "|---|---|---|---|"]
    for row in rows:
        if row.get("split") == "all" and row.get("source", "ours") == "ours":
            lines.append(f"| ours (all splits) | {row.get('segments')} | {_fmt(row.get('convexity'))} | "
                         f"{_fmt(row.get('simplicity'))} |")
    for dataset, values in paper.TABLE2.items():
        for kind in ("amodal", "inmodal"):
            lines.append(f"| {dataset} (paper-reported) | {kind} | {values['convexity'][kind]:.3f} | "
                         f"{values['simplicity'][kind]:.3f} |")
    return lines + ["", f"Paper rows: the paper's numbers ({paper.cite('Table 2')}; BSDS-A and COCO-A as the paper "
                    "reports them, KINS on the real data); context, not a result of this project. "
                    + paper.TABLE2_PAIRING_FLAG, ""]


def _summary_section(summary: Mapping[str, Any], paper) -> list[str]:
    """Section 3.2's dataset statistics beside summary.json's."""
    from asn.stats.tables import summary_comparison

    lines = ["## Section 3.2: dataset statistics, ours beside the paper's", "",
             f"| Statistic | Ours | Paper ({paper.LABEL_KINS}) | Note |", "|---|---|---|---|"]
    for name, ours, ref, note in summary_comparison(dict(summary)):
        cell = "n/a" if ours is None else (str(ours) if isinstance(ours, int) else f"{float(ours):.2f}")
        lines.append(f"| {name} | {cell} | {ref} | {note or '–'} |")
    return lines + ["", _paper_note("section 3"), ""]


def _figure4c_section(summary: Mapping[str, Any], paper) -> list[str]:
    from asn.stats.clusters import BUCKET_LABELS
    from asn.stats.tables import FIGURE4C_CAVEAT, figure4c_rows

    order, match = summary.get("cluster_max_order_counts"), summary.get("match_number_counts")
    lines = ["## Figure 4(c): fractions of each series, ours beside the paper's", ""]
    if not isinstance(order, Mapping) or not isinstance(match, Mapping):
        return lines + ["Not available: summary.json has no cluster counts (`dvc repro stats`).", ""]
    rows = figure4c_rows([order.get(b, 0) for b in BUCKET_LABELS], [match.get(b, 0) for b in BUCKET_LABELS])
    lines += ["| Value (ours / paper) | Max occlusion order: ours | paper | Max match number: ours | paper |",
              "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row[0]} / {row[1]} | {_fmt(row[2])} | {_fmt(row[3])} | {_fmt(row[4])} | {_fmt(row[5])} |")
    return lines + ["", "Fractions of each series' total (the counts differ in scale by orders of magnitude). "
                    + FIGURE4C_CAVEAT, "Figure 4(a) and 4(b): the paper prints no numbers for them (section 3.2's "
                    "text gives the mean occlusion ratio and the share of images with mean box IoU above 0.65, in "
                    "the table above).", ""]


def _table3_section(stats_dir: Path, paper) -> list[str]:
    """Table 3 in the paper's layout (stage-2 x stage-1 matrix of the annotators and their
    majority votes, ours and the paper's, with the computed pattern), then the extra table of
    each stage against the released annotation; the one-stage matrix when only one stage exists."""
    from asn.stats.consistency import describe_pattern, diagonal_pattern

    data = _read_json(stats_dir / "table3.json")
    lines = ["## Table 3: annotation consistency (mean mask IoU), ours beside the paper's", ""]
    if not data or not data.get("names"):
        return lines + ["Not available: the statistics stage found no annotator files "
                        "(`synth.annotators` > 0, or KINS annotator files).", ""]
    names = list(data["names"])
    cross = data.get("cross_stage")
    if data.get("layout") == "two_stage" and isinstance(cross, Mapping):
        lines += ["Rows: stage-2 annotations of each annotator and their majority vote; columns: the same in "
                  "stage 1; entry: mean mask IoU (the paper's layout).", "",
                  "| Stage 2 (rows) / stage 1 (columns) | " + " | ".join(cross["columns"]) + " |",
                  "|---" * (len(cross["columns"]) + 1) + "|"]
        for row, values in zip(cross["rows"], cross["matrix"]):
            lines.append(f"| {row} (ours) | " + " | ".join(_fmt(float(v)) for v in values) + " |")
        lines += ["", f"| Stage 2 / stage 1 ({paper.LABEL_KINS}) | " + " | ".join(paper.TABLE3["columns_stage1"])
                  + " |", "|---" * (len(paper.TABLE3["columns_stage1"]) + 1) + "|"]
        for row, values in zip(paper.TABLE3["rows_stage2"], paper.TABLE3["matrix"]):
            lines.append(f"| {row} (paper) | " + " | ".join(f"{v:.3f}" for v in values) + " |")
        pattern = cross.get("pattern")
        lines += ["", "- Ours: " + (describe_pattern(pattern) if pattern else "n/a") + ".",
                  "- Paper: " + describe_pattern(diagonal_pattern(paper.TABLE3["matrix"])) + "."]
    if data.get("layout") == "two_stage" and data.get("stages"):
        from asn.stats.consistency import two_stage_table

        if not isinstance(cross, Mapping):
            lines += ["The stage-2 x stage-1 matrix is missing from this table3.json: `dvc repro stats`.", ""]
        columns, rows = two_stage_table(data)
        reference = data["stages"][0].get("reference")
        lines += ["", "Extra (no paper counterpart): each stage against "
                  + (f"the released annotation `{reference}`" if reference else "its own majority vote") + ".", "",
                  "| Annotation | " + " | ".join(columns[1:]) + " |", "|---" * len(columns) + "|"]
        for row in rows:
            lines.append(f"| {row[0]} (ours) | " + " | ".join(_fmt(v) for v in row[1:]) + " |")
        against = (f"IoU with the released annotation `{reference}`" if reference
                   else "IoU with the same stage's majority vote")
        lines += ["", f"- Annotator and majority rows: {against}; mean pairwise: between two annotators of a stage."]
    else:
        lines += ["| Annotator | " + " | ".join(names) + " | majority_vote |", "|---" * (len(names) + 2) + "|"]
        for name, row, vote in zip(names, data.get("matrix", []), data.get("vs_majority", [])):
            lines.append(f"| {name} (ours) | " + " | ".join(_fmt(v) for v in row) + f" | {_fmt(vote)} |")
        lines += ["", "- One annotation stage only: the paper's Table 3 compares two stages, so no paper column here."]
    lines += [f"- {data.get('n_images', '?')} images, {data.get('n_instances', '?')} instances per set; "
              f"source: {data.get('source', '?')}."]
    return lines + ["", _paper_note("Table 3") if isinstance(cross, Mapping) else _paper_note(None), ""]


def _model_summary(table4, sweeps, base: Path, tables_dir: Path) -> list[str]:
    lines = ["## Tables 4-7 at a glance (mean over seeds; the linked files have variances and paper columns)", ""]
    for name, data in (("table4", table4), *sweeps.items()):
        if data is None:
            continue
        lines += [f"### {name}", "", "| Row | Seeds | Det AP | Amodal AP | Inmodal AP |", "|---|---|---|---|---|"]
        for row in data.get("rows", []):
            cells = [(_fmt(row[m]["mean"], 1) if isinstance(row.get(m), Mapping) else "n/a")
                     for m in ("det_ap", "amodal_ap", "inmodal_ap")]
            lines.append(f"| {row.get('name', row.get('variant'))} (`{row.get('variant')}`) | {row.get('seeds', 'n/a')} | "
                         + " | ".join(cells) + " |")
        lines += ["", f"Full table: [{name}.md]({_rel(tables_dir / (name + '.md'), base)})", ""]
    return lines


def run(args: argparse.Namespace) -> int:
    import sys

    from asn.io import write_text_atomic
    from asn.tracking import git_commit

    commit = git_commit(paths=["src", "stages", "params.yaml", "dvc.yaml", "pyproject.toml"]) or ""
    text = build_index(args.stats, args.tables, args.out, commit=commit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, text)
    print(f"report: wrote {args.out}", file=sys.stderr)
    return 0
