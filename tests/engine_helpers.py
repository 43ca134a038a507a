"""Shared helpers for the engine tests: a tiny synthetic world and tiny-model parameters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"

# The paper structure is kept (4 convs, 7x7 / 14x14 RoIs, MLC); widths and sizes are cut so a
# run of a few iterations takes seconds on a 2-core CI machine.
TINY_SETS = [
    # from scratch: the tests of the loop need no pretrained trunk (tests/test_trunk.py covers it)
    "profiles.smoke.model.init=scratch",
    "profiles.smoke.model.min_size=[64]",
    "profiles.smoke.model.max_size=224",
    "model.overrides={fpn_channels: 16, box_conv_channels: 16, box_fc_dim: 32, mask_conv_channels: 16, "
    "rpn_pre_nms_top_n_train: 100, rpn_post_nms_top_n_train: 50, rpn_pre_nms_top_n_test: 100, "
    "rpn_post_nms_top_n_test: 50, box_batch_size_per_image: 32, box_detections_per_img: 20}",
    "profiles.smoke.train.iterations=8",
    "profiles.smoke.train.steps=[6]",
    "profiles.smoke.train.warmup_iterations=2",
    "profiles.smoke.train.batch_size=2",
    "profiles.smoke.train.lr_reference_batch=2",
    "profiles.smoke.train.lr=0.01",
    "train.checkpoint_every=3",
    "train.log_every=1",
    "train.workers=0",
]


def env(threads: int = 1) -> dict:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                PYTHONHASHSEED="0", DVC_NO_ANALYTICS="1", MPLBACKEND="Agg", ASN_NO_TRACKING="1")


def asn(*args: str, check: bool = True, threads: int = 1, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "asn.cli", *args], capture_output=True, text=True,
                          env=env(threads), cwd=ROOT, **kwargs)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def sets(*extra: str) -> list[str]:
    out = []
    for item in (*TINY_SETS, *extra):
        out += ["--set", item]
    return out


def make_world(base: Path) -> dict[str, Path]:
    """Synthesize and convert a tiny world (6 train / 3 test images at 256x80)."""
    raw, gt = base / "raw", base / "gt"
    asn("synth", "--out", str(raw), "--train", "6", "--test", "3", "--seed", "1", "--width", "256",
        "--height", "80", "--workers", "1", "--no-progress")
    for split, folder in (("train", "training"), ("test", "testing")):
        asn("convert", "--kins", str(raw), "--split", split, "--images", str(raw / folder / "image_2"),
            "--out", str(gt), "--workers", "1")
    return {"raw": raw, "gt": gt, "train_images": raw / "training" / "image_2",
            "test_images": raw / "testing" / "image_2"}
