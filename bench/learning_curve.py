"""Learning curve of one model: amodal / inmodal / Det AP after every N iterations of one run.

Issue 7's learning goal (amodal Seg AP >= 30 on the synthetic test split) is a question of how
many iterations a model needs; this script answers it for one (variant, seed) with the real
commands: ``asn train`` (the params.yaml profile, any ``--set`` override, e.g. a longer
schedule) runs once with ``train.checkpoint_every = --every``; each checkpoint it writes is
copied aside as a snapshot (its iteration read from the checkpoint itself), then every
snapshot is scored by ``asn evaluate`` on the test split. Because CPU training is
deterministic, a snapshot at iteration N of a long run is the model that run had at N (before
any lr decay scheduled later: say so when reading the curve).

Writes ``reports/bench/learning_curve_<variant>.json`` (one row per snapshot: iteration, AP,
AP50, AP75 of Det / Amodal / Inmodal, per-class amodal AP, wall seconds) and a PNG beside it.

    python bench/learning_curve.py --variant mrcnn --iterations 3000 --steps 2400 2800 --every 500
    python bench/learning_curve.py --variant mrcnn_asn --iterations 1000 --steps 800 950 --every 250
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from asn.io import write_json_atomic  # noqa: E402


def _checkpoint_iteration(path: Path) -> int | None:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["iteration"])
    except Exception:  # being replaced right now: try again at the next poll
        return None


def train_command(args: argparse.Namespace, run_dir: Path) -> list[str]:
    """The ``asn train`` command line of the run (with ``python -m asn.cli`` in front)."""
    command = [sys.executable, "-m", "asn.cli", "train", "--params", str(args.params), "--gt", str(args.gt),
               "--images", str(args.train_images), "--out", str(run_dir), "--variant", args.variant, "--seed", str(args.seed), "--no-progress",
               "--no-tracking", "--set", f"train.checkpoint_every={args.every}"]
    if args.iterations is not None:
        command += ["--set", f"profiles.{args.profile}.train.iterations={args.iterations}"]
    if args.steps is not None:
        command += ["--set", f"profiles.{args.profile}.train.steps={json.dumps(args.steps, separators=(',', ':'))}"]
    for item in args.set:
        command += ["--set", item]
    return command


def train_with_snapshots(args: argparse.Namespace, run_dir: Path, snap_dir: Path) -> float:
    """Run ``asn train`` and copy every checkpoint it writes to ``snap_dir/it<N>.pt``."""
    command = train_command(args, run_dir) + (["--resume"] if args.resume else [])
    print("+", " ".join(command), file=sys.stderr)
    start = time.perf_counter()
    log = open(run_dir / "train.out", "a")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    checkpoint = run_dir / "checkpoint.pt"
    seen = None
    while True:
        done = process.poll() is not None
        if checkpoint.exists():
            stamp = checkpoint.stat().st_mtime_ns
            if stamp != seen:
                iteration = _checkpoint_iteration(checkpoint)
                if iteration is not None:
                    target = snap_dir / f"it{iteration}.pt"
                    shutil.copyfile(checkpoint, target.with_suffix(".tmp"))
                    os.replace(target.with_suffix(".tmp"), target)
                    seen = stamp
        if done:
            break
        time.sleep(1.0)
    log.close()
    if process.returncode != 0:
        raise SystemExit(f"asn train failed (exit {process.returncode}); see {run_dir / 'train.out'}")
    return time.perf_counter() - start


def evaluate_snapshot(args: argparse.Namespace, snapshot: Path, out: Path) -> dict:
    command = [sys.executable, "-m", "asn.cli", "evaluate", "--params", str(args.params), "--gt", str(args.gt),
               "--split", "test", "--images", str(args.test_images), "--checkpoint", str(snapshot),
               "--out", str(out), "--no-progress", "--no-tracking"]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "per_class.csv") as handle:
        # a class without test instances has an empty cell
        per_class = {row["name"]: float(row["amodal_ap"]) if row["amodal_ap"] else None
                     for row in csv.DictReader(handle)}
    keys = [f"{m}_ap{s}" for m in ("det", "amodal", "inmodal") for s in ("", "_50", "_75")]
    return {**{k: metrics[k] for k in keys}, "amodal_ap_per_class": per_class}


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    iterations = [r["iteration"] for r in rows]
    for key, label in (("amodal_ap", "amodal AP"), ("inmodal_ap", "inmodal AP"), ("det_ap", "Det AP")):
        axis.plot(iterations, [r[key] for r in rows], marker="o", label=label)
    if rows and "car" in rows[0]["amodal_ap_per_class"]:
        axis.plot(iterations, [r["amodal_ap_per_class"]["car"] for r in rows], ls="--", label="amodal AP, car")
    axis.axhline(30, color="grey", lw=0.8, ls=":", label="goal (30)")
    axis.set_xlabel("iteration")
    axis.set_ylabel("AP (%)")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    figure.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="mrcnn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--profile", default="smoke", help="the params.yaml profile the overrides go to (default smoke)")
    parser.add_argument("--iterations", type=int, default=None, help="override the profile's iterations")
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="override the profile's lr steps")
    parser.add_argument("--every", type=int, default=250, help="snapshot period in iterations (default 250)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other override")
    parser.add_argument("--gt", type=Path, default=ROOT / "data" / "normalized")
    parser.add_argument("--train-images", type=Path, default=ROOT / "data" / "raw" / "training" / "image_2")
    parser.add_argument("--test-images", type=Path, default=ROOT / "data" / "raw" / "testing" / "image_2")
    parser.add_argument("--work", type=Path, default=None, help="run folder (default: /tmp/asn-curve-<variant>-<seed>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --work (after a kill)")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="do not train: score the snapshots already in --work/snapshots (e.g. of a run "
                             "made with the same asn train arguments by hand)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default reports/bench/learning_curve_<variant>.json)")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be >= 1")
    work = args.work or Path(f"/tmp/asn-curve-{args.variant}-{args.seed}")
    snap_dir = work / "snapshots"
    snap_dir.mkdir(parents=True, exist_ok=True)
    out = args.out or ROOT / "reports" / "bench" / f"learning_curve_{args.variant}.json"
    train_seconds = None if args.evaluate_only else train_with_snapshots(args, work, snap_dir)
    rows = []
    snapshots = sorted(snap_dir.glob("it*.pt"), key=lambda p: int(p.stem[2:]))
    snapshots = [p for p in snapshots if int(p.stem[2:]) % args.every == 0]
    if not snapshots:
        raise SystemExit(f"no snapshot it<N>.pt with N a multiple of {args.every} in {snap_dir}")
    for snapshot in snapshots:
        iteration = int(snapshot.stem[2:])
        start = time.perf_counter()
        row = {"iteration": iteration, **evaluate_snapshot(args, snapshot, work / f"eval{iteration}")}
        row["eval_seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(f"{args.variant} iteration {iteration}: amodal AP {row['amodal_ap']:.2f} "
              f"(car {row['amodal_ap_per_class'].get('car', float('nan')):.2f}), Det AP {row['det_ap']:.2f}",
              file=sys.stderr)
    command = "python bench/learning_curve.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {
        "benchmark": "learning curve: AP on the synthetic test split (synthetic data, not KINS) at every "
                     "snapshot of one training run",
        "command": command.strip(),
        "variant": args.variant, "seed": args.seed, "profile": args.profile,
        "overrides": {"iterations": args.iterations, "steps": args.steps, "set": args.set},
        "snapshot_every": args.every,
        "train_command": "asn " + " ".join(train_command(args, work)[3:]),
        "trained_here": not args.evaluate_only,
        "train_wall_seconds": round(train_seconds, 1) if train_seconds is not None else None,
        "goal": {"amodal_ap": 30.0},
        "first_iteration_at_goal": next((r["iteration"] for r in rows if r["amodal_ap"] >= 30.0), None),
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result, indent=True)
    plot(rows, out.with_suffix(".png"),
         f"{args.variant} seed {args.seed}, {args.profile} profile, synthetic world (not KINS)")
    print(f"wrote {out} and {out.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
