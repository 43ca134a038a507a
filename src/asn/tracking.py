"""MLflow tracking of every run, never in the way of the files a stage must write.

Store: ``MLFLOW_TRACKING_URI`` when set (a shared server, PostgreSQL behind it), otherwise an
embedded sqlite store in the project folder (``sqlite:///<cwd>/mlflow.db``, artifacts under
``<cwd>/mlruns``; both ignored by git). ``make ui`` browses it. Any sqlite store keeps its
artifacts beside its database file (``<folder of the .db>/mlruns/<experiment>``), whatever the
current folder: a store in a temporary folder (the tests') leaves nothing in the project.

One experiment per table (``table4``, ``table5``, ...); one run per (variant, seed), opened by
``asn train`` and completed by ``asn evaluate``; the aggregate of a table is a parent run that
holds the table and figure, its per-seed runs tagged as its children.

Run keys: MLflow run ids are random, so writing one into a DVC-tracked metrics file would make
that file differ between two identical runs (and ``dvc.lock`` with it). Each run is instead
tagged ``asn.run_key``, a hash of (experiment, variant, seed, params hash, data hash), and that
key is what the metrics JSON carries: deterministic, and found in the MLflow UI with the search
``tags."asn.run_key" = '<key>'`` or ``asn runs --key <key>``. A stage restored from DVC's
run-cache therefore still names its run.

Failure policy: if the store cannot be reached (bad URI, server down, locked database), the
first error is printed once to stderr, tracking is switched off for the rest of the process,
and training / evaluation go on to write all their files. Under DDP only rank 0 logs.
``--no-tracking`` or ``ASN_NO_TRACKING=1`` switch tracking off.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

KEY_TAG = "asn.run_key"
KIND_TAG = "asn.kind"
# Fail fast on an unreachable server instead of MLflow's default minutes of retries.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
_QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "GIT_PYTHON_REFRESH": "quiet"}


def run_key(experiment: str, variant: str, seed: int, params_hash: str, data_hash: str) -> str:
    """Deterministic key of one (variant, seed) run: same inputs, same key, on any machine."""
    text = "\n".join([experiment, variant, str(int(seed)), params_hash, data_hash])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def default_uri(root: str | Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` or the embedded sqlite store of the project folder."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if uri:
        return uri
    return "sqlite:///" + str((Path(root) if root else Path.cwd()).resolve() / "mlflow.db")


def sqlite_folder(uri: str) -> Optional[Path]:
    """The folder holding the database file of a ``sqlite:`` store URI (absolute), else None.

    ``sqlite:////abs/mlflow.db`` -> ``/abs``; ``sqlite:///rel/mlflow.db`` -> ``<cwd>/rel`` (as
    sqlite opens it); an in-memory store (``sqlite://``, ``sqlite:///:memory:``) or another
    scheme -> None.
    """
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:"):]
    if not rest.startswith("///"):
        return None  # "sqlite://": in memory (or a form without a file path)
    path = rest[3:].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).resolve().parent


def git_commit(cwd: str | Path | None = None, paths: Iterable[str] = ()) -> str:
    """The checked-out commit, with ``+dirty`` when tracked files (under ``paths``, when given:
    the code and params, not the outputs a running pipeline is rewriting) differ; else ``unknown``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *paths], cwd=cwd,
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params -> ``{"model.variant": "mrcnn", ...}`` strings (MLflow's param form)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            text = str(list(value) if isinstance(value, tuple) else value)
            flat[name] = text[:6000]  # MLflow's param value limit
    return flat


class Tracker:
    """A thin, failure-tolerant wrapper over ``mlflow.MlflowClient``.

    Every public method returns quietly (None / False) once tracking is off; the first failure
    is reported once as ``mlflow: tracking off (<uri>): <reason>; ...``.
    """

    def __init__(self, uri: Optional[str] = None, *, enabled: bool = True, root: str | Path | None = None):
        self.root = Path(root) if root else Path.cwd()
        self.uri = uri or default_uri(self.root)
        # ASN_NO_TRACKING=1 switches tracking off (the test suite's default, like --no-tracking)
        off = os.environ.get("ASN_NO_TRACKING", "").strip().lower() in ("1", "true", "yes")
        self.enabled = enabled and _is_rank0() and not off
        self._client = None
        self._warned = False

    # -- plumbing -----------------------------------------------------------------------------
    def _fail(self, error: BaseException) -> None:
        if not self._warned:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"mlflow: tracking off ({self.uri}): {type(error).__name__}: {reason[:300]}; "
                  f"the run's files are written anyway", file=sys.stderr, flush=True)
            self._warned = True
        self.enabled = False

    @property
    def client(self):
        if self._client is None:
            for key, value in {**_HTTP_DEFAULTS, **_QUIET}.items():
                os.environ.setdefault(key, value)
            import logging

            import mlflow

            for name in ("mlflow", "alembic", "sqlalchemy"):
                logging.getLogger(name).setLevel(logging.WARNING)
            self._client = mlflow.MlflowClient(tracking_uri=self.uri)
        return self._client

    def _guard(self, fn, *args, **kwargs):
        if not self.enabled:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as error:  # any store failure: report once, keep the run going
            self._fail(error)
            return None

    # -- experiments and runs -----------------------------------------------------------------
    def experiment_id(self, name: str) -> Optional[str]:
        def get() -> str:
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                if found.lifecycle_stage == "deleted":
                    self.client.restore_experiment(found.experiment_id)
                return found.experiment_id
            location = None
            if self.uri.startswith("sqlite:"):
                # Without a server, artifacts would land relative to the current folder: they go
                # beside the database file instead (the project folder for the default store).
                folder = sqlite_folder(self.uri) or self.root.resolve()
                location = (folder / "mlruns" / name).as_uri()
            return self.client.create_experiment(name, artifact_location=location)
        return self._guard(get)

    def find_run(self, experiment: str, key: str) -> Optional[str]:
        """The id of the live run tagged ``asn.run_key = key`` in ``experiment``, if any."""
        def find() -> Optional[str]:
            exp_id = self.experiment_id(experiment)
            if exp_id is None:
                return None
            runs = self.client.search_runs([exp_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'",
                                           order_by=["attributes.start_time DESC"], max_results=1)
            return runs[0].info.run_id if runs else None
        return self._guard(find)

    def start_run(self, experiment: str, key: str, *, name: str, kind: str, replace: bool,
                  tags: Optional[Mapping[str, str]] = None) -> Optional[str]:
        """Open the run of ``key``: a fresh one when ``replace`` (the old one is deleted, so one
        live run per key remains), else the existing one (created when missing)."""
        def start() -> Optional[str]:
            existing = self.find_run(experiment, key)
            if not self.enabled:
                return None
            if existing and not replace:
                self.client.update_run(existing, status="RUNNING")
                return existing
            if existing:
                self.client.delete_run(existing)
            exp_id = self.experiment_id(experiment)
            if exp_id is None:
                return None
            all_tags = {KEY_TAG: key, KIND_TAG: kind, "mlflow.runName": name, **(tags or {})}
            run = self.client.create_run(exp_id, tags=all_tags, run_name=name)
            return run.info.run_id
        return self._guard(start)

    def log_params(self, run_id: Optional[str], params: Mapping[str, Any]) -> None:
        if run_id is None:
            return
        from mlflow.entities import Param

        flat = flatten(params)
        items = [Param(k, v) for k, v in sorted(flat.items())]

        def log() -> None:
            existing = self.client.get_run(run_id).data.params
            fresh = [p for p in items if p.key not in existing]
            for start in range(0, len(fresh), 100):
                self.client.log_batch(run_id, params=fresh[start:start + 100])
        self._guard(log)

    def set_tags(self, run_id: Optional[str], tags: Mapping[str, Any]) -> None:
        if run_id is None:
            return
        self._guard(lambda: [self.client.set_tag(run_id, k, str(v)) for k, v in tags.items()])

    def log_metrics(self, run_id: Optional[str], metrics: Mapping[str, float], step: int = 0) -> None:
        if run_id is None:
            return
        self.log_history(run_id, [{"step": step, **metrics}], step_key="step")

    def log_history(self, run_id: Optional[str], rows: Iterable[Mapping[str, float]], step_key: str) -> None:
        """Metric history, one point per (row, column), in batches of MLflow's 1000 limit."""
        if run_id is None:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(row[step_key])) for row in rows
                   for k, v in row.items() if k != step_key and isinstance(v, (int, float))]

        def log() -> None:
            for start in range(0, len(metrics), 1000):
                self.client.log_batch(run_id, metrics=metrics[start:start + 1000])
        self._guard(log)

    def log_artifacts(self, run_id: Optional[str], paths: Iterable[str | Path], subdir: Optional[str] = None) -> None:
        if run_id is None:
            return
        for path in paths:
            path = Path(path)
            if path.is_file():
                self._guard(self.client.log_artifact, run_id, str(path), subdir)

    def end_run(self, run_id: Optional[str], status: str = "FINISHED") -> None:
        if run_id is None:
            return
        self._guard(self.client.set_terminated, run_id, status)

    def runs(self, experiment: str) -> list:
        """Live runs of ``experiment`` (MLflow ``Run`` objects), newest first."""
        def search() -> list:
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                return []
            return list(self.client.search_runs([found.experiment_id], max_results=5000,
                                                order_by=["attributes.start_time DESC"]))
        return self._guard(search) or []


def run_reference(experiment: str, key: str) -> dict[str, str]:
    """What a metrics JSON carries to name its MLflow run (deterministic)."""
    return {"experiment": experiment, "run_key": key, "tag": KEY_TAG,
            "search": f"tags.`{KEY_TAG}` = '{key}'"}
