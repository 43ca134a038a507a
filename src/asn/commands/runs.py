"""`asn runs`: list the MLflow runs of an experiment, or find the run behind a metrics file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from asn.errors import InputError

HELP = """List the MLflow runs of an experiment (one per variant and seed, plus the table's
aggregate run) with their run key, status and APs; or, with --metrics, the run behind a
metrics.json (its `mlflow.run_key`). Store: MLFLOW_TRACKING_URI, else ./mlflow.db."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", default="table4", help="experiment name (default: %(default)s)")
    parser.add_argument("--key", help="only the run tagged asn.run_key = KEY")
    parser.add_argument("--metrics", type=Path, help="a metrics.json (or train_summary.json): show the run it names")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from asn.tracking import KEY_TAG, Tracker

    experiment, key = args.experiment, args.key
    if args.metrics is not None:
        try:
            reference = json.loads(args.metrics.read_text())["mlflow"]
        except FileNotFoundError:
            raise InputError(args.metrics, "file not found") from None
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError(args.metrics, "no `mlflow` run reference in this file") from None
        experiment, key = reference["experiment"], reference["run_key"]
    tracker = Tracker()
    try:
        found = tracker.client.get_experiment_by_name(experiment)
    except Exception as error:  # unreachable server, bad URI, unreadable database
        raise InputError(tracker.uri, f"cannot read the MLflow store: {type(error).__name__}: "
                                      f"{str(error).strip().splitlines()[0][:200] if str(error).strip() else ''}") from None
    if found is None:
        raise InputError(tracker.uri, f"no experiment {experiment!r} in this MLflow store")
    runs = [r for r in tracker.runs(experiment) if key is None or r.data.tags.get(KEY_TAG) == key]
    if key is not None and not runs:
        raise InputError(tracker.uri, f"no run tagged {KEY_TAG} = {key} in experiment {experiment!r}")
    rows = [{"run_id": r.info.run_id, "name": r.info.run_name, "status": r.info.status,
             "run_key": r.data.tags.get(KEY_TAG), "kind": r.data.tags.get("asn.kind"),
             "parent": r.data.tags.get("mlflow.parentRunId"),
             **{m: r.data.metrics.get(m) for m in ("det_ap", "amodal_ap", "inmodal_ap")}} for r in runs]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{experiment} ({tracker.uri}): {len(rows)} run(s)", file=sys.stderr)
    for row in rows:
        aps = " ".join(f"{m.split('_')[0]} {row[m]:.2f}" for m in ("det_ap", "amodal_ap", "inmodal_ap")
                       if row[m] is not None)
        print(f"{row['run_id']}  {row['name'] or '-':<22} {row['status']:<9} key {row['run_key']}  {aps}")
    return 0
