"""Training engine: schedule, profiles, exact resume after SIGKILL, DDP (torchrun, gloo) equal
to one process over the same global batch, checkpoint safety and bad input."""

from __future__ import annotations

import math
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from engine_helpers import PARAMS, ROOT, asn, env, make_world, sets


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


def train_args(world, out, *extra):
    return ["train", "--params", str(PARAMS), "--gt", str(world["gt"]), "--images", str(world["train_images"]),
            "--out", str(out), "--no-progress", *extra]


def model_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


# ---- schedule and configuration (pure functions) -------------------------------------------

def test_lr_factor_warmup_and_steps():
    from asn.engine.schedule import lr_factor

    kw = dict(steps=[10, 20], gamma=0.1, warmup_iterations=4, warmup_factor=0.001)
    assert lr_factor(0, **kw) == pytest.approx(0.001)
    assert lr_factor(2, **kw) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(4, **kw) == 1.0 and lr_factor(9, **kw) == 1.0
    assert lr_factor(10, **kw) == pytest.approx(0.1) and lr_factor(25, **kw) == pytest.approx(0.01)
    assert lr_factor(5, steps=[], warmup_iterations=0) == 1.0


def test_profiles_resolve_and_scale_lr():
    from asn.config import load_params
    from asn.engine.config import resolve

    smoke = resolve(load_params(PARAMS))
    assert smoke.profile == "smoke" and smoke.model["backbone"] == "resnet18_fpn_small"
    paper = resolve(load_params(PARAMS, ["profile=paper"]))
    assert paper.model["backbone"] == "resnet50_fpn"
    assert (paper.train.batch_size, paper.train.lr, paper.train.iterations, paper.train.steps) == (
        8, 0.02, 24000, (20000, 22000))
    assert (paper.train.momentum, paper.train.weight_decay) == (0.9, 1e-4)
    doubled = resolve(load_params(PARAMS, ["profile=paper", "profiles.paper.train.batch_size=16"]))
    assert doubled.train.scaled_lr == pytest.approx(0.04)  # linear scaling rule
    assert resolve(load_params(PARAMS), variant="mrcnn", seed=3).model["variant"] == "mrcnn"


def test_params_hash_ignores_logistics_but_not_numbers():
    from asn.config import load_params
    from asn.engine.config import params_hash, resolve

    def h(*overrides):
        return params_hash(resolve(load_params(PARAMS, overrides)).hash_payload(False))

    base = h()
    assert h("train.workers=0", "train.log_every=7", "train.checkpoint_every=9", "train.device=cpu") == base
    assert h("train.seed=1") != base and h("model.mlc_box_level=2") != base
    assert h("profiles.smoke.train.lr=0.03") != base


@pytest.mark.parametrize("override, message", [
    ("profile=huge", "unknown profile 'huge'"),
    ("model.variant=maskformer", "unknown variant 'maskformer'"),
    ("profiles.smoke.train.steps=[300, 100]", "steps must be increasing"),
])
def test_bad_params_are_one_line_errors(override, message):
    from asn.config import load_params
    from asn.engine.config import resolve
    from asn.errors import InputError

    with pytest.raises(InputError, match=message):
        resolve(load_params(PARAMS, [override]), str(PARAMS))


def test_a_key_in_two_places_is_refused(tmp_path):
    import yaml

    from asn.config import load_params
    from asn.engine.config import resolve
    from asn.errors import InputError

    params = yaml.safe_load(PARAMS.read_text())
    params["train"]["iterations"] = 5
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(InputError, match=r"\['iterations'\] are set both"):
        resolve(load_params(path), str(path))


def test_cli_bad_input_exit_2_one_line(world, tmp_path):
    out = tmp_path / "run"
    for extra, message in ((["--set", "train.nonsense=1"], "unknown parameter 'train.nonsense'"),
                           (["--variant", "nope"], "unknown variant 'nope'"),
                           (["--set", "profile=fast"], "unknown profile 'fast'"),
                           (["--set", "train.amp=true", "--set", "train.device=cpu"], "AMP is supported on CUDA only"),
                           (["--set", "train.device=cuda:3"] if not torch.cuda.is_available() else
                            ["--set", "profile=fast"], "CUDA is not available" if not torch.cuda.is_available()
                            else "unknown profile")):
        proc = asn(*train_args(world, out, *extra), check=False)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not out.exists()


# ---- training runs ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def uninterrupted(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    asn(*train_args(world, out, *sets()))
    return out


def test_outputs_and_training_log(uninterrupted):
    import csv
    import json

    rows = list(csv.DictReader((uninterrupted / "train_log.csv").open()))
    assert [int(r["iteration"]) for r in rows] == list(range(1, 9))
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_amodal_mask", "loss_inmodal_mask",
            "loss_occlusion"} <= set(rows[0])
    for row in rows:
        terms = sum(float(v) for k, v in row.items() if k.startswith("loss_"))
        assert math.isclose(terms, float(row["loss"]), rel_tol=1e-4)
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] == pytest.approx(0.01 * 0.001) and lrs[6] == pytest.approx(0.001)  # warmup, step at 6
    label_map = json.loads((uninterrupted / "label_map.json").read_text())
    assert label_map["category_ids"] == [1, 2, 4, 5, 6, 7, 8]
    checkpoint = model_state(uninterrupted / "checkpoint.pt")
    assert checkpoint["iteration"] == 8 and checkpoint["variant"] == "mrcnn_asn"
    assert {"python", "numpy", "torch", "loader"} <= set(checkpoint["rng"])
    assert len(checkpoint["params_hash"]) == 64 and len(checkpoint["data_hash"]) == 64
    summary = json.loads((uninterrupted / "train_summary.json").read_text())
    assert summary["iterations"] == 8 and "seconds" not in summary


def test_same_seed_same_checkpoint_bytes(world, uninterrupted, tmp_path):
    out = tmp_path / "again"
    asn(*train_args(world, out, *sets()))
    assert (out / "checkpoint.pt").read_bytes() == (uninterrupted / "checkpoint.pt").read_bytes()
    assert (out / "train_log.csv").read_bytes() == (uninterrupted / "train_log.csv").read_bytes()


def test_sigkill_and_resume_is_bit_identical(world, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    # killed after iteration 5 (checkpoint at 3): iterations 4-5 are lost and redone
    proc = subprocess.Popen([sys.executable, "-m", "asn.cli", *train_args(world, out, *sets())],
                            stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT)
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if "iter 5/8" in line:
            proc.send_signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "training did not reach iteration 5"
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert model_state(out / "checkpoint.pt")["iteration"] == 3
    # resumed with loader worker processes: the result must not depend on them either
    asn(*train_args(world, out, *sets("train.workers=2"), "--resume"))
    resumed, full = model_state(out / "checkpoint.pt"), model_state(uninterrupted / "checkpoint.pt")
    assert resumed["iteration"] == 8
    for key, value in full["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    assert (out / "train_log.csv").read_text() == (uninterrupted / "train_log.csv").read_text()


def test_resume_refuses_other_params_or_data(world, uninterrupted, tmp_path):
    import shutil

    out = tmp_path / "other"
    shutil.copytree(uninterrupted, out)
    proc = asn(*train_args(world, out, *sets("profiles.smoke.train.lr=0.02"), "--resume"), check=False)
    assert proc.returncode == 2 and "trained with other params" in proc.stderr
    gt = tmp_path / "gt"
    shutil.copytree(world["gt"], gt)
    (gt / "train_amodal.json").write_bytes((gt / "train_amodal.json").read_bytes() + b"\n")
    proc = asn("train", "--params", str(PARAMS), "--gt", str(gt), "--images", str(world["train_images"]),
               "--out", str(out), "--no-progress", *sets(), "--resume", check=False)
    assert proc.returncode == 2 and "trained with other data" in proc.stderr
    # the refused checkpoint is untouched
    assert (out / "checkpoint.pt").read_bytes() == (uninterrupted / "checkpoint.pt").read_bytes()


def test_corrupt_or_foreign_checkpoint(uninterrupted, tmp_path):
    from asn.engine.checkpoint import build_model_from_checkpoint, load_checkpoint
    from asn.errors import InputError

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((uninterrupted / "checkpoint.pt").read_bytes()[:5000])
    with pytest.raises(InputError, match="cannot read checkpoint"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(InputError, match="not an asn checkpoint"):
        load_checkpoint(foreign)
    other = tmp_path / "other_model.pt"
    checkpoint = model_state(uninterrupted / "checkpoint.pt")
    checkpoint["run"]["model"]["variant"] = "mrcnn"  # the weights are mrcnn_asn's
    torch.save(checkpoint, other)
    with pytest.raises(InputError, match="does not fit this model"):
        build_model_from_checkpoint(other)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process_accumulating(world, tmp_path):
    """2 CPU processes (gloo) with 1 image each == 1 process accumulating the same 2 chunks."""
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    extra = sets("profiles.smoke.train.iterations=4", "profiles.smoke.train.steps=[3]")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(ROOT / "stages" / "train.py"),
           *train_args(world, ddp_out, *extra)[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # two processes share one stderr pipe: lines may interleave, so match the pattern, not lines
    digests = dict(re.findall(r"rank (\d+): parameters sha256 ([0-9a-f]{64})", proc.stderr))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], proc.stderr[-2000:]
    asn(*train_args(world, single_out, *extra, "--set", "train.accumulate=2"))
    ddp, single = model_state(ddp_out / "checkpoint.pt"), model_state(single_out / "checkpoint.pt")
    for name, parameter in single["model"].items():
        if parameter.is_floating_point() and "running_" not in name:
            # batch-norm running statistics are buffers (rank 0's under DDP), not weights
            torch.testing.assert_close(ddp["model"][name], parameter, rtol=1e-5, atol=1e-6, msg=name)
    assert (ddp_out / "train_log.csv").exists()
