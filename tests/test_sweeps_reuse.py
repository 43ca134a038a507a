"""Sweep arms that are Table 4 models (asn.sweeps.table4_reuse): an arm with the same params and
data hash as a Table 4 model of the DVC pipeline reuses its checkpoint (and its metrics when they
apply) instead of training; an arm that differs by one knob is trained; a Table 4 model that is
stale (another params hash, a replaced file, changed code, another trunk) is not reused. The
Table 4 "project" here is hand-made: checkpoints carrying the hashes asn train writes, their
metrics.json and a dvc.lock recording them, so no model is trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine_helpers import PARAMS, make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("reuse-world"))


def _plan(world, base: Path, table: str, *, reuse=None, seeds=(0,), overrides=None):
    from asn import sweeps

    return sweeps.plan(table=table, seeds=list(seeds), params_path=PARAMS, gt_dir=world["gt"],
                       images_dir=world["train_images"], test_images_dir=world["test_images"],
                       out_dir=base / "runs" / table, trunk=base / "trunk.pt", overrides=overrides,
                       reuse_from=reuse)


def _project(world, base: Path, variants=("mrcnn", "mrcnn_asn"), seeds=(0,), overrides=None):
    """A Table 4 project as `dvc repro` leaves it: models/<v>-<s>/checkpoint.pt with the params and
    data hash of the DVC train stage's run, reports/eval/<v>-<s>/metrics.json, and dvc.lock."""
    import yaml

    from asn import sweeps
    from asn.config import load_params, section, thaw
    from asn.engine.checkpoint import save_checkpoint

    root = base / "project"
    (root / "src").mkdir(parents=True, exist_ok=True)
    code = root / "src" / "model.py"
    code.write_text("# the model code of the train stage\n")
    table4 = _plan(world, base, "table4", seeds=seeds, overrides=overrides)  # the DVC train stage's runs
    eval_options = thaw(section(load_params(PARAMS, sweeps.override_strings(overrides)), "eval", "params.yaml"))
    stages = {}
    for job in table4.jobs:
        if job.arm.variant not in variants:
            continue
        name = f"{job.arm.variant}-{job.seed}"
        checkpoint = root / "models" / name / "checkpoint.pt"
        save_checkpoint(checkpoint, {"model": {}, "run": {"train": {"iterations": 200}}, "iteration": 200,
                                     "params_hash": job.identity["params_hash"],
                                     "data_hash": job.identity["train_data_hash"], "label_map": {}, "variant": name})
        metrics = root / "reports" / "eval" / name / "metrics.json"
        metrics.parent.mkdir(parents=True, exist_ok=True)
        metrics.write_text(json.dumps({"det_ap": 1.0, "amodal_ap": 2.0, "inmodal_ap": 3.0, "run": {
            "variant": job.arm.variant, "seed": job.seed, "profile": "smoke", "iteration": 200,
            "params_hash": job.identity["params_hash"], "data_hash": job.identity["train_data_hash"]}}))
        test_json = Path(world["gt"]) / "test_amodal.json"
        stages[f"train@{name}"] = {
            "deps": [{"path": "src/model.py", "hash": "md5", "md5": sweeps.file_md5(code)}],
            "outs": [{"path": f"models/{name}/checkpoint.pt", "hash": "md5", "md5": sweeps.file_md5(checkpoint)}]}
        stages[f"evaluate@{name}"] = {
            "deps": [{"path": f"models/{name}/checkpoint.pt", "hash": "md5", "md5": sweeps.file_md5(checkpoint)},
                     {"path": str(test_json), "hash": "md5", "md5": sweeps.file_md5(test_json)}],
            "params": {"params.yaml": {"eval": eval_options}},
            "metrics": [{"path": f"reports/eval/{name}/metrics.json", "hash": "md5", "md5": sweeps.file_md5(metrics)}]}
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
    return sweeps.Table4Models(models_dir=root / "models", eval_dir=root / "reports" / "eval",
                               lock=root / "dvc.lock", root=root)


@pytest.fixture
def base(tmp_path):
    (tmp_path / "trunk.pt").write_bytes(b"the shared trunk")
    return tmp_path


def _jobs(plan):
    return {(job.arm.name, job.seed): job for job in plan.jobs}


def test_identical_arms_reuse_and_one_knob_more_trains(world, base):
    from asn import sweeps

    models = _project(world, base)
    plan6 = _plan(world, base, "table6", reuse=models)
    table6 = _jobs(plan6)
    # Table 6's MR row is the Table 4 mrcnn model, its 5 % row the Table 4 mrcnn_asn model
    mr, five = table6[("no_oc", 0)], table6[("occ_0.05", 0)]
    assert mr.reuse.name == "mrcnn-0" and five.reuse.name == "mrcnn_asn-0"
    assert mr.reuse.metrics == models.eval_dir / "mrcnn-0" / "metrics.json" and mr.reuse.label == "reused from Table 4 mrcnn-0"
    assert sweeps.train_argv(plan6, mr) is None and sweeps.evaluate_argv(plan6, mr) is None
    assert mr.identity["reuse"]["name"] == "mrcnn-0" and mr.identity["reuse"]["checkpoint_md5"]
    # one knob more (the occlusion threshold): another params hash, trained here
    fifteen = table6[("occ_0.15", 0)]
    assert fifteen.reuse is None and "params hash" in fifteen.reuse_note
    argv = sweeps.train_argv(plan6, fifteen)
    assert argv[argv.index("--out") + 1] == str(base / "runs" / "table6" / "occ_0.15-0")
    # Table 5's amodal + inmodal and MLC(1, 1) rows, Table 7's 1111: Table 4 models as well
    table5 = _jobs(_plan(world, base, "table5", reuse=models))
    assert table5[("both", 0)].reuse.name == "mrcnn-0" and table5[("mlc_1_1", 0)].reuse.name == "mrcnn_asn-0"
    assert table5[("mlc_2_2", 0)].reuse is None and "params hash" in table5[("mlc_2_2", 0)].reuse_note
    assert table5[("oc", 0)].reuse is None and table5[("oc", 0)].reuse_note == "no Table 4 model mrcnn_oc-0"
    table7 = _jobs(_plan(world, base, "table7", reuse=models))
    assert table7[("full", 0)].reuse.name == "mrcnn_asn-0"
    assert all(job.reuse is None for key, job in table7.items() if key[0] != "full")
    # the cache key names the reuse: without it, another key
    assert _jobs(_plan(world, base, "table6"))[("no_oc", 0)].cache_key != mr.cache_key
    # a seed Table 4 does not have is trained
    assert _jobs(_plan(world, base, "table6", reuse=models, seeds=(0, 7)))[("no_oc", 7)].reuse is None


def test_other_eval_options_reuse_the_checkpoint_and_evaluate_again(world, base):
    from asn import sweeps

    models = _project(world, base, variants=("mrcnn_asn",))
    plan = _plan(world, base, "inference_order", reuse=models)
    jobs = _jobs(plan)
    released, paper = jobs[("released", 0)], jobs[("paper", 0)]
    assert released.reuse.metrics is not None and sweeps.evaluate_argv(plan, released) is None
    assert paper.reuse.name == "mrcnn_asn-0" and paper.reuse.metrics is None
    assert "eval options differ" in paper.reuse.note
    argv = sweeps.evaluate_argv(plan, paper)
    assert argv[argv.index("--checkpoint") + 1] == str(models.models_dir / "mrcnn_asn-0" / "checkpoint.pt")
    assert argv[argv.index("--out") + 1] == str(base / "runs" / "inference_order" / "eval" / "paper-0")
    assert sweeps.train_argv(plan, paper) is None


def test_stale_table4_models_are_not_reused(world, base):
    import yaml

    from asn import sweeps
    from asn.engine.checkpoint import save_checkpoint

    models = _project(world, base)
    lock = yaml.safe_load(models.lock.read_text())
    checkpoint = models.models_dir / "mrcnn-0" / "checkpoint.pt"

    def first(table="table6"):
        return _jobs(_plan(world, base, table, reuse=models))[("no_oc", 0)]

    assert first().reuse is not None
    # a checkpoint trained under other parameters, recorded by dvc.lock: identity by hash, not by name
    save_checkpoint(checkpoint, {"model": {}, "run": {"train": {"iterations": 200}}, "iteration": 200,
                                 "params_hash": "0" * 64, "data_hash": first().identity["train_data_hash"],
                                 "label_map": {}, "variant": "mrcnn"})
    lock["stages"]["train@mrcnn-0"]["outs"][0]["md5"] = sweeps.file_md5(checkpoint)
    models.lock.write_text(yaml.safe_dump(lock))
    job = first()
    assert job.reuse is None and "has params hash 000000000000" in job.reuse_note
    # the right hashes, but not the file dvc.lock records (replaced by hand)
    models = _project(world, base)
    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0")
    job = first()
    assert job.reuse is None and "is not the file dvc.lock's train@mrcnn-0 records" in job.reuse_note
    # the code the train stage depends on changed since: DVC would retrain it
    models = _project(world, base)
    (models.root / "src" / "model.py").write_text("# edited\n")
    job = first()
    assert job.reuse is None and "out of date (src/model.py changed since dvc.lock" in job.reuse_note
    # another trunk: every job's params hash changes, so the Table 4 models are another model
    models = _project(world, base)
    (base / "trunk.pt").write_bytes(b"a retrained trunk")
    job = first()
    assert job.reuse is None and "params hash" in job.reuse_note
    # metrics of another evaluation are not reused; the checkpoint still is
    (base / "trunk.pt").write_bytes(b"the shared trunk")
    models = _project(world, base)
    metrics = models.eval_dir / "mrcnn-0" / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"det_ap": 1.0', '"det_ap": 9.0'))
    job = first()
    assert job.reuse.metrics is None and "is not the file dvc.lock's evaluate@mrcnn-0 records" in job.reuse.note
    # an incomplete checkpoint (a killed run) is not reused
    models = _project(world, base)
    lock = yaml.safe_load(models.lock.read_text())
    save_checkpoint(checkpoint, {"model": {}, "run": {"train": {"iterations": 200}}, "iteration": 100,
                                 "params_hash": first().identity["params_hash"],
                                 "data_hash": first().identity["train_data_hash"], "label_map": {}, "variant": "mrcnn"})
    lock["stages"]["train@mrcnn-0"]["outs"][0]["md5"] = sweeps.file_md5(checkpoint)
    models.lock.write_text(yaml.safe_dump(lock))
    assert "not complete (iteration 100 of 200)" in first().reuse_note
    # no dvc.lock: nothing tells what made the checkpoint
    models.lock.unlink()
    assert first().reuse is None


def test_dvc_md5_is_dvcs_own(tmp_path):
    """The folder hash dvc.lock records (DVC 3, md5 of the sorted file listing + '.dir'),
    .dvcignore's patterns left out, checked against dvc-data's own builder."""
    pytest.importorskip("dvc_data")
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    from asn.sweeps import dvc_md5

    tree = tmp_path / "tree"
    (tree / "a" / "z").mkdir(parents=True)
    (tree / "a" / "x.py").write_text("x")
    (tree / "b.txt").write_text("hello")
    (tree / "a" / "z" / "q").write_bytes(b"\0\1")
    fs = LocalFileSystem()
    _, _, obj = build(HashFileDB(fs, str(tmp_path / "odb")), str(tree), fs, "md5", dry_run=True)
    assert dvc_md5(tree, tmp_path) == obj.hash_info.value
    (tmp_path / ".dvcignore").write_text("# comment\n__pycache__/\n*.pyc\n")
    (tree / "a" / "__pycache__").mkdir()
    (tree / "a" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"bytecode")
    (tree / "c.pyc").write_bytes(b"bytecode")
    assert dvc_md5(tree, tmp_path) == obj.hash_info.value
    assert dvc_md5(tree / "b.txt", tmp_path) == "5d41402abc4b2a76b9719d911017c592"


def test_reused_rows_are_marked_in_the_table():
    from asn import sweeps
    from asn.config import load_params

    params = load_params(PARAMS)
    sweep = sweeps.sweep_from_params(params, "table6", seeds=[0, 1])
    per_arm = {a.name: [{"det_ap": 1.0 + s, "amodal_ap": 2.0, "inmodal_ap": 3.0, "occlusion_accuracy": 80.0,
                         "_seed": s} for s in (0, 1)] for a in sweep.arms}
    for s, metrics in enumerate(per_arm["no_oc"]):
        metrics.update(_reused_from=f"mrcnn-{s}", _reused_metrics=True)
    per_arm["occ_0.05"][0].update(_reused_from="mrcnn_asn-0", _reused_metrics=False,
                                  _reuse_note="the arm's eval options differ from Table 4's")
    table = sweeps.build(sweep, per_arm, params)
    rows = {row["variant"]: row for row in table["rows"]}
    assert rows["no_oc"]["reused_from"] == ["mrcnn-0", "mrcnn-1"] and rows["no_oc"]["name"].endswith("[Table 4 model, reused]")
    assert "reused_from" not in rows["occ_0.15"]
    timing = sweeps.timing_summary([{"reused_from": "mrcnn-0", "reused_metrics": True, "seconds": 0.1},
                                    {"reused_from": None, "seconds": 120.0}], wall_s=130.0, cached=["x-0"])
    assert timing == {"wall_s": 130.0, "jobs": 2, "trained": 1, "reused": 1, "reused_with_metrics": 1, "cached": 1,
                      "job_seconds_total": 120.1}
    text = sweeps.render_markdown(sweep, table, header={"Wall time": sweeps.timing_line(timing)}, command="c",
                                  source="synthetic")
    assert "| `no_oc` | `mrcnn` | – | Mask R-CNN without OC (the paper's MR) | reused from Table 4 `mrcnn-<seed>` " \
           "(seeds 0, 1; checkpoint and metrics) |" in text
    assert "reused from Table 4 `mrcnn_asn-<seed>` (seeds 0; checkpoint; evaluated again here); the other seeds trained here" in text
    assert "| `occ_0.05` | 0 | `mrcnn_asn-0` | evaluated again here |" in text
    assert "- Evaluated again: the arm's eval options differ from Table 4's" in text
    assert "2.2 min for this flow run (2 jobs: 1 trained here, 1 reused from Table 4 (1 with their metrics)" in text
    assert "their occlusion accuracy measures the masks" in text and "(`no_oc`)" in text
