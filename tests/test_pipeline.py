"""End to end: `dvc repro` of the default pipeline on tiny params in a temp git repository:
every stage runs (the train / evaluate matrix over 2 variants x 2 seeds, aggregate, MLflow),
a second repro does nothing, an eval.* edit re-runs evaluation only, a new seed trains only
that seed, and a fresh clone's `dvc repro` leaves `git status` clean (outputs are functions
of their inputs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VARIANTS, SEEDS = ["mrcnn", "mrcnn_asn"], [0, 1]


def _run(cmd, cwd, env, check=True):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, f"{cmd}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc


def _git(project, env, *args):
    return _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], project, env)


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    project = tmp_path_factory.mktemp("project") / "asn"
    project.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(ROOT / name, project / name)
    for folder in ("stages", "src"):
        shutil.copytree(ROOT / folder, project / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["synth"].update(train=3, test=2, annotators=2, annotator_images=2, workers=1)
    # a tiny model and 3 iterations: this checks the wiring of train and evaluate, not learning
    params["profiles"]["smoke"]["model"].update(min_size=[64], max_size=224)
    params["profiles"]["smoke"]["train"].update(iterations=3, steps=[2], warmup_iterations=1, batch_size=2,
                                                lr_reference_batch=2)
    params["model"]["overrides"] = dict(
        fpn_channels=16, box_conv_channels=16, box_fc_dim=32, mask_conv_channels=16,
        rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50, rpn_pre_nms_top_n_test=100,
        rpn_post_nms_top_n_test=50, box_batch_size_per_image=32, box_detections_per_img=20)
    params["pretrain"]["world"].update(train=3, val=2, width=256, height=80)
    params["pretrain"]["train"].update(iterations=3, steps=[2], warmup_iterations=1, batch_size=2)
    params["train"].update(workers=0)
    params["eval"].update(workers=0)
    params["table4"].update(variants=VARIANTS, seeds=SEEDS)
    params["sceneflow"].update(scenes=2, width=160, height=64, bootstrap=50, max_disparity=32)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "ASN_NO_TRACKING")}
    env.update(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", DVC_NO_ANALYTICS="1",
               MPLBACKEND="Agg", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    dvc = [sys.executable, "-m", "dvc"]
    _git(project, env, "init", "-q", "-b", "main")
    _run(dvc + ["init", "-q"], project, env)
    shutil.copy(ROOT / ".dvcignore", project / ".dvcignore")
    _git(project, env, "add", "-A")
    _git(project, env, "commit", "-q", "-m", "code")
    _run(dvc + ["repro"], project, env)
    _git(project, env, "add", "-A")
    _git(project, env, "commit", "-q", "-m", "results")
    return project, env


def _status(project, env) -> dict:
    return json.loads(_run([sys.executable, "-m", "dvc", "status", "--json"], project, env).stdout or "{}")


def test_every_stage_ran(tiny_project):
    project, env = tiny_project
    trunk = json.loads((project / "models" / "trunk" / "trunk.json").read_text())
    assert trunk["provenance"]["world"]["seed"] == 1000 and trunk["provenance"]["iterations"] == 3
    summary = json.loads((project / "models" / "mrcnn_asn-0" / "train_summary.json").read_text())
    assert summary["trunk"]["sha256"] == trunk["sha256"]  # every Table 4 model starts from it
    raw = project / "data" / "raw"
    assert json.loads((raw / "manifest.json").read_text())["source"] == "synthetic"
    assert len(list((raw / "training" / "image_2").glob("*.png"))) == 3
    for split, n_images in (("train", 3), ("test", 2)):
        report = json.loads((project / "data" / "normalized" / f"{split}_report.json").read_text())
        assert report["kept"]["images"] == n_images and report["kept"]["annotations"] > 0
        assert report["dropped"] == {} and "seconds" not in report  # no wall-clock time in outputs


def test_matrix_aggregate_and_mlflow(tiny_project):
    project, env = tiny_project
    keys = set()
    for variant in VARIANTS:
        for seed in SEEDS:
            run = project / "models" / f"{variant}-{seed}"
            assert (run / "checkpoint.pt").is_file() and (run / "train_log.csv").is_file()
            metrics = json.loads((project / "reports" / "eval" / f"{variant}-{seed}" / "metrics.json").read_text())
            assert metrics["run"]["variant"] == variant and metrics["run"]["seed"] == seed
            assert metrics["files"]["amodal_gt"] == "data/normalized/test_amodal.json"
            keys.add(metrics["mlflow"]["run_key"])
    table = (project / "reports" / "tables" / "table4.md").read_text()
    assert "synthetic world, not KINS" in table and "**Profile**: smoke" in table
    assert "Mask R-CNN + ASN (`mrcnn_asn`) | 2 |" in table
    assert (project / "reports" / "tables" / "table4.png").read_bytes()[:4] == b"\x89PNG"
    table8 = (project / "reports" / "tables" / "table8.md").read_text()
    assert "synthetic stereo / motion world (NOT KITTI" in table8 and "(`mrcnn_asn`) | 2 |" in table8
    assert "(`gt`) | - |" in table8 and (project / "reports" / "tables" / "table8.png").is_file()
    index = (project / "reports" / "README.md").read_text()  # the report stage ran last
    assert "[table4.md](tables/table4.md)" in index and "[table1.md](stats/table1.md)" in index
    assert "prefect deployment run 'asn-ablation/table6'" in index
    # Table 3 in the two-stage layout: the synthetic annotators' review brings them closer to the truth
    table3 = json.loads((project / "reports" / "stats" / "table3.json").read_text())
    assert table3["layout"] == "two_stage" and table3["stages"][0]["reference"] == "data/normalized/train_amodal.json"
    assert table3["stages"][1]["majority_vs_reference"] > table3["stages"][0]["majority_vs_reference"]
    assert "| Annotation | stage 1 | stage 2 |" in index
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("table4")
    runs = client.search_runs([experiment.experiment_id])
    per_seed = [r for r in runs if r.data.tags.get("asn.kind") == "train+evaluate"]
    assert {r.data.tags["asn.run_key"] for r in per_seed} == keys and len(per_seed) == 4
    assert all("amodal_ap" in r.data.metrics and "loss" in r.data.metrics for r in per_seed)
    parents = [r for r in runs if r.data.tags.get("asn.kind") == "aggregate"]
    assert len(parents) == 1
    assert {r.data.tags.get("mlflow.parentRunId") for r in per_seed} == {parents[0].info.run_id}


def test_repro_again_is_a_no_op_and_git_stays_clean(tiny_project):
    project, env = tiny_project
    assert _status(project, env) == {}
    proc = _run([sys.executable, "-m", "dvc", "repro"], project, env)
    assert "Running stage" not in proc.stdout, proc.stdout
    assert _git(project, env, "status", "--porcelain").stdout == ""


def test_eval_edit_reruns_evaluation_only_and_new_seed_trains_only_it(tiny_project):
    project, env = tiny_project
    params_path = project / "params.yaml"
    original = params_path.read_text()
    try:
        params = yaml.safe_load(original)
        params["eval"]["mask_threshold"] = 0.4
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        changed = set(_status(project, env))
        assert changed == {f"evaluate@{v}-{s}" for v in VARIANTS for s in SEEDS}, changed

        params = yaml.safe_load(original)
        params["table4"]["seeds"] = SEEDS + [2]
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        changed = set(_status(project, env))
        assert {s for s in changed if s.startswith("train@")} == {f"train@{v}-2" for v in VARIANTS}, changed
        assert not any(s.startswith("evaluate@") and not s.endswith("-2") for s in changed), changed
    finally:
        params_path.write_text(original)


def test_fresh_clone_repro_leaves_git_status_clean(tiny_project, tmp_path):
    """No DVC cache in the clone: every stage runs again and must write the same bytes."""
    project, env = tiny_project
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(project), str(clone)], tmp_path, env)
    proc = _run([sys.executable, "-m", "dvc", "repro"], clone, env)
    # the committed trunk is up to date in the clone: it is neither rendered nor trained again
    assert "Running stage 'pretrain'" not in proc.stdout and "Running stage 'train@mrcnn-0'" in proc.stdout
    status = _git(clone, env, "status", "--porcelain").stdout
    assert status == "", status
    # and rebuilding it from nothing gives the committed bytes
    proc = _run([sys.executable, "-m", "dvc", "repro", "-f", "pretrain"], clone, env)
    assert "Running stage 'pretrain'" in proc.stdout
    status = _git(clone, env, "status", "--porcelain").stdout
    assert status == "", status
    assert _status(clone, env) == {}
