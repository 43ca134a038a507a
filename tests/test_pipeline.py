"""End to end: `dvc repro` of the default pipeline on tiny synthetic params, in a temp copy."""

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


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    project = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml"):
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
    params["train"].update(workers=0)
    params["eval"].update(workers=0)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1", MPLBACKEND="Agg")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(dvc + ["init", "--no-scm", "-q"], cwd=project, env=env, check=True)
    proc = subprocess.run(dvc + ["repro"], cwd=project, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return project, env


def test_every_stage_ran(tiny_project):
    project, env = tiny_project
    raw = project / "data" / "raw"
    assert json.loads((raw / "manifest.json").read_text())["source"] == "synthetic"
    assert len(list((raw / "training" / "image_2").glob("*.png"))) == 3
    for split, n_images in (("train", 3), ("test", 2)):
        report = json.loads((project / "data" / "normalized" / f"{split}_report.json").read_text())
        assert report["kept"]["images"] == n_images and report["kept"]["annotations"] > 0
        assert report["dropped"] == {}


def test_train_and_evaluate_stages(tiny_project):
    project, env = tiny_project
    variant = yaml.safe_load((project / "params.yaml").read_text())["model"]["variant"]
    run = project / "models" / f"{variant}-0"
    assert (run / "checkpoint.pt").is_file() and (run / "train_log.csv").is_file()
    metrics = json.loads((project / "reports" / "eval" / f"{variant}-0" / "metrics.json").read_text())
    assert {"det_ap", "amodal_ap", "inmodal_ap", "amodal_ap_50", "inmodal_ap_75"} <= set(metrics)
    assert metrics["files"]["amodal_gt"] == "data/normalized/test_amodal.json"
    proc = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], cwd=project, env=env,
                          capture_output=True, text=True, check=True)
    assert "amodal_ap" in proc.stdout


def test_repro_again_is_a_no_op(tiny_project):
    project, env = tiny_project
    proc = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=project, env=env,
                          capture_output=True, text=True, check=True)
    assert "up to date" in proc.stdout.lower(), proc.stdout
