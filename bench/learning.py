"""Learning efficiency: amodal AP against CPU-minutes, from scratch vs from the shared trunk.

The project's learning-efficiency figure (issue 17). For the same variant, seeds and test split,
side by side in one run:

- ``scratch``: ``asn train`` with ``profiles.smoke.model.init=scratch`` (every part random, the
  protocol before the trunk), one long run per seed with snapshots every ``--every`` iterations;
- ``trunk``: the default smoke protocol (``model.init: trunk``, the committed
  ``models/trunk/trunk.pt``), one run per seed with snapshots;
- the trunk's own AP: the pretraining model itself (``asn.engine.trunk.trunk_model``), scored
  on the same test split; its one-time cost is the pretraining's (README, "Measured").

Each snapshot is scored by ``asn evaluate``. CPU time is read from /proc at each snapshot: the
trainer's user + system time plus that of its live loader workers, so it is the CPU the run
spent so far, whatever else the machine did (wall seconds are kept beside it). Because CPU
training is deterministic, a snapshot at iteration N of a long run is the model that run had at
N (the lr decays only near the end of each run: the schedule is part of each row).

Writes ``reports/bench/learning.json`` and ``reports/bench/learning.png``.

    python bench/learning.py --variant mrcnn --seeds 0 --scratch-iterations 1200 --trunk-iterations 400 --every 100
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from asn.io import write_json_atomic  # noqa: E402
from learning_curve import _checkpoint_iteration, evaluate_snapshot  # noqa: E402

CLOCK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                out += [int(p) for p in handle.read().split()]
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (loader workers)."""
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK
        except (OSError, IndexError, ValueError):
            continue
        stack += _children(current)
    return total


def schedule_sets(profile: str, iterations: int) -> list[str]:
    """A run of ``iterations`` with the lr x0.1 at 80 % and 95 % of it (the smoke profile's shape)."""
    steps = [int(iterations * 0.8), int(iterations * 0.95)]
    return [f"profiles.{profile}.train.iterations={iterations}",
            f"profiles.{profile}.train.steps={json.dumps(steps, separators=(',', ':'))}"]


def train_run(args, protocol: str, seed: int, iterations: int, run_dir: Path, snap_dir: Path) -> list[dict]:
    """One ``asn train`` run; every checkpoint is copied aside with its CPU and wall seconds."""
    every = args.trunk_every if protocol == "trunk" and args.trunk_every else args.every
    sets = [f"train.checkpoint_every={every}", *schedule_sets(args.profile, iterations)]
    if protocol == "scratch":
        sets.append(f"profiles.{args.profile}.model.init=scratch")
    command = [sys.executable, "-m", "asn.cli", "train", "--params", str(args.params), "--gt", str(args.gt),
               "--images", str(args.train_images), "--out", str(run_dir), "--variant", args.variant,
               "--seed", str(seed), "--trunk", str(args.trunk), "--no-progress", "--no-tracking"]
    for item in (*sets, *args.set):
        command += ["--set", item]
    print("+", " ".join(command), file=sys.stderr)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / "train.out", "w")
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    checkpoint, seen, snapshots, cpu = run_dir / "checkpoint.pt", None, [], 0.0
    while True:
        done = process.poll() is not None
        if not done:
            cpu = max(cpu, cpu_seconds(process.pid))
        if checkpoint.exists() and checkpoint.stat().st_mtime_ns != seen:
            stamp = checkpoint.stat().st_mtime_ns
            iteration = _checkpoint_iteration(checkpoint)
            if iteration is not None:
                target = snap_dir / f"{protocol}-s{seed}-it{iteration}.pt"
                shutil.copyfile(checkpoint, target)
                snapshots.append({"iteration": iteration, "cpu_seconds": cpu, "wall_seconds": time.perf_counter() - start,
                                  "snapshot": target})
                seen = stamp
        if done:
            break
        time.sleep(0.5)
    log.close()
    if process.returncode != 0:
        raise SystemExit(f"asn train failed (exit {process.returncode}); see {run_dir / 'train.out'}")
    return snapshots


def trunk_checkpoint(trunk: Path, out: Path) -> Path:
    """The trunk's whole pretraining model as a checkpoint that ``asn evaluate`` reads."""
    import torch

    from asn.engine.checkpoint import save_checkpoint
    from asn.engine.trunk import trunk_model

    model, meta = trunk_model(trunk)
    run = {"profile": "smoke", "model": meta["model"], "train": {"seed": meta["provenance"].get("seed", 0)}}
    return save_checkpoint(out, {"model": model.state_dict(), "run": run, "label_map": meta["label_map"],
                                 "variant": meta["variant"], "iteration": meta["provenance"]["iterations"],
                                 "params_hash": None, "data_hash": None})


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 3.8))
    colours = {"scratch": "tab:red", "trunk": "tab:blue"}
    for row in result["runs"]:
        points = row["points"]
        axis.plot([p["cpu_minutes"] for p in points], [p["amodal_ap"] for p in points], marker="o", ms=3,
                  color=colours[row["protocol"]], alpha=0.85,
                  label=f"{row['protocol']} (seed {row['seed']}, {row['iterations']} it.)")
    own = result.get("trunk_own")
    if own:
        axis.axhline(own["amodal_ap"], color="tab:blue", ls="--", lw=0.9,
                     label=f"the trunk itself ({own['amodal_ap']:.1f}; one-time pretraining)")
    axis.axhline(30, color="grey", ls=":", lw=0.8, label="goal (30)")
    axis.set_xlabel("CPU-minutes of the model's own training (user + system, all processes)")
    axis.set_ylabel("amodal AP (%), test split")
    axis.set_title(f"{result['variant']}: from scratch vs from the shared trunk (synthetic world)", fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--gt", type=Path, default=ROOT / "data" / "normalized")
    parser.add_argument("--train-images", type=Path, default=ROOT / "data" / "raw" / "training" / "image_2")
    parser.add_argument("--test-images", type=Path, default=ROOT / "data" / "raw" / "testing" / "image_2")
    parser.add_argument("--trunk", type=Path, default=ROOT / "models" / "trunk" / "trunk.pt")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--variant", default="mrcnn")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--scratch-iterations", type=int, default=1200)
    parser.add_argument("--trunk-iterations", type=int, default=400)
    parser.add_argument("--every", type=int, default=100, help="iterations between snapshots")
    parser.add_argument("--trunk-every", type=int, help="iterations between snapshots of the trunk protocol (default: --every)")
    parser.add_argument("--set", action="append", default=[], help="extra override for both protocols")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "learning.json")
    parser.add_argument("--keep", type=Path, help="keep the runs and snapshots in this folder")
    args = parser.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="asn-learning-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in args.seeds:
        for protocol, iterations in (("trunk", args.trunk_iterations), ("scratch", args.scratch_iterations)):
            snap_dir = work / "snapshots"
            snap_dir.mkdir(exist_ok=True)
            snapshots = train_run(args, protocol, seed, iterations, work / f"{protocol}-{seed}", snap_dir)
            points = []
            for snap in snapshots:
                metrics = evaluate_snapshot(args, snap["snapshot"], work / "eval" / snap["snapshot"].stem)
                points.append({"iteration": snap["iteration"], "cpu_minutes": round(snap["cpu_seconds"] / 60, 3),
                               "wall_minutes": round(snap["wall_seconds"] / 60, 3), **metrics})
                print(f"{protocol} seed {seed} it {snap['iteration']}: amodal AP {metrics['amodal_ap']:.1f} "
                      f"after {snap['cpu_seconds'] / 60:.1f} CPU-min", file=sys.stderr)
            runs.append({"protocol": protocol, "seed": seed, "iterations": iterations, "points": points})
    own_checkpoint = trunk_checkpoint(args.trunk, work / "trunk-model.pt")
    trunk_own = evaluate_snapshot(args, own_checkpoint, work / "eval" / "trunk-own")
    trunk_meta = json.loads((args.trunk.parent / "trunk.json").read_text()) if (args.trunk.parent / "trunk.json").is_file() else {}
    result = {
        "what": "amodal AP on the test split against CPU-minutes of each model's own training, from scratch "
                "vs from the shared pretrained trunk (synthetic world, not KINS)",
        "variant": args.variant, "seeds": args.seeds, "every": args.every, "trunk_every": args.trunk_every or args.every, "overrides": args.set,
        "command": "python bench/learning.py " + " ".join(sys.argv[1:]),
        "cpu": os.cpu_count(), "trunk": {"file": str(args.trunk.relative_to(ROOT)) if args.trunk.is_relative_to(ROOT) else str(args.trunk),
                                         "sha256": trunk_meta.get("sha256"), "provenance": trunk_meta.get("provenance")},
        "trunk_own": trunk_own, "runs": runs,
    }
    write_json_atomic(args.out, result, indent=True)
    plot(result, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
