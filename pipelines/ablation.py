"""Prefect flow `asn-ablation`: a named sweep (paper Tables 4-7) or a custom list of variants,
trained and evaluated over seeds, summarised in reports/tables/<table>.md/.csv and in MLflow.

Each (arm, seed) is one task, `train-evaluate`, that runs `asn train` then `asn evaluate` with
the command lines of the DVC stages (dvc.yaml), plus the arm's and the flow's `--set`
overrides, into `<out>/<arm>-<seed>/` (model) and `<out>/eval/<arm>-<seed>/` (metrics); the
MLflow run of each lands in experiment `<table>`. The flow then builds the table with
asn.eval.seeds (mean ± sample variance over seeds) and logs it as the parent run of those runs.
The sweep logic (definitions in params.yaml `sweeps:`, validation, cache keys, the table) lives
in asn.sweeps; this file is the orchestration only.

A job that is the same model as a Table 4 model of the DVC pipeline (asn.sweeps.table4_reuse:
the same params hash, trunk included, and train data hash in `models/<variant>-<seed>/checkpoint.pt`,
which dvc.lock records as up to date) is not trained again: it takes that checkpoint, and its
`reports/eval/<variant>-<seed>/metrics.json` when they score the same eval options; the table
marks those rows (`--no-reuse` / reuse_table4=False trains everything). The table's header and
JSON give the flow run's wall time and how each job came about (trained, reused, cached).

Task options:
- caching: keyed on the task's source plus asn.sweeps' job identity (params hash of the
  resolved run, eval options, train and test data hashes, the code of asn train / evaluate, arm,
  seed, table, output folders). Results persist in Prefect's result storage
  (PREFECT_LOCAL_STORAGE_PATH, by default $PREFECT_HOME/storage), so an identical second run,
  in the same or a later flow run, is served from the cache without training;
- retries: one retry after RETRY_DELAY_S for transient failures (a crash, a process killed
  for memory), continuing from the last checkpoint (`asn train --resume`); a bad input (exit
  code 2) or a deliberate stop (SIGTERM / SIGINT: a cancelled flow run) is not retried;
- concurrency: at most `max_parallel` jobs at once (default 1: one training already uses every
  core of a CPU machine, and one GPU fits one job comfortably). Each job runs in its own process,
  so parallel jobs never share torch's global RNG or thread settings.

Run it: with a server and worker (`make prefect`, then
`prefect deployment run 'asn-ablation/table6' --param seeds='[0,1]'`), or in this process
without a server: `python pipelines/ablation.py --table table6 --seeds 0 1` (Prefect then starts
a temporary local API for the run).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from prefect import flow, get_run_logger, task
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from asn.errors import AsnError

FLOW_NAME = "asn-ablation"
RETRY_DELAY_S = 30
# Threads only wait on the job processes; max_parallel (a flow parameter) is the real limit.
MAX_THREADS = 16


class JobRefused(AsnError):
    """`asn train` / `asn evaluate` exited 2: bad input, which a retry would not fix.

    One plain message (unlike InputError's three fields), so it pickles into a task's state."""


class JobStopped(RuntimeError):
    """The job process was stopped by SIGTERM / SIGINT: a cancelled flow run or a stopped worker,
    not a transient failure, so it is not retried."""


def _cache_key(context, parameters: dict[str, Any]) -> str:
    """The job's identity hash, computed by asn.sweeps.plan in the flow (see the module doc)."""
    return parameters["job"]["cache_key"]


def _is_transient(task_, task_run, state) -> bool:
    """Retry unless the job failed on bad input (asn's exit code 2 / an AsnError), which fails
    again, or was stopped on purpose (JobStopped)."""
    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        try:
            error = state.result(raise_on_failure=False)
        except Exception as exc:  # a result that cannot be read is not worth a retry decision
            error = exc
    return not isinstance(error, (AsnError, JobStopped))


def _run_asn(argv: list[str], what: str, logger) -> None:
    """Run `asn <argv>` in a process of its own, its output into the task log.

    `python -m asn.sweeps` is asn.cli.main (the code path of the DVC stages) that also ends
    when this process ends (asn.sweeps.exit_with_parent), so a cancelled flow run leaves no
    training behind."""
    command = [sys.executable, "-m", "asn.sweeps", *argv]
    logger.info("%s: %s", what, " ".join(command))
    env = dict(os.environ, PYTHONUNBUFFERED="1", ASN_PARENT_PID=str(os.getpid()))
    tail: collections.deque[str] = collections.deque(maxlen=30)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               bufsize=1)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                logger.info(line)
        code = process.wait()
    finally:
        if process.poll() is None:  # cancelled or interrupted: leave no training behind
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    if code == 2:
        last = tail[-1] if tail else "bad input"
        raise JobRefused(f"{what}: asn {argv[0]} refused its input (exit 2): {last}")
    if code in (-signal.SIGTERM, -signal.SIGINT):
        raise JobStopped(f"{what}: asn {argv[0]} was stopped by signal {-code} (cancelled?)")
    if code != 0:
        raise RuntimeError(f"{what}: asn {argv[0]} failed with exit code {code}:\n" + "\n".join(tail))


@task(
    name="train-evaluate",
    task_run_name="{arm}-seed{seed}",
    cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=_cache_key),
    persist_result=True,
    result_serializer="json",
    retries=1,
    retry_delay_seconds=RETRY_DELAY_S,
    retry_condition_fn=_is_transient,
)
def train_evaluate(arm: str, seed: int, job: dict[str, Any]) -> dict[str, Any]:
    """Train one (arm, seed) and evaluate it; returns its metrics.json and where its files are.

    A job that is a Table 4 model (``job["reuse"]``, decided by asn.sweeps.table4_reuse) is not
    trained: it takes that checkpoint, and its metrics.json too when they apply, else it
    evaluates the checkpoint into its own folder."""
    from prefect.runtime import task_run

    logger = get_run_logger()
    start = time.perf_counter()
    reuse = job.get("reuse")
    model_dir, eval_dir = Path(job["model_dir"]), Path(job["eval_dir"])
    if reuse is None:
        # a retry continues the interrupted training from its last checkpoint
        resume = int(task_run.run_count or 1) > 1
        train_argv = list(job["train_argv"]) + (["--resume"] if resume else [])
        _run_asn(train_argv, f"train {arm} seed {seed}", logger)
    else:
        model_dir = Path(reuse["checkpoint"]).parent
        logger.info("%s seed %s: reused from Table 4 %s (same params hash and train data hash; not trained again)",
                    arm, seed, reuse["name"])
    if reuse is not None and reuse.get("metrics"):
        eval_dir = Path(reuse["metrics"]).parent
        logger.info("%s seed %s: Table 4's metrics of %s apply as they are (%s)", arm, seed, reuse["name"],
                    reuse["metrics"])
    else:
        if reuse is not None and reuse.get("note"):
            logger.info("%s seed %s: evaluating the reused checkpoint again: %s", arm, seed, reuse["note"])
        _run_asn(list(job["evaluate_argv"]), f"evaluate {arm} seed {seed}", logger)
    metrics = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
    summary_path = model_dir / "train_summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() or reuse is None else {}
    if job.get("params_hash") and summary and summary.get("params_hash") != job["params_hash"]:
        logger.warning("%s seed %s: trained with params hash %s, the flow predicted %s (device or AMP differ?)",
                       arm, seed, str(summary.get("params_hash"))[:12], job["params_hash"][:12])
    return {"arm": arm, "seed": seed, "variant": job["variant"], "model_dir": str(model_dir),
            "eval_dir": str(eval_dir), "params_hash": summary.get("params_hash"),
            "data_hash": summary.get("data_hash"), "metrics": metrics,
            "reused_from": reuse["name"] if reuse else None, "reused_metrics": bool(reuse and reuse.get("metrics")),
            "reuse_note": (reuse or {}).get("note") or "", "seconds": round(time.perf_counter() - start, 1)}


def _flow_run_label() -> str:
    try:
        from prefect.runtime import flow_run

        return f"{flow_run.name} ({flow_run.id})" if flow_run.id else ""
    except Exception:  # outside a flow run
        return ""


@flow(name=FLOW_NAME, task_runner=ThreadPoolTaskRunner(max_workers=MAX_THREADS), log_prints=True)
def ablation(
    table: str = "table4",
    variants: Optional[list[str]] = None,
    seeds: Optional[list[int]] = None,
    overrides: Optional[dict[str, Any]] = None,
    profile: Optional[str] = None,
    params_path: str = "params.yaml",
    gt_dir: str = "data/normalized",
    images_dir: str = "data/raw/training/image_2",
    test_images_dir: str = "data/raw/testing/image_2",
    trunk: str = "models/trunk/trunk.pt",
    out_dir: Optional[str] = None,
    reports_dir: str = "reports/tables",
    max_parallel: int = 1,
    tracking: bool = True,
    reuse_table4: bool = True,
    table4_models: str = "models",
    table4_eval: str = "reports/eval",
    dvc_lock: str = "dvc.lock",
) -> dict[str, Any]:
    """Train and evaluate every (arm, seed) of a sweep, then write its table and MLflow parent run.

    Args:
        table: table4 | table5 | table6 | table7 | inference_order (params.yaml sweeps.<table>) | custom.
        variants: the arms of table=custom, one per model variant (e.g. [mrcnn, mrcnn_asn]).
        seeds: seeds of every arm (default: params.yaml sweeps.seeds, 0..4).
        overrides: dotted params.yaml keys -> values, e.g. {"profiles.smoke.train.iterations": 50};
            string values are read as YAML like `--set`. Arms' own settings win over these.
        profile: params.yaml profile (smoke | paper); default: params.yaml `profile`.
        params_path, gt_dir, images_dir, test_images_dir: inputs, as in dvc.yaml.
        trunk: the shared pretrained trunk the smoke profile starts every model from (its sha256
            is part of every job's cache key).
        out_dir: models in <out_dir>/<arm>-<seed>/, metrics in <out_dir>/eval/<arm>-<seed>/
            (default runs/<table>).
        reports_dir: where <table>.md/.csv/.json/.png go.
        max_parallel: jobs running at once (each trains in its own process).
        tracking: log to MLflow (store: MLFLOW_TRACKING_URI, else ./mlflow.db).
        reuse_table4: a job that is the same model as a Table 4 model of the DVC pipeline (same
            params hash and train data hash in its checkpoint, which dvc.lock records as up to
            date) reuses it instead of training (asn.sweeps.table4_reuse); the table says so.
        table4_models, table4_eval, dvc_lock: where those models, their metrics and dvc.lock are.
    """
    from asn import sweeps
    from asn.errors import InputError

    logger = get_run_logger()
    started = time.perf_counter()
    if not isinstance(max_parallel, int) or not 1 <= max_parallel <= MAX_THREADS:
        raise InputError(sweeps.SOURCE, f"max_parallel: expected 1..{MAX_THREADS}, got {max_parallel!r}")
    plan = sweeps.plan(table=table, variants=variants, seeds=seeds, overrides=overrides, profile=profile,
                       params_path=params_path, gt_dir=gt_dir, images_dir=images_dir,
                       test_images_dir=test_images_dir, out_dir=out_dir, reports_dir=reports_dir,
                       tracking=tracking, trunk=trunk,
                       reuse_from=sweeps.Table4Models(models_dir=Path(table4_models), eval_dir=Path(table4_eval),
                                                      lock=Path(dvc_lock)) if reuse_table4 else None)
    for arm, keys in sweeps.shadowed_overrides(plan).items():
        logger.warning("arm %s sets %s itself: the flow's overrides of these keys do not apply to it", arm, keys)
    logger.info("%s: %d arms x %d seeds = %d jobs, at most %d at a time, into %s",
                table, len(plan.sweep.arms), len(plan.sweep.seeds), len(plan.jobs), max_parallel, plan.out_dir)

    reused = [job for job in plan.jobs if job.reuse is not None]
    if reuse_table4:
        logger.info("%d of %d jobs reuse a Table 4 model (%d with its metrics)", len(reused), len(plan.jobs),
                    sum(1 for job in reused if job.reuse.metrics is not None))
        for job in plan.jobs:
            if job.reuse is None and job.reuse_note and not job.reuse_note.startswith("no Table 4 model"):
                logger.info("%s seed %s is trained: %s", job.arm.name, job.seed, job.reuse_note)

    futures, running = [], []
    for job in plan.jobs:
        while len(running) >= max_parallel:
            finished = next(iter(as_completed(running)))
            running.remove(finished)
        payload = {"cache_key": job.cache_key, "variant": job.arm.variant, "model_dir": str(job.model_dir),
                   "eval_dir": str(job.eval_dir), "params_hash": job.identity.get("params_hash"),
                   "train_argv": sweeps.train_argv(plan, job, tracking=tracking),
                   "evaluate_argv": sweeps.evaluate_argv(plan, job, tracking=tracking),
                   "reuse": job.reuse.as_dict() if job.reuse is not None else None}
        future = train_evaluate.submit(job.arm.name, job.seed, payload)
        futures.append((job, future))
        running.append(future)

    results, failed, cached = [], [], []
    for job, future in futures:
        future.wait()
        state = future.state
        if not state.is_completed():
            failed.append(f"{job.arm.name}-seed{job.seed} ({state.name}: {state.message})")
            continue
        if state.name == "Cached":
            cached.append(f"{job.arm.name}-{job.seed}")
        results.append(future.result())
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(futures)} jobs failed; no table written: " + "; ".join(failed))
    logger.info("%d of %d jobs served from the cache", len(cached), len(futures))

    timing = sweeps.timing_summary(results, wall_s=time.perf_counter() - started, cached=cached)
    written = sweeps.write_table(plan, results, flow_run=_flow_run_label(), tracking=tracking, timing=timing)
    logger.info("wrote %s and %s; %s", written["md"], written["csv"], sweeps.timing_line(timing))
    return {"table": table, "md": written["md"], "csv": written["csv"], "json": written["json"],
            "png": written["png"], "jobs": len(futures), "cached": cached, "timing": timing,
            "reused": [f"{r['arm']}-{r['seed']}" for r in results if r.get("reused_from")],
            "runs": [{"arm": r["arm"], "seed": r["seed"], "model_dir": r["model_dir"], "eval_dir": r["eval_dir"],
                      "amodal_ap": r["metrics"].get("amodal_ap")} for r in results]}


def main(argv: Optional[list[str]] = None) -> int:
    """`python pipelines/ablation.py --table table6 --seeds 0 1`: the flow in this process."""
    import argparse

    parser = argparse.ArgumentParser(prog="pipelines/ablation.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default="table4", help="table4 | table5 | table6 | table7 | inference_order | custom (default: %(default)s)")
    parser.add_argument("--variants", nargs="+", help="the variants of --table custom")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: params.yaml sweeps.seeds)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set profiles.smoke.train.iterations=50 (repeatable)")
    parser.add_argument("--profile", help="params.yaml profile (default: params.yaml `profile`)")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: %(default)s)")
    parser.add_argument("--gt", default="data/normalized", help="normalized ground truth (default: %(default)s)")
    parser.add_argument("--images", default="data/raw/training/image_2", help="train images (default: %(default)s)")
    parser.add_argument("--test-images", default="data/raw/testing/image_2", help="test images (default: %(default)s)")
    parser.add_argument("--trunk", default="models/trunk/trunk.pt", help="the shared trunk (default: %(default)s)")
    parser.add_argument("--out", help="output root (default: runs/<table>)")
    parser.add_argument("--reports", default="reports/tables", help="table folder (default: %(default)s)")
    parser.add_argument("--max-parallel", type=int, default=1, help="jobs at once (default: %(default)s)")
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    parser.add_argument("--no-reuse", action="store_true",
                        help="train every job, even one that is the same model as a Table 4 model of the DVC pipeline")
    parser.add_argument("--table4-models", default="models", help="the Table 4 models (default: %(default)s)")
    parser.add_argument("--table4-eval", default="reports/eval", help="their metrics (default: %(default)s)")
    parser.add_argument("--dvc-lock", default="dvc.lock", help="dvc.lock recording them (default: %(default)s)")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.overrides:
        if "=" not in item:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        overrides[key] = value
    from asn import sweeps

    try:
        # the same checks the flow starts with, before Prefect spins up a temporary API for nothing
        sweeps.plan(table=args.table, variants=args.variants, seeds=args.seeds, overrides=overrides or None,
                    profile=args.profile, params_path=args.params, hash_data=False)
        result = ablation(table=args.table, variants=args.variants, seeds=args.seeds, overrides=overrides or None,
                          profile=args.profile, params_path=args.params, gt_dir=args.gt, images_dir=args.images,
                          test_images_dir=args.test_images, trunk=args.trunk, out_dir=args.out,
                          reports_dir=args.reports, max_parallel=args.max_parallel, tracking=not args.no_tracking,
                          reuse_table4=not args.no_reuse, table4_models=args.table4_models,
                          table4_eval=args.table4_eval, dvc_lock=args.dvc_lock)
    except AsnError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"asn-ablation: {result['jobs']} jobs ({len(result['cached'])} from the cache, {len(result['reused'])} "
          f"reused from Table 4) in {result['timing']['wall_s']} s; wrote {result['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
