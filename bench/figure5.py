"""Paper Figure 5, measured: does longer training shrink the predicted masks of occluded parts?

For each variant (default mrcnn and mrcnn_asn), ONE long training run with the real command,
``asn train`` (the params.yaml profile, from the shared trunk like every smoke model, a longer
schedule by --iterations / --steps, any --set), run in segments of --every iterations
(``--stop-after N --resume``: bit-identical to one uninterrupted run, as asn train's resume is);
the checkpoint after each segment is copied aside as a snapshot. Each
snapshot is scored by ``asn evaluate`` on the test split, and its predictions by
:func:`asn.figure5.area_ratios`: the mean predicted amodal area / ground-truth amodal area of the
occluded ground-truth instances a detection matches (amodal box IoU >= 0.5), and how much of
their invisible part is predicted. CPU training is deterministic, so the snapshot at iteration N
is the model that run had at N. The paper's 20,000 vs 24,000 iterations map to the snapshot at
20/24 of the run vs the last (asn.claims, Figure 5 claim); the lr decays at --steps, as the
paper's at 20,000 and 22,000.

Writes reports/figures/figure5.json (per variant and snapshot: the ratios per instance and their
summary, Amodal AP, wall seconds) and reports/figures/figure5.png; `asn report` reads them.

    python bench/figure5.py --variants mrcnn mrcnn_asn --iterations 1200 --steps 1000 1100 --every 200
    python bench/figure5.py --variants mrcnn --evaluate-only --work /tmp/asn-figure5   # re-score snapshots

About 35-40 CPU minutes on the 2-core machine with the defaults (1200 iterations per variant,
6 snapshots each scored on the 50 test images).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from asn.io import write_json_atomic  # noqa: E402
from learning_curve import _checkpoint_iteration, evaluate_snapshot  # noqa: E402


def train_command(args: argparse.Namespace, variant: str, run_dir: Path) -> list[str]:
    """The ``asn train`` command line of one variant's long run (``python -m asn.cli`` in front)."""
    command = [sys.executable, "-m", "asn.cli", "train", "--params", str(args.params), "--gt", str(args.gt),
               "--images", str(args.train_images), "--out", str(run_dir), "--variant", variant,
               "--seed", str(args.seed), "--no-progress", "--no-tracking", "--set", f"train.checkpoint_every={args.every}",
               "--set", f"profiles.{args.profile}.train.iterations={args.iterations}",
               "--set", f"profiles.{args.profile}.train.steps={json.dumps(args.steps, separators=(',', ':'))}"]
    if args.trunk is not None:
        command += ["--trunk", str(args.trunk)]
    for item in args.set:
        command += ["--set", item]
    return command


def train_with_snapshots(command: list[str], run_dir: Path, snap_dir: Path, *, iterations: int, every: int,
                         resume: bool) -> float:
    """Run ``asn train`` in segments of ``every`` iterations (``--stop-after N --resume``, bit-identical
    to one uninterrupted run: the checkpoint holds every RNG state and the loader position) and copy
    the checkpoint after each to ``snap_dir/it<N>.pt``. ``resume``: keep the snapshots already there."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:  # a fresh run: nothing of an earlier one in this folder is continued
        for stale in [run_dir / "checkpoint.pt", *snap_dir.glob("it*.pt")]:
            stale.unlink(missing_ok=True)
    start = time.perf_counter()
    with open(run_dir / "train.out", "a") as log:
        for stop in range(every, iterations + 1, every):
            target = snap_dir / f"it{stop}.pt"
            if target.is_file():
                continue
            segment = command + ["--resume", "--stop-after", str(stop)]
            print("+", " ".join(segment), file=sys.stderr)
            log.flush()
            code = subprocess.run(segment, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PYTHONPATH": str(ROOT / "src")}).returncode
            if code != 0:
                raise SystemExit(f"asn train failed (exit {code}); see {run_dir / 'train.out'}")
            checkpoint = run_dir / "checkpoint.pt"
            if _checkpoint_iteration(checkpoint) != stop:
                raise SystemExit(f"{checkpoint}: expected the checkpoint of iteration {stop}")
            shutil.copyfile(checkpoint, target.with_suffix(".tmp"))
            os.replace(target.with_suffix(".tmp"), target)
    return time.perf_counter() - start


def score_snapshot(args: argparse.Namespace, snapshot: Path, out: Path, gt: tuple[dict, dict]) -> dict:
    """``asn evaluate`` of one snapshot (learning_curve's), then the Figure 5 measure of its predictions."""
    from asn.figure5 import area_ratios

    scores = evaluate_snapshot(args, snapshot, out)
    predictions = json.loads((out / "predictions.json").read_text())
    result = area_ratios(*gt, predictions, occluded_above=args.occluded_above, iou_match=args.iou_match,
                         match=args.match, score_threshold=args.score_threshold)
    result.pop("instances")
    result.pop("definition")
    return {**result, "amodal_ap": scores["amodal_ap"], "det_ap": scores["det_ap"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/figure5.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--variants", nargs="+", default=["mrcnn", "mrcnn_asn"], help="one long run each (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--profile", default="smoke", help="the params.yaml profile the schedule goes to (default smoke)")
    parser.add_argument("--iterations", type=int, default=1200, help="length of the long run (default: %(default)s)")
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 1100], help="lr steps (default: %(default)s)")
    parser.add_argument("--every", type=int, default=200, help="snapshot period in iterations (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other override")
    parser.add_argument("--trunk", type=Path, default=ROOT / "models" / "trunk" / "trunk.pt",
                        help="the shared trunk (model.init: trunk; default: %(default)s)")
    parser.add_argument("--gt", type=Path, default=ROOT / "data" / "normalized")
    parser.add_argument("--train-images", type=Path, default=ROOT / "data" / "raw" / "training" / "image_2")
    parser.add_argument("--test-images", type=Path, default=ROOT / "data" / "raw" / "testing" / "image_2")
    parser.add_argument("--occluded-above", type=float, default=0.05, help="occlusion ratio of an occluded instance")
    parser.add_argument("--iou-match", type=float, default=0.5, help="amodal IoU to match a detection (default 0.5)")
    parser.add_argument("--match", choices=("box", "mask"), default="box", help="IoU of amodal boxes or masks (default box)")
    parser.add_argument("--score-threshold", type=float, default=0.0, help="detections below it are left out")
    parser.add_argument("--work", type=Path, default=Path("/tmp/asn-figure5"), help="run folders (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue the runs in --work (after a kill)")
    parser.add_argument("--evaluate-only", action="store_true", help="do not train: score the snapshots in --work")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "figures" / "figure5.json", help="JSON path")
    args = parser.parse_args(argv)
    if args.every < 1 or args.iterations < 1:
        parser.error("--every and --iterations must be >= 1")
    if args.iterations % args.every:
        parser.error("--iterations must be a multiple of --every (the last snapshot is the end of the run)")
    for path in (args.gt / "test_amodal.json", args.gt / "test_inmodal.json"):
        if not path.is_file():
            parser.error(f"{path}: not found (run `dvc repro convert` first, or pass --gt)")

    from asn.config import load_params
    from asn.io import read_json
    from asn.tracking import git_commit

    gt = (read_json(args.gt / "test_amodal.json"), read_json(args.gt / "test_inmodal.json"))
    params = load_params(args.params, args.set)
    started = time.perf_counter()
    runs = []
    for variant in args.variants:
        run_dir = args.work / f"{variant}-{args.seed}"
        snap_dir = run_dir / "snapshots"
        snap_dir.mkdir(parents=True, exist_ok=True)
        command = train_command(args, variant, run_dir)
        train_seconds = None if args.evaluate_only else train_with_snapshots(
            command, run_dir, snap_dir, iterations=args.iterations, every=args.every, resume=args.resume)
        snapshots = sorted((p for p in snap_dir.glob("it*.pt") if int(p.stem[2:]) % args.every == 0),
                           key=lambda p: int(p.stem[2:]))
        if not snapshots:
            raise SystemExit(f"no snapshot it<N>.pt with N a multiple of {args.every} in {snap_dir}")
        rows = []
        for snapshot in snapshots:
            iteration = int(snapshot.stem[2:])
            start = time.perf_counter()
            row = {"iteration": iteration, **score_snapshot(args, snapshot, run_dir / f"eval{iteration}", gt)}
            row["eval_seconds"] = round(time.perf_counter() - start, 1)
            rows.append(row)
            print(f"{variant} iteration {iteration}: predicted / true amodal area {row['mean_ratio']} over "
                  f"{row['n_matched']} of {row['n_occluded']} occluded instances, amodal AP {row['amodal_ap']:.2f}",
                  file=sys.stderr)
        runs.append({"variant": variant, "seed": args.seed, "train_command": "asn " + " ".join(command[3:]),
                     "trained_here": not args.evaluate_only,
                     "train_wall_seconds": None if train_seconds is None else round(train_seconds, 1),
                     "snapshots": rows})
    from asn.figure5 import DEFINITION, plot

    result = {
        "figure": "Figure 5 (Qi et al., CVPR 2019), measured: predicted amodal area of occluded instances over "
                  "training iterations (synthetic data, not KINS)" if params.get("data", {}).get("source") != "kins"
                  else "Figure 5 (Qi et al., CVPR 2019), measured on KINS",
        "command": "python bench/figure5.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data_source": str(params.get("data", {}).get("source", "synthetic")), "profile": args.profile,
        "git_commit": git_commit(paths=["src", "bench", "params.yaml"]),
        "schedule": {"iterations": args.iterations, "steps": args.steps, "every": args.every, "set": args.set},
        "options": {"occluded_above": args.occluded_above, "iou_match": args.iou_match, "match": args.match,
                    "score_threshold": args.score_threshold},
        "definition": DEFINITION, "wall_s": round(time.perf_counter() - started, 1), "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result, indent=True)
    plot(runs, args.out.with_suffix(".png"),
         title=f"Figure 5 measured: {', '.join(args.variants)} seed {args.seed}, {args.profile} profile, "
               f"{'synthetic world (not KINS)' if result['data_source'] != 'kins' else 'KINS'}")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
