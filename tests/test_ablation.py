"""The Prefect flow `asn-ablation` (pipelines/ablation.py) and the sweeps behind it (asn.sweeps):
the named sweeps expand into the paper's rows, bad requests fail before anything trains, a real
flow run on a tiny world trains, evaluates, writes the table and the MLflow parent / child runs,
and a second identical run is served from Prefect's cache; and the deployment path end to end
(server, process pool, `prefect deploy --all`, worker, `prefect deployment run --watch`)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine_helpers import PARAMS, ROOT, TINY_SETS, make_world

BIN = Path(sys.executable).parent
# A tiny run: TINY_SETS (tiny widths and images, no loader workers) cut to 2 iterations.
TINY = {**dict(item.split("=", 1) for item in TINY_SETS),
        "profiles.smoke.train.iterations": "2", "profiles.smoke.train.steps": "[1]",
        "profiles.smoke.train.warmup_iterations": "1", "eval.workers": "0", "eval.batch_size": "1"}
QUIET = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
         "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}


def load_pipeline():
    """pipelines/ablation.py as a module (the folder is not a package; Prefect loads it by path too)."""
    if "asn_ablation_flow" not in sys.modules:
        spec = importlib.util.spec_from_file_location("asn_ablation_flow", ROOT / "pipelines" / "ablation.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["asn_ablation_flow"] = module
        spec.loader.exec_module(module)
    return sys.modules["asn_ablation_flow"]


# ----------------------------------------------------------------------------------------------
# (a) sweep definitions and request validation: no server, no training
# ----------------------------------------------------------------------------------------------
def arms_of(table, **kwargs):
    from asn import sweeps

    return sweeps.plan(table=table, params_path=PARAMS, hash_data=False, **kwargs).sweep.arms


def sets_of(arm) -> dict:
    import yaml

    return {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in arm.overrides)}


def test_table4_sweep_is_the_dvc_table4():
    import yaml

    params = yaml.safe_load(PARAMS.read_text())
    arms = arms_of("table4")
    assert [a.name for a in arms] == [a.variant for a in arms] == params["table4"]["variants"]
    assert all(a.overrides == () for a in arms)


def test_table5_arms():
    arms = arms_of("table5")
    assert len(arms) == 10
    assert [a.variant for a in arms[:4]] == ["mrcnn_inmodal", "mrcnn_amodal", "mrcnn", "mrcnn_oc"]
    mlc = [(sets_of(a)["model.mlc_box_level"], sets_of(a)["model.mlc_mask_level"]) for a in arms[4:]]
    assert mlc == [(0, 0), (1, 1), (2, 2), (3, 3), (0, 3), (3, 0)]
    assert all(a.variant == "mrcnn_asn" for a in arms[4:]) and all(a.overrides == () for a in arms[:4])


def test_table6_arms_and_occlusion_accuracy():
    from asn import sweeps

    plan = sweeps.plan(table="table6", params_path=PARAMS, hash_data=False)
    # the paper's first row: Mask R-CNN without OC (MR), then the thresholds on ASN
    first, *arms = plan.sweep.arms
    assert (first.name, first.variant, first.overrides) == ("no_oc", "mrcnn", ())
    thresholds = [sets_of(a)["model.occlusion_threshold"] for a in arms]
    assert thresholds == [0.0, 0.05, 0.15, 0.20] and {a.variant for a in arms} == {"mrcnn_asn"}
    assert plan.sweep.extra_metrics == ("occlusion_accuracy",)
    assert len(plan.jobs) == 5 * 5 and plan.sweep.seeds == (0, 1, 2, 3, 4)


def test_table7_arms_follow_the_paper_rows():
    full = {"model.mlc_variant": "paper", "model.mlc_extraction_fusion": "concat", "model.mlc_order_adjust": True,
            "model.mlc_extraction_convs": 2, "model.mlc_combination_convs": 3}
    from asn import sweeps
    from asn.config import load_params

    arms = arms_of("table7")
    params = load_params(PARAMS)
    codes = []
    for arm in arms:
        knobs = sets_of(arm)
        assert set(knobs) == set(full)  # every arm pins all four parts
        # the paper's code order: 1 extraction fusion, 2 extraction convs, 3 combination fusion, 4 combination convs
        key, note = sweeps.paper_match("table7", sweeps.arm_model(arm, params))
        codes.append(key or note.split(":")[0].split()[0])
    assert len(arms) == 9 and sets_of(arms[0]) == full and arms[0].name == "full"
    assert sorted(codes) == sorted(["1111 (default MLC)", "0111 ADD", "1011", "1011 Order Adjustment", "1011",
                                    "1011 1 CONV", "1011 3 CONV", "1110 1 CONV", "1110"])
    assert len({tuple(sorted(sets_of(a).items())) for a in arms}) == 9  # no two arms alike


def test_custom_sweep_seeds_overrides_and_commands(tmp_path):
    from asn import sweeps

    plan = sweeps.plan(table="custom", variants=["mrcnn", "orcnn"], seeds=[3, 1], profile="smoke",
                       overrides={"train.workers": 0, "profiles.smoke.train.lr": 1e-5, "eval.engine": "pycocotools"},
                       params_path=PARAMS, out_dir=tmp_path / "runs", hash_data=False)
    assert [(j.arm.name, j.seed) for j in plan.jobs] == [("mrcnn", 3), ("mrcnn", 1), ("orcnn", 3), ("orcnn", 1)]
    assert plan.flow_overrides == ("profile=smoke", "train.workers=0", "profiles.smoke.train.lr=1.0e-05",
                                   "eval.engine=pycocotools")
    argv = sweeps.train_argv(plan, plan.jobs[0])
    assert argv[:2] == ["train", "--params"] and argv[argv.index("--out") + 1] == str(tmp_path / "runs" / "mrcnn-3")
    assert argv[argv.index("--experiment") + 1] == "custom" and "profiles.smoke.train.lr=1.0e-05" in argv
    evaluate = sweeps.evaluate_argv(plan, plan.jobs[0], tracking=False)
    assert evaluate[evaluate.index("--out") + 1] == str(tmp_path / "runs" / "eval" / "mrcnn-3")
    assert "--no-tracking" in evaluate and evaluate[evaluate.index("--split") + 1] == "test"
    # an override the arm sets itself is reported (the arm wins)
    table6 = sweeps.plan(table="table6", params_path=PARAMS, hash_data=False,
                         overrides={"model.occlusion_threshold": 0.3})
    assert sweeps.shadowed_overrides(table6) == {a.name: ["model.occlusion_threshold"] for a in table6.sweep.arms[1:]}
    assert sets_of(table6.sweep.arms[1])["model.occlusion_threshold"] == 0.0


@pytest.mark.parametrize("kwargs, message", [
    ({"table": "table9"}, "table: unknown table 'table9'; choose one of table4, table5, table6, table7, inference_order, custom"),
    ({"table": "table6", "overrides": {"model.no_such_knob": 1}}, "unknown parameter 'model.no_such_knob'"),
    ({"table": "table6", "overrides": {"train.lr": 0.1}}, "unknown parameter 'train.lr'"),
    ({"table": "custom"}, "variants: table 'custom' needs a non-empty list of variants"),
    ({"table": "custom", "variants": ["mrcnn", "resnet"]}, "unknown variant 'resnet'"),
    ({"table": "custom", "variants": ["mrcnn", "mrcnn"]}, "repeated variants"),
    ({"table": "table5", "variants": ["mrcnn"]}, "variants: only for table 'custom'"),
    ({"table": "table4", "seeds": []}, "seeds: expected a non-empty list of integers >= 0"),
    ({"table": "table4", "seeds": [0, 0]}, "repeated seeds"),
    ({"table": "table4", "profile": "laptop"}, "unknown profile 'laptop'"),
    ({"table": "table4", "overrides": "train.workers=0"}, "expected a mapping of dotted keys"),
])
def test_bad_requests_fail_clearly(kwargs, message):
    from asn import sweeps
    from asn.errors import InputError

    with pytest.raises(InputError) as error:
        sweeps.plan(params_path=PARAMS, hash_data=False, **kwargs)
    assert message in str(error.value)


def test_bad_sweep_definition_names_its_place(tmp_path):
    from asn import sweeps
    from asn.errors import InputError

    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.read_text() + "\n")
    with pytest.raises(InputError, match=r"sweeps.table6.arms\[1\]: unknown keys \['sett'\]"):
        sweeps.plan(table="table6", params_path=params, hash_data=False,
                    overrides={"sweeps.table6.arms": "[{name: a, variant: mrcnn}, {name: b, variant: mrcnn, sett: {}}]"})
    with pytest.raises(InputError, match="sweeps.table6.compare"):
        sweeps.plan(table="table6", params_path=params, hash_data=False, overrides={"sweeps.table6.compare": "[[a, b]]"})


def test_yaml_text_round_trips():
    import yaml

    from asn.sweeps import yaml_text

    for value in (0.05, 1e-5, 0, True, None, "add", "true", [1, 2], {"fpn_channels": 16, "x": [0.5]}):
        assert yaml.safe_load(yaml_text(value)) == value


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("ablation-world"))


def test_cache_key_follows_what_changes_the_results(world, tmp_path):
    """Same request, same key; a params, eval, data, seed or output change gives another key;
    the loader worker count (not in the params hash) does not."""
    from asn import sweeps

    def keys(seeds=(0,), out="r", gt=world["gt"], **overrides):
        overrides = {"profiles.smoke.model.init": "scratch", **overrides}  # no trunk needed here
        plan = sweeps.plan(table="custom", variants=["mrcnn", "mrcnn_asn"], seeds=list(seeds), params_path=PARAMS,
                           gt_dir=gt, images_dir=world["train_images"], test_images_dir=world["test_images"],
                           out_dir=tmp_path / out, overrides=overrides)
        return [job.cache_key for job in plan.jobs]

    base = keys()
    assert base == keys() and len(set(base)) == 2
    assert keys(**{"train.workers": 0}) == base
    for changed in (keys(**{"profiles.smoke.train.iterations": 7}), keys(**{"eval.mask_threshold": 0.4}),
                    keys(seeds=(1,)), keys(out="elsewhere")):
        assert not set(changed) & set(base)
    other = tmp_path / "gt"
    shutil.copytree(world["gt"], other)
    (other / "test_inmodal.json").write_text((other / "test_inmodal.json").read_text() + " ")
    assert not set(keys(gt=other)) & set(base)


def test_trunk_runs_pass_the_trunk_and_key_its_bytes(world, tmp_path):
    """Arms that start from the shared trunk get --trunk, and their cache key follows its sha256;
    a missing trunk is refused before anything trains."""
    from asn import sweeps
    from asn.errors import InputError

    trunk = tmp_path / "trunk.pt"
    trunk.write_bytes(b"trunk one")

    def plan(**kwargs):
        return sweeps.plan(table="custom", variants=["mrcnn"], seeds=[0], params_path=PARAMS, gt_dir=world["gt"],
                           images_dir=world["train_images"], test_images_dir=world["test_images"],
                           out_dir=tmp_path / "r", trunk=trunk, **kwargs)

    first = plan()
    argv = sweeps.train_argv(first, first.jobs[0])
    assert argv[argv.index("--trunk") + 1] == str(trunk)
    trunk.write_bytes(b"trunk two")
    assert plan().jobs[0].cache_key != first.jobs[0].cache_key
    scratch = plan(overrides={"profiles.smoke.model.init": "scratch"})
    assert scratch.trunk is None and "--trunk" not in sweeps.train_argv(scratch, scratch.jobs[0])
    trunk.unlink()
    with pytest.raises(InputError, match="trunk file not found"):
        plan()


# ----------------------------------------------------------------------------------------------
# (b) the flow for real, on a tiny world, with a temporary Prefect API and MLflow store
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """A temporary Prefect API (sqlite) with result storage in a temporary folder."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-results")
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage, PREFECT_SERVER_ANALYTICS_ENABLED: False}):
        with prefect_test_harness(server_startup_timeout=120):
            yield storage


@pytest.fixture
def tracked(monkeypatch, tmp_path):
    """The job processes inherit this environment: an MLflow store of their own, one thread."""
    for key, value in QUIET.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ASN_NO_TRACKING", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.mark.slow
def test_flow_trains_evaluates_tables_and_caches(world, harness, tracked, tmp_path):
    ablation = load_pipeline().ablation
    kwargs = dict(table="custom", variants=["mrcnn", "mrcnn_asn"], seeds=[0], overrides=TINY,
                  params_path=str(PARAMS), gt_dir=str(world["gt"]), images_dir=str(world["train_images"]),
                  test_images_dir=str(world["test_images"]), out_dir=str(tmp_path / "runs"),
                  reports_dir=str(tmp_path / "tables"))
    first = ablation(**kwargs)
    assert first["jobs"] == 2 and first["cached"] == []
    checkpoints = [tmp_path / "runs" / name / "checkpoint.pt" for name in ("mrcnn-0", "mrcnn_asn-0")]
    metrics = [tmp_path / "runs" / "eval" / name / "metrics.json" for name in ("mrcnn-0", "mrcnn_asn-0")]
    assert all(p.is_file() for p in checkpoints + metrics)
    stamps = [p.stat().st_mtime_ns for p in checkpoints + metrics]
    table_md = tmp_path / "tables" / "custom.md"
    assert Path(first["md"]) == table_md and (tmp_path / "tables" / "custom.csv").is_file()
    text = table_md.read_text()
    assert "`mrcnn_asn`" in text and "## Arms" in text and "Table 4, R50-FPN" not in text

    # the same request again, in a new flow run: every job from the cache, nothing retrained
    second = ablation(**kwargs)
    assert sorted(second["cached"]) == ["mrcnn-0", "mrcnn_asn-0"]
    assert [p.stat().st_mtime_ns for p in checkpoints + metrics] == stamps
    assert second["runs"] == first["runs"]

    # MLflow: one run per (arm, seed), children of the table's parent run
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracked)
    experiment = client.get_experiment_by_name("custom")
    # artifacts beside the temporary store, not in the project's mlruns/ (the flow runs in it)
    assert experiment.artifact_location == (tmp_path / "mlruns" / "custom").as_uri()
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if r.data.tags.get("asn.kind") == "train+evaluate"]
    parents = [r for r in runs if r.data.tags.get("asn.kind") == "aggregate"]
    assert len(parents) == 1 and len(children) == 2
    assert {r.info.run_name for r in children} == {"mrcnn-seed0", "mrcnn_asn-seed0"}
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    assert all("amodal_ap" in r.data.metrics for r in children)
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id, "table")}
    assert {"table/custom.md", "table/custom.csv"} <= artifacts


@pytest.mark.slow
def test_flow_reuses_a_table4_model_and_says_so(world, harness, tracked, tmp_path):
    """A job that is a Table 4 model is not trained: its checkpoint and metrics are taken, the table
    marks the row and gives the flow run's wall time; the other job trains; a second run is cached."""
    from test_sweeps_reuse import _project

    (tmp_path / "trunk.pt").write_bytes(b"unused: TINY trains from scratch")
    models = _project(world, tmp_path, variants=("mrcnn",), overrides=TINY)
    ablation = load_pipeline().ablation
    kwargs = dict(table="custom", variants=["mrcnn", "mrcnn_asn"], seeds=[0], overrides=TINY,
                  params_path=str(PARAMS), gt_dir=str(world["gt"]), images_dir=str(world["train_images"]),
                  test_images_dir=str(world["test_images"]), out_dir=str(tmp_path / "runs"),
                  reports_dir=str(tmp_path / "tables"), table4_models=str(models.models_dir),
                  table4_eval=str(models.eval_dir), dvc_lock=str(models.lock), tracking=False)
    first = ablation(**kwargs)
    assert first["reused"] == ["mrcnn-0"] and first["cached"] == []
    assert not (tmp_path / "runs" / "mrcnn-0").exists() and (tmp_path / "runs" / "mrcnn_asn-0" / "checkpoint.pt").is_file()
    runs = {r["arm"]: r for r in first["runs"]}
    assert runs["mrcnn"]["eval_dir"] == str(models.eval_dir / "mrcnn-0") and runs["mrcnn"]["amodal_ap"] == 2.0
    data = json.loads(Path(first["json"]).read_text())
    assert data["timing"]["reused"] == 1 and data["timing"]["trained"] == 1 and data["timing"]["wall_s"] > 0
    text = Path(first["md"]).read_text()
    assert "reused from Table 4 `mrcnn-<seed>` (seeds 0; checkpoint and metrics)" in text and "**Wall time**" in text
    second = ablation(**kwargs)
    assert sorted(second["cached"]) == ["mrcnn-0", "mrcnn_asn-0"] and second["reused"] == ["mrcnn-0"]


@pytest.mark.slow
def test_flow_refuses_a_bad_override_before_training(harness, tracked, tmp_path):
    from asn.errors import InputError

    ablation = load_pipeline().ablation
    with pytest.raises(InputError, match="unknown parameter 'model.mlc_levels'"):
        ablation(table="table6", seeds=[0], overrides={"model.mlc_levels": 2}, params_path=str(PARAMS),
                 out_dir=str(tmp_path / "runs"), reports_dir=str(tmp_path / "tables"))
    assert not (tmp_path / "runs").exists()


def test_retry_condition_skips_bad_input():
    from prefect.states import Failed

    module = load_pipeline()
    assert module._is_transient(None, None, Failed(data=RuntimeError("killed"))) is True
    assert module._is_transient(None, None, Failed(data=module.JobRefused("train x: refused"))) is False
    assert module._is_transient(None, None, Failed(data=module.JobStopped("train x: signal 15"))) is False


# ----------------------------------------------------------------------------------------------
# (c) the deployment path: server, process pool, prefect deploy --all, worker, deployment run
# ----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """End a process started here with its whole session (the worker's flow runs included)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.slow
def test_deployment_run_through_server_and_worker(world, tmp_path):
    home, port = tmp_path / "prefect-home", _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "ASN_NO_TRACKING"}
    env.update(QUIET, PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_CLI_PROMPT="false", MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    prefect = str(BIN / "prefect")
    started: list[subprocess.Popen] = []

    def background(name, *argv):
        log = open(tmp_path / f"{name}.log", "w")
        process = subprocess.Popen([prefect, *argv], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        started.append(process)
        return process

    def run(*argv, timeout=180):
        proc = subprocess.run([prefect, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"prefect {' '.join(argv)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    try:
        server = background("server", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off")
        import urllib.request

        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=3) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the Prefect server did not answer in 120 s"
            time.sleep(1)
        run("work-pool", "create", "asn-local", "--type", "process")
        deployed = run("--no-prompt", "deploy", "--all")
        for name in ("table4", "table5", "table6", "table7", "inference_order", "custom"):
            assert f"asn-ablation/{name}" in deployed.stdout, deployed.stdout[-3000:]
        background("worker", "worker", "start", "--pool", "asn-local", "--type", "process", "--limit", "1",
                   "--install-policy", "never")
        params = {"variants": ["mrcnn_asn"], "seeds": [0], "overrides": TINY, "gt_dir": str(world["gt"]),
                  "images_dir": str(world["train_images"]), "test_images_dir": str(world["test_images"]),
                  "out_dir": str(tmp_path / "runs"), "reports_dir": str(tmp_path / "tables")}
        proc = subprocess.run([prefect, "deployment", "run", "asn-ablation/custom", "--params", json.dumps(params),
                               "--watch", "--watch-timeout", "240"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "Completed" in output, (
            output[-3000:] + "\n--- worker log:\n" + (tmp_path / "worker.log").read_text()[-4000:])
        assert (tmp_path / "tables" / "custom.md").is_file()
        assert (tmp_path / "runs" / "mrcnn_asn-0" / "checkpoint.pt").is_file()
    finally:
        for process in reversed(started):
            _stop(process)
        shutil.rmtree(home, ignore_errors=True)


def test_job_process_ends_with_its_parent(tmp_path):
    """A job whose flow-run process is killed does not go on training as an orphan."""
    script = ("import os, subprocess, sys\n"
              "child = subprocess.Popen([sys.executable, '-c', 'from asn.sweeps import exit_with_parent; "
              "exit_with_parent(0.1); import time; time.sleep(120)'], stdout=subprocess.DEVNULL,\n"
              "                         env=dict(os.environ, ASN_PARENT_PID=str(os.getpid())))\n"
              "print(child.pid, flush=True)\n")
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    child = int(parent.stdout.split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the child outlived its parent by 30 s")
