"""`asn aggregate`: per-seed metrics of a table's variants -> mean ± variance table, figure, MLflow parent run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asn.errors import InputError

HELP = """Build a results table from the evaluate stages of params.yaml <table>.variants x
<table>.seeds (reading <eval>/<variant>-<seed>/metrics.json): per variant Det / Amodal Seg /
Inmodal Seg AP as mean ± sample variance over the seeds, the number of seeds, the paper's numbers
(paper-reported on KINS) in side columns, and whether ASN beats its baseline beyond the seed
spread. Beside them, ours only: the scene-order columns (order_pair_accuracy with its coverage
order_pair_coverage, order_cluster_accuracy with order_cluster_coverage; asn.eval.order), n/a for
metrics that lack them. Writes OUT/<table>.md, .csv, .json and .png (per-variant AP with every seed), and logs
them to MLflow as a parent run of the per-seed runs (experiment <table>)."""

DATA_SOURCES = {"synthetic": "the embedded synthetic world (NOT KINS; synthetic-data results)",
                "kins": "KINS (real data)"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameters file (default: %(default)s)")
    parser.add_argument("--table", default="table4", help="params.yaml section with variants and seeds (default: %(default)s)")
    parser.add_argument("--eval", dest="eval_dir", type=Path, required=True, help="folder of <variant>-<seed>/metrics.json")
    parser.add_argument("--out", type=Path, required=True, help="output folder for <table>.md/.csv/.json/.png")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set table4.seeds=[0,1] (repeatable)")
    parser.add_argument("--no-tracking", action="store_true", help="do not log the table to MLflow")


def run(args: argparse.Namespace) -> int:
    from asn.config import load_params, section, thaw
    from asn.eval.seeds import ORDER_METRICS, build_table, collect, plot, render_csv, render_markdown
    from asn.io import write_json_atomic, write_text_atomic
    from asn.tracking import git_commit

    params = load_params(args.params, args.overrides)
    spec = thaw(section(params, args.table, str(args.params)))
    variants, seeds = spec.get("variants"), spec.get("seeds")
    if not variants or not isinstance(variants, list) or not seeds or not isinstance(seeds, list):
        raise InputError(args.params, f"{args.table}: needs non-empty lists 'variants' and 'seeds'")
    per_variant = collect(args.eval_dir, variants, seeds)
    profiles = sorted({str(run.get("run", {}).get("profile")) for runs in per_variant.values() for run in runs})
    if len(profiles) != 1:
        raise InputError(args.eval_dir, f"the metrics mix profiles {profiles}; re-run the stale evaluations")
    source = str(thaw(params).get("data", {}).get("source", "synthetic"))
    table = build_table(per_variant, order_metrics=ORDER_METRICS)
    commit = git_commit(paths=["src", "stages", "params.yaml", "dvc.yaml", "pyproject.toml"])
    command = "dvc repro aggregate" if args.table == "table4" else f"asn aggregate --table {args.table} ..."
    header = {"Data": DATA_SOURCES.get(source, source), "Profile": profiles[0],
              "Seeds": ", ".join(str(s) for s in seeds), "Git commit": commit,
              "MLflow experiment": f"`{args.table}` (`make ui`)"}
    import re

    label = re.sub(r"^table(\d+)$", r"Table \1", args.table)
    title = f"{label}: Det / Amodal / Inmodal AP" + (
        " — synthetic world, not KINS" if source == "synthetic" else " — KINS")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / args.table
    write_text_atomic(stem.with_suffix(".md"), render_markdown(table, title=title, header=header, command=command))
    write_text_atomic(stem.with_suffix(".csv"), render_csv(table))
    write_json_atomic(stem.with_suffix(".json"), {"table": args.table, "data_source": source, "profile": profiles[0],
                                                  "git_commit": commit, **table}, indent=True)
    plot(table, stem.with_suffix(".png"), title=f"{title} ({profiles[0]} profile, {len(seeds)} seeds)")
    for result in table["comparisons"]:
        amodal = result["amodal_ap"]
        print(f"aggregate: {result['ours']} vs {result['baseline']}: amodal AP {amodal['difference']:+.2f} "
              f"({'beyond' if amodal['separated'] else 'within'} the seed spread)", file=sys.stderr)
    print(f"aggregate: {len(variants)} variants x {len(seeds)} seeds -> {stem}.md/.csv/.json/.png", file=sys.stderr)
    if not args.no_tracking:
        log_table(args.table, table, stem)
    return 0


def log_table(experiment: str, table: dict, stem: Path) -> None:
    """A parent run holding the table and figure; the per-seed runs become its children."""
    import hashlib

    from asn.tracking import Tracker, git_commit

    tracker = Tracker()
    keys = sorted(k for row in table["rows"] for k in row["mlflow_run_keys"] if k)
    parent_key = hashlib.sha256(("aggregate\n" + experiment + "\n" + "\n".join(keys)).encode()).hexdigest()[:32]
    run_id = tracker.start_run(experiment, parent_key, name=f"{experiment}-aggregate", kind="aggregate",
                               replace=True, tags={"git_commit": git_commit()})
    if run_id is None:
        return
    metric_keys = ["det_ap", "amodal_ap", "inmodal_ap", *(key for key, _ in table.get("order_metrics", []))]
    tracker.log_metrics(run_id, {f"{row['variant']}.{key}_mean": row[key]["mean"] for row in table["rows"]
                                 for key in metric_keys if row.get(key)})
    for row in table["rows"]:
        for child_key in row["mlflow_run_keys"]:
            child = tracker.find_run(experiment, child_key) if child_key else None
            if child:
                tracker.set_tags(child, {"mlflow.parentRunId": run_id})
    tracker.log_artifacts(run_id, [stem.with_suffix(s) for s in (".md", ".csv", ".json", ".png")], "table")
    tracker.end_run(run_id)
    print(f"mlflow: logged the table as run {run_id} of experiment {experiment!r} ({tracker.uri})", file=sys.stderr)
