"""The shared pretrained trunk (asn.engine.trunk, asn pretrain): what transfers, into which
variant, what stays frozen, and the refusal of trunk files that do not fit."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from asn.engine.trunk import (
    PARTS, canonical_key, freeze, load_trunk, part_of, read_trunk, save_trunk, trunk_model,
)
from asn.errors import InputError
from asn.model import build_model
from engine_helpers import asn, make_world, sets

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TINY = dict(fpn_channels=16, box_conv_channels=16, box_fc_dim=32, mask_conv_channels=16,
            rpn_pre_nms_top_n_train=60, rpn_post_nms_top_n_train=30, rpn_pre_nms_top_n_test=60,
            rpn_post_nms_top_n_test=30, box_batch_size_per_image=16, min_size=64, max_size=160,
            head_norm="gn", backbone_norm="gn")
SIZES = {k: TINY[k] for k in ("fpn_channels", "box_conv_channels", "box_fc_dim", "mask_conv_channels")}
LABEL_MAP = {"category_ids": [1, 2, 4, 5, 6, 7, 8]}


def tiny(variant: str, seed: int, **overrides):
    torch.manual_seed(seed)
    return build_model(variant, 8, backbone="resnet18_fpn_small", **{**TINY, **overrides})


def write_trunk(path, model, *, dtype="float32", **meta):
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    payload = {"parts": list(PARTS), "backbone": "resnet18_fpn_small", "backbone_norm": "gn", "head_norm": "gn",
               "num_classes": 8, "label_map": LABEL_MAP, "sizes": {**SIZES, "anchor_sizes": [8, 16, 32, 64, 128]},
               "model": {"variant": "mrcnn", "num_classes": 8, "backbone": "resnet18_fpn_small", **TINY,
                         "min_size": [64]},
               **meta}
    return save_trunk(path, state, dtype=dtype, meta=payload)


def test_part_names_cover_plain_and_panet_keys():
    assert part_of("backbone.body.layer1.0.conv1.weight") == "body"
    assert part_of("backbone.fpn_backbone.body.conv1.weight") == "body"
    assert part_of("backbone.fpn_backbone.fpn.inner_blocks.0.0.weight") == "fpn"
    assert part_of("rpn.head.conv.0.0.weight") == "rpn"
    assert part_of("roi_heads.box_predictor.cls_score.weight") == "box_head"
    assert canonical_key("roi_heads.box_head.convs.0.level_layers.3.0.weight") == "roi_heads.box_head.convs.0.0.weight"
    for specific in ("backbone.augmentation.down_convs.0.weight", "roi_heads.occlusion_head.fc.weight",
                     "roi_heads.mask_branches.amodal.mlc.extraction.0.weight"):
        assert part_of(specific) is None


@pytest.mark.parametrize("variant", ["mrcnn", "mrcnn_asn", "panet_asn", "orcnn"])
def test_trunk_parts_transfer_and_the_rest_keeps_the_seed_init(tmp_path, variant):
    source = tiny("mrcnn", seed=7)
    path = write_trunk(tmp_path / "trunk.pt", source)
    fresh = tiny(variant, seed=3)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    info = load_trunk(fresh, path, PARTS, label_map=LABEL_MAP)
    assert info["sha256"] == read_trunk(path)["sha256"] and "state" not in info
    trunk = source.state_dict()
    for name, tensor in fresh.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        if part_of(name) is None:  # occlusion branch, MLC, mask heads, PANet's path: the seed's own init
            assert torch.equal(tensor, before[name]), name
        else:
            assert torch.equal(tensor, trunk[canonical_key(name)]), name
    if variant.startswith("panet"):  # every pyramid level's first box conv starts from the trunk's one
        layers = fresh.roi_heads.box_head.convs[0].level_layers
        assert all(torch.equal(layer[0].weight, source.roi_heads.box_head.convs[0][0].weight) for layer in layers)


def test_float16_storage_rounds_and_halves_the_file(tmp_path):
    source = tiny("mrcnn", seed=1)
    full = write_trunk(tmp_path / "f32.pt", source)
    half = write_trunk(tmp_path / "f16.pt", source, dtype="float16")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    model = tiny("mrcnn", seed=2)
    load_trunk(model, half, ["body"])
    weight, original = model.backbone.body.conv1.weight, source.backbone.body.conv1.weight
    assert weight.dtype == torch.float32 and torch.equal(weight, original.half().float())


def test_frozen_parts_do_not_move_and_the_rest_trains(tmp_path):
    from test_model import synthetic_pair

    model = tiny("mrcnn_asn", seed=0)
    assert freeze(model, ["body", "fpn"]) > 0
    frozen = {n: p.clone() for n, p in model.named_parameters() if part_of(n) in ("body", "fpn")}
    assert all(not p.requires_grad for n, p in model.named_parameters() if n in frozen)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    model.train()
    image, target = synthetic_pair(0, height=64, width=96)
    torch.manual_seed(0)
    loss = sum(model([image], [target]).values())
    loss.backward()
    optimizer.step()
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], p) for n, p in frozen.items())
    assert not torch.equal(params["roi_heads.occlusion_head.fc.weight"],
                           tiny("mrcnn_asn", seed=0).roi_heads.occlusion_head.fc.weight)


def test_trunk_model_is_the_whole_pretraining_model(tmp_path):
    source = tiny("mrcnn", seed=5)
    path = write_trunk(tmp_path / "trunk.pt", source)
    model, meta = trunk_model(path)
    assert not model.training and meta["parts"] == list(PARTS)
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_bad_trunk_files_are_refused_with_the_reason(tmp_path):
    model = tiny("mrcnn_asn", seed=0)
    with pytest.raises(InputError, match="trunk file not found"):
        load_trunk(model, tmp_path / "missing.pt", PARTS)
    (tmp_path / "corrupt.pt").write_bytes(b"not a zip at all" * 10)
    with pytest.raises(InputError, match="cannot read the trunk file"):
        load_trunk(model, tmp_path / "corrupt.pt", PARTS)
    torch.save({"format": "asn-checkpoint-1", "model": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(InputError, match="not an asn trunk file"):
        load_trunk(model, tmp_path / "checkpoint.pt", PARTS)
    good = write_trunk(tmp_path / "trunk.pt", tiny("mrcnn", seed=1))
    with pytest.raises(InputError, match="classes"):
        load_trunk(build_model("mrcnn", 5, backbone="resnet18_fpn_small", **TINY), good, PARTS)
    with pytest.raises(InputError, match="backbone"):
        load_trunk(build_model("mrcnn", 8, backbone="resnet18_fpn", **{**TINY, "fpn_channels": 16}), good, PARTS)
    with pytest.raises(InputError, match="norm"):
        load_trunk(tiny("mrcnn", seed=0, backbone_norm="frozen_bn"), good, ["body"])
    with pytest.raises(InputError, match="box_conv_channels"):
        load_trunk(tiny("mrcnn", seed=0, box_conv_channels=32), good, PARTS)
    with pytest.raises(InputError, match="KINS categories"):
        load_trunk(model, good, PARTS, label_map={"category_ids": [1, 2, 4]})
    partial = write_trunk(tmp_path / "partial.pt", tiny("mrcnn", seed=1), parts=["body"])
    with pytest.raises(InputError, match="not \\['rpn'\\]"):
        load_trunk(model, partial, ["body", "rpn"])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("trunk-world"))


def pretrain_sets(*extra):
    return sets("pretrain.world.train=4", "pretrain.world.val=2", "pretrain.world.width=256",
                "pretrain.world.height=80", "pretrain.train.iterations=3", "pretrain.train.steps=[2]",
                "pretrain.train.warmup_iterations=1", "pretrain.train.batch_size=2", *extra)


def test_pretrain_then_train_from_the_trunk_end_to_end(tmp_path, world):
    out, work = tmp_path / "trunk", tmp_path / "work"
    asn("pretrain", "--work", str(work), "--out", str(out), "--no-progress", *pretrain_sets())
    summary = json.loads((out / "trunk.json").read_text())
    assert summary["parts"] == list(PARTS) and summary["dtype"] == "float16"
    assert summary["provenance"]["world"]["seed"] == 1000 and summary["provenance"]["iterations"] == 3
    assert (out / "train_log.csv").read_text().count("\n") == 4
    trunk = read_trunk(out / "trunk.pt")
    assert trunk["sha256"] == summary["sha256"]
    # a second pretraining from nothing (same paths: the normalized files name their source)
    # reproduces the file byte for byte (CPU training is deterministic)
    shutil.rmtree(work)
    again = tmp_path / "again"
    asn("pretrain", "--work", str(work), "--out", str(again), "--no-progress", *pretrain_sets())
    assert (again / "trunk.pt").read_bytes() == (out / "trunk.pt").read_bytes()

    run = tmp_path / "run"
    asn("train", "--gt", str(world["gt"]), "--images", str(world["train_images"]), "--out", str(run),
        "--variant", "mrcnn_asn", "--trunk", str(out / "trunk.pt"), "--no-progress",
        *sets("profiles.smoke.model.init=trunk", "profiles.smoke.train.iterations=2",
              "profiles.smoke.train.steps=[1]"))
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    for name, tensor in checkpoint["model"].items():
        if part_of(name) in ("body", "fpn"):  # frozen: still the trunk's bytes
            assert torch.equal(tensor, trunk["state"][canonical_key(name)].float()), name
    train_summary = json.loads((run / "train_summary.json").read_text())
    assert train_summary["trunk"] == {"sha256": trunk["sha256"], "parts": list(PARTS), "frozen": ["body", "fpn"]}
    # the trunk's bytes are part of the run's identity: another trunk, another params hash
    other = tmp_path / "other.pt"
    state = {k: v.clone() for k, v in trunk["state"].items()}
    state["backbone.body.conv1.weight"][0, 0, 0, 0] += 1
    save_trunk(other, state, dtype="float16", meta={k: v for k, v in trunk.items() if k not in ("state", "sha256", "format", "dtype")})
    run2 = tmp_path / "run2"
    asn("train", "--gt", str(world["gt"]), "--images", str(world["train_images"]), "--out", str(run2),
        "--variant", "mrcnn_asn", "--trunk", str(other), "--no-progress",
        *sets("profiles.smoke.model.init=trunk", "profiles.smoke.train.iterations=2",
              "profiles.smoke.train.steps=[1]"))
    assert json.loads((run2 / "train_summary.json").read_text())["params_hash"] != train_summary["params_hash"]


def test_train_refuses_a_missing_or_foreign_trunk_and_writes_nothing(tmp_path, world):
    base = ["train", "--gt", str(world["gt"]), "--images", str(world["train_images"]), "--variant", "mrcnn",
            "--no-progress", *sets("profiles.smoke.model.init=trunk")]
    proc = asn(*base, "--out", str(tmp_path / "a"), check=False)
    assert proc.returncode == 2 and "model.init is 'trunk': pass the shared trunk file" in proc.stderr
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 64)
    proc = asn(*base, "--out", str(tmp_path / "b"), "--trunk", str(tmp_path / "junk.pt"), check=False)
    assert proc.returncode == 2 and "junk.pt: cannot read the trunk file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_pretrain_refuses_the_table4_world_seed(tmp_path):
    proc = asn("pretrain", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o"),
               "--set", "pretrain.world.seed=0", check=False)
    assert proc.returncode == 2 and "must not render the Table 4 images" in proc.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "w").exists()
