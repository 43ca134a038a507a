"""`asn train`: train one model (variant, seed) of params.yaml's profile on a normalized split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = """Train one model on <gt>/<split>_amodal.json + <split>_inmodal.json and the split's images.
Everything comes from params.yaml: `profile` picks profiles.<name> (smoke: CPU, synthetic world;
paper: R50-FPN, total batch 8, 24k iterations), `model:` the variant and its heads, `train:` the
seed, device and loader. --variant / --seed / --set override them. Writes OUT/checkpoint.pt
(atomically, every train.checkpoint_every iterations and at the end), train_log.csv (loss per
term and lr per iteration), label_map.json, config.json and train_summary.json. --resume continues
from OUT/checkpoint.pt, refused when it was trained under other parameters or other data.
With model.init: trunk (the smoke profile) the run starts from the shared pretrained trunk given by
--trunk (models/trunk/trunk.pt, built once by `asn pretrain`): model.trunk_parts are loaded over the
seed's random init and model.freeze of them stay fixed; the trunk's sha256 enters the params hash.
Multi-GPU: torchrun --nproc_per_node 8 stages/train.py ... (same arguments)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameters file (default: %(default)s)")
    parser.add_argument("--gt", type=Path, required=True, help="folder with <split>_amodal.json / <split>_inmodal.json")
    parser.add_argument("--images", type=Path, required=True, help="folder with the split's images")
    parser.add_argument("--split", default="train", help="split name (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="run folder for the checkpoint and logs")
    parser.add_argument("--variant", help="model variant (default: params.yaml model.variant)")
    parser.add_argument("--seed", type=int, help="seed (default: params.yaml train.seed)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set profiles.smoke.train.iterations=50 (repeatable)")
    parser.add_argument("--trunk", type=Path, metavar="FILE",
                        help="the shared pretrained trunk (models/trunk/trunk.pt), required when model.init is trunk")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt when it exists")
    parser.add_argument("--no-progress", action="store_true", help="plain periodic log lines instead of a progress bar")
    add_tracking_arguments(parser)
    parser.add_argument("--stop-after", type=int, metavar="N", help=argparse.SUPPRESS)


def add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", default="table4",
                        help="MLflow experiment (one per table; default: %(default)s)")
    parser.add_argument("--no-tracking", action="store_true",
                        help="do not log to MLflow (store: MLFLOW_TRACKING_URI, else ./mlflow.db)")


def run(args: argparse.Namespace) -> int:
    from asn.config import load_params
    from asn.engine.config import resolve
    from asn.engine.train import train

    params = load_params(args.params, args.overrides)
    config = resolve(params, str(args.params), variant=args.variant, seed=args.seed)
    summary = train(config, gt_dir=args.gt, images_dir=args.images, out_dir=args.out, split=args.split,
                    resume=args.resume, progress=not args.no_progress, stop_after=args.stop_after,
                    experiment=args.experiment, trunk_path=args.trunk)
    if summary.get("complete") and not args.no_tracking:
        log_training(args.experiment, config, summary, args.out)
    losses = summary["final_losses_mean_last_20"]
    if losses:
        print(f"train: {summary['variant']} seed {summary['seed']}: {summary['iterations']} iterations, "
              f"loss (mean of the last 20) {losses.get('loss', float('nan')):.4f}; wrote {args.out}",
              file=sys.stderr)
    return 0


def log_training(experiment: str, config, summary: dict, out_dir: Path) -> None:
    """Open the (variant, seed) run in MLflow: params, hashes, commit, loss curves, artifacts."""
    import csv

    from asn.tracking import Tracker, git_commit

    tracker = Tracker()
    if not tracker.enabled:  # not rank 0
        return
    variant, seed = summary["variant"], summary["seed"]
    run_id = tracker.start_run(
        experiment, summary["mlflow"]["run_key"], name=f"{variant}-seed{seed}", kind="train+evaluate",
        replace=True, tags={"variant": variant, "seed": seed, "profile": summary["profile"],
                            "params_hash": summary["params_hash"], "data_hash": summary["data_hash"],
                            "git_commit": git_commit(), "out_dir": str(out_dir)})
    tracker.log_params(run_id, {**config.as_dict(), "params_hash": summary["params_hash"],
                                "data_hash": summary["data_hash"]})
    log_csv = out_dir / "train_log.csv"
    if log_csv.is_file():
        with open(log_csv, newline="") as handle:
            rows = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]
        tracker.log_history(run_id, rows, step_key="iteration")
    tracker.log_artifacts(run_id, [out_dir / name for name in (
        "train_log.csv", "train_summary.json", "config.json", "label_map.json")], "train")
    tracker.log_artifacts(run_id, [out_dir / "checkpoint.pt"], "checkpoint")
    tracker.end_run(run_id)
    if run_id:
        print(f"mlflow: logged {variant} seed {seed} to experiment {experiment!r} ({tracker.uri}), "
              f"run {run_id}", file=sys.stderr)
