"""MLflow tracking: one run per (variant, seed) opened by `asn train` and completed by
`asn evaluate` (params, hashes, commit, loss curves, metrics, artifacts), found from the metrics
JSON's deterministic run key; an unreachable store reported once while every file is still
written; the aggregate as a parent run of the per-seed runs."""

from __future__ import annotations

import json
import shutil
import socket

import pytest

from engine_helpers import PARAMS, ROOT, env, make_world, sets


@pytest.fixture(scope="session")
def template_store(tmp_path_factory):
    """An initialised sqlite store (schema migrations take seconds), copied per test."""
    from asn.tracking import Tracker

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    tracker = Tracker(f"sqlite:///{path}")
    assert tracker.experiment_id("warmup") is not None, "could not create an MLflow store"
    return path


@pytest.fixture
def store(template_store, tmp_path):
    path = tmp_path / "mlflow.db"
    shutil.copy(template_store, path)
    return f"sqlite:///{path}"


def client(uri):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def tracked_env(uri):
    variables = env()
    variables.pop("ASN_NO_TRACKING")
    variables["MLFLOW_TRACKING_URI"] = uri
    return variables


def test_run_key_is_deterministic_and_input_sensitive():
    from asn.tracking import run_key

    key = run_key("table4", "mrcnn", 0, "p" * 64, "d" * 64)
    assert key == run_key("table4", "mrcnn", 0, "p" * 64, "d" * 64) and len(key) == 32
    assert len({key, run_key("table5", "mrcnn", 0, "p" * 64, "d" * 64), run_key("table4", "mrcnn", 1, "p" * 64, "d" * 64),
                run_key("table4", "mrcnn", 0, "q" * 64, "d" * 64), run_key("table4", "mrcnn_asn", 0, "p" * 64, "d" * 64)}) == 5


def test_tracker_one_live_run_per_key(store):
    from asn.tracking import Tracker

    tracker = Tracker(store)
    first = tracker.start_run("t", "k", name="a", kind="x", replace=True)
    tracker.log_history(first, [{"iteration": i, "loss": 1.0 / i} for i in range(1, 1201)], "iteration")
    assert tracker.find_run("t", "k") == first
    assert tracker.start_run("t", "k", name="a", kind="x", replace=False) == first  # evaluate reopens it
    second = tracker.start_run("t", "k", name="a", kind="x", replace=True)  # a re-run replaces it
    assert second != first and tracker.find_run("t", "k") == second
    assert [r.info.run_id for r in tracker.runs("t")] == [second]
    assert len(client(store).get_metric_history(first, "loss")) == 1200


def test_sqlite_folder(tmp_path, monkeypatch):
    from asn.tracking import default_uri, sqlite_folder

    assert sqlite_folder(f"sqlite:///{tmp_path / 'mlflow.db'}") == tmp_path.resolve()
    assert sqlite_folder(f"sqlite:///{tmp_path / 'mlflow.db'}?timeout=30") == tmp_path.resolve()
    monkeypatch.chdir(tmp_path)
    assert sqlite_folder("sqlite:///sub/mlflow.db") == tmp_path.resolve() / "sub"  # relative: to the cwd
    assert sqlite_folder(default_uri(ROOT)) == ROOT.resolve()  # the default store: the project folder
    for uri in ("sqlite://", "sqlite:///:memory:", "http://127.0.0.1:5000", "postgresql://u@h/db"):
        assert sqlite_folder(uri) is None, uri


def test_artifacts_go_beside_the_store_not_into_the_project(store, tmp_path):
    """A process in the project folder (every stage, every test's `asn` subprocess) logging to a
    store elsewhere must not create <project>/mlruns: MLflow's default artifact root is
    ./mlruns relative to the current folder, so the tracker sets it from the store's folder."""
    from asn.tracking import Tracker

    name = "artifact-root-check"
    tracker = Tracker(store, root=ROOT)
    run_id = tracker.start_run(name, "k", name="a", kind="x", replace=True)
    assert run_id is not None
    note = tmp_path / "note.txt"
    note.write_text("x")
    tracker.log_artifacts(run_id, [note], "sub")
    assert client(store).get_experiment_by_name(name).artifact_location == (tmp_path / "mlruns" / name).as_uri()
    assert client(store).get_run(run_id).info.artifact_uri.startswith((tmp_path / "mlruns" / name).as_uri() + "/")
    assert (tmp_path / "mlruns" / name / run_id / "artifacts" / "sub" / "note.txt").read_text() == "x"
    assert not (ROOT / "mlruns" / name).exists()


def test_train_then_evaluate_fill_one_run(store, tmp_path):
    world = make_world(tmp_path)
    run, out = tmp_path / "run", tmp_path / "eval"
    common = dict(env=tracked_env(store), cwd=ROOT, capture_output=True, text=True)
    import subprocess
    import sys

    train = subprocess.run([sys.executable, "-m", "asn.cli", "train", "--params", str(PARAMS), "--gt", str(world["gt"]),
                            "--images", str(world["train_images"]), "--out", str(run), "--no-progress",
                            "--variant", "mrcnn_asn", "--seed", "3", *sets()], **common)
    assert train.returncode == 0, train.stderr[-3000:]
    evaluate = subprocess.run([sys.executable, "-m", "asn.cli", "evaluate", "--params", str(PARAMS), "--gt",
                               str(world["gt"]), "--split", "test", "--checkpoint", str(run / "checkpoint.pt"),
                               "--images", str(world["test_images"]), "--out", str(out), "--no-progress",
                               "--set", "eval.workers=0"], **common)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    summary = json.loads((run / "train_summary.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mlflow"] == summary["mlflow"] and metrics["mlflow"]["experiment"] == "table4"

    mlflow_client = client(store)
    experiment = mlflow_client.get_experiment_by_name("table4")
    runs = mlflow_client.search_runs([experiment.experiment_id], filter_string=metrics["mlflow"]["search"])
    assert len(runs) == 1
    found = runs[0]
    assert found.info.status == "FINISHED" and found.info.run_name == "mrcnn_asn-seed3"
    assert found.data.tags["params_hash"] == summary["params_hash"]
    assert found.data.tags["data_hash"] == summary["data_hash"]
    assert found.data.tags["git_commit"]
    assert found.data.params["model.variant"] == "mrcnn_asn" and found.data.params["train.seed"] == "3"
    history = mlflow_client.get_metric_history(found.info.run_id, "loss")
    assert [m.step for m in history] == list(range(1, 9))
    assert found.data.metrics["amodal_ap"] == pytest.approx(metrics["amodal_ap"])
    # the scene-order scores land in MLflow too (a null accuracy, no matched pair, is not logged)
    assert found.data.metrics["order_pairs"] == metrics["order_pairs"] > 0
    for key in ("order_pair_accuracy", "order_pair_coverage", "order_cluster_accuracy", "order_cluster_coverage"):
        assert found.data.metrics.get(key) == (None if metrics[key] is None else pytest.approx(metrics[key])), key
    artifacts = {a.path for folder in ("train", "checkpoint", "eval")
                 for a in mlflow_client.list_artifacts(found.info.run_id, folder)}
    assert {"train/train_log.csv", "checkpoint/checkpoint.pt", "eval/metrics.json", "eval/per_class.csv"} <= artifacts
    # the commands ran in the project folder, the artifacts went beside the temporary store
    assert found.info.artifact_uri.startswith((tmp_path / "mlruns").as_uri() + "/")
    assert (tmp_path / "mlruns" / "table4" / found.info.run_id / "artifacts" / "eval" / "metrics.json").is_file()
    # `asn runs --metrics` finds the run behind the metrics file
    shown = subprocess.run([sys.executable, "-m", "asn.cli", "runs", "--metrics", str(out / "metrics.json"), "--json"],
                           **common)
    assert shown.returncode == 0, shown.stderr
    assert [row["run_id"] for row in json.loads(shown.stdout)] == [found.info.run_id]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_store_down_is_reported_once_and_files_are_written(tmp_path):
    import subprocess
    import sys

    world = make_world(tmp_path)
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "asn.cli", "train", "--params", str(PARAMS), "--gt", str(world["gt"]),
                           "--images", str(world["train_images"]), "--out", str(run), "--no-progress",
                           *sets("profiles.smoke.train.iterations=2", "profiles.smoke.train.steps=[1]")],
                          env=tracked_env(f"http://127.0.0.1:{_closed_port()}"), cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("mlflow: tracking off") == 1, proc.stderr[-3000:]
    for name in ("checkpoint.pt", "train_log.csv", "train_summary.json", "config.json", "label_map.json"):
        assert (run / name).is_file(), name


def _fake_metrics(root, variant, seed, amodal):
    folder = root / f"{variant}-{seed}"
    folder.mkdir(parents=True)
    metrics = {"det_ap": amodal + 1.0, "amodal_ap": amodal, "inmodal_ap": amodal - 1.0,
               "run": {"profile": "smoke", "variant": variant, "seed": seed},
               "mlflow": {"experiment": "table4", "run_key": f"{variant}{seed}".ljust(32, "0")}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_aggregate_parent_run_and_children(store, tmp_path):
    from asn.tracking import Tracker

    tracker = Tracker(store)
    children = {}
    for variant in ("mrcnn", "mrcnn_asn"):
        for seed in (0, 1):
            key = f"{variant}{seed}".ljust(32, "0")
            children[key] = tracker.start_run("table4", key, name=f"{variant}-seed{seed}", kind="train+evaluate",
                                              replace=True)
            _fake_metrics(tmp_path / "eval", variant, seed, 10.0 + seed + (2.0 if variant == "mrcnn_asn" else 0.0))
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "asn.cli", "aggregate", "--params", str(PARAMS), "--eval",
                           str(tmp_path / "eval"), "--out", str(tmp_path / "tables"),
                           "--set", "table4.variants=[mrcnn, mrcnn_asn]", "--set", "table4.seeds=[0, 1]"],
                          env=tracked_env(store), cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parent = [r for r in tracker.runs("table4") if r.data.tags.get("asn.kind") == "aggregate"]
    assert len(parent) == 1
    parent_id = parent[0].info.run_id
    for run_id in children.values():
        assert client(store).get_run(run_id).data.tags.get("mlflow.parentRunId") == parent_id
    artifacts = {a.path for a in client(store).list_artifacts(parent_id, "table")}
    assert {"table/table4.md", "table/table4.png", "table/table4.csv"} <= artifacts
    assert client(store).get_run(parent_id).info.artifact_uri.startswith((tmp_path / "mlruns").as_uri() + "/")


def test_only_rank_zero_and_opt_out(monkeypatch, store):
    from asn.tracking import Tracker

    monkeypatch.setenv("RANK", "1")  # set by torchrun on the second process
    assert not Tracker(store).enabled
    assert Tracker(store).start_run("t", "k", name="a", kind="x", replace=True) is None
    monkeypatch.setenv("RANK", "0")
    assert Tracker(store).enabled
    monkeypatch.setenv("ASN_NO_TRACKING", "1")
    assert not Tracker(store).enabled


def test_runs_command_errors(tmp_path, store):
    import subprocess
    import sys

    bad = tmp_path / "metrics.json"
    bad.write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "asn.cli", "runs", "--metrics", str(bad)], env=tracked_env(store),
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "no `mlflow` run reference" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "asn.cli", "runs", "--experiment", "nope"], env=tracked_env(store),
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "no experiment 'nope'" in proc.stderr
