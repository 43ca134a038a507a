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


def test_repro_again_is_a_no_op(tiny_project):
    project, env = tiny_project
    proc = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=project, env=env,
                          capture_output=True, text=True, check=True)
    assert "up to date" in proc.stdout.lower(), proc.stdout
