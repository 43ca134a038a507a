"""End-to-end tests of every model variant on CPU with tiny images and widths: train step
(loss keys, finite, gradients reach every module), eval step (keys, shapes, original size),
images without objects, bad targets, a seeded loss regression and a tiny overfit.

The loss-regression numbers live in tests/data/model_loss_regression.json; regenerate them
(only after an intended change of the model's numerics) with

    .venv/bin/python tests/test_model.py --regenerate
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from asn.model import VARIANTS, build_model

NUM_CLASSES = 4
REGRESSION_FILE = Path(__file__).parent / "data" / "model_loss_regression.json"
REGRESSION_VARIANTS = ("mrcnn_asn", "panet_asn", "orcnn")
# small enough for a 2-core CI; the paper structure (4 convs, 7x7 / 14x14 RoIs, MLC) is kept
TINY = dict(
    min_size=64, max_size=96, fpn_channels=16, box_conv_channels=16, box_fc_dim=32, mask_conv_channels=16,
    rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50, rpn_pre_nms_top_n_test=100,
    rpn_post_nms_top_n_test=50, box_batch_size_per_image=32, box_detections_per_img=20, box_score_thresh=0.0,
)
EXPECTED_LOSSES = {
    "mrcnn_inmodal": {"loss_inmodal_mask"},
    "mrcnn_amodal": {"loss_amodal_mask"},
    "mrcnn": {"loss_amodal_mask", "loss_inmodal_mask"},
    "mrcnn_oc": {"loss_amodal_mask", "loss_inmodal_mask", "loss_occlusion"},
    "mrcnn_asn": {"loss_amodal_mask", "loss_inmodal_mask", "loss_occlusion"},
    "panet": {"loss_amodal_mask", "loss_inmodal_mask"},
    "panet_asn": {"loss_amodal_mask", "loss_inmodal_mask", "loss_occlusion"},
    "orcnn": {"loss_amodal_mask", "loss_inmodal_mask", "loss_invisible_mask"},
}
BASE_LOSSES = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def synthetic_pair(seed: int, height: int = 70, width: int = 100, count: int = 3):
    """One image with ``count`` rectangles, each partly hidden by the next (amodal / inmodal)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(3, height, width, generator=generator) * 0.2
    amodal = torch.zeros(count, height, width, dtype=torch.uint8)
    boxes = []
    for index in range(count):
        x1 = int(torch.randint(0, width // 2, (1,), generator=generator))
        y1 = int(torch.randint(0, height // 2, (1,), generator=generator))
        x2, y2 = min(width, x1 + 25 + 6 * index), min(height, y1 + 20 + 4 * index)
        amodal[index, y1:y2, x1:x2] = 1
        image[index % 3, y1:y2, x1:x2] += 0.7
        boxes.append([x1, y1, x2, y2])
    inmodal = amodal.clone()
    for index in range(count - 1):
        inmodal[index] &= 1 - amodal[index + 1]  # the later instance is in front
    return image, {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.tensor([1 + index % (NUM_CLASSES - 1) for index in range(count)]),
        "amodal_masks": amodal,
        "inmodal_masks": inmodal,
    }


def empty_pair(height: int = 64, width: int = 90):
    return torch.rand(3, height, width), {
        "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
        "amodal_masks": torch.zeros(0, height, width, dtype=torch.uint8),
        "inmodal_masks": torch.zeros(0, height, width, dtype=torch.uint8),
    }


def tiny_model(variant: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_model(variant, NUM_CLASSES, backbone="resnet18_fpn_small", **{**TINY, **overrides})


def seeded_losses(variant: str) -> dict[str, float]:
    model = tiny_model(variant, seed=0)
    model.train()
    images, targets = zip(synthetic_pair(1), synthetic_pair(2))
    torch.manual_seed(123)  # the RPN and RoI samplers draw from the global generator
    losses = model(list(images), list(targets))
    return {key: float(value.detach()) for key, value in sorted(losses.items())}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_train_and_eval_step(variant):
    model = tiny_model(variant)
    model.train()
    image, target = synthetic_pair(0)
    blank, no_objects = empty_pair()
    losses = model([image, blank], [target, no_objects])
    assert set(losses) == BASE_LOSSES | EXPECTED_LOSSES[variant]
    assert all(torch.isfinite(value) for value in losses.values())
    sum(losses.values()).backward()
    no_grad = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:10]}"
    new_modules = [model.roi_heads.box_head, *model.roi_heads.mask_branches.values()]
    if model.roi_heads.has_occlusion():
        new_modules.append(model.roi_heads.occlusion_head)
    if variant.startswith("panet"):
        new_modules.append(model.backbone.augmentation)
    for module in new_modules:
        assert any(p.grad.abs().sum() > 0 for p in module.parameters()), type(module).__name__
    if model.roi_heads.has_mlc():
        for branch in model.roi_heads.mask_branches.values():
            assert any(p.grad.abs().sum() > 0 for p in branch.mlc.parameters())

    model.eval()
    odd, _ = synthetic_pair(5, height=57, width=83)
    with torch.no_grad():
        outputs = model([image, odd])
    expected_keys = {"boxes", "labels", "scores", "amodal_masks", "inmodal_masks", "occlusion_scores"}
    if variant == "orcnn":
        expected_keys.add("invisible_masks")
    assert set(model.output_sources) == expected_keys - {"boxes", "labels", "scores"}
    for output, (height, width) in zip(outputs, [(70, 100), (57, 83)]):
        assert set(output) == expected_keys
        count = output["boxes"].shape[0]
        assert count > 0  # score threshold 0: the untrained model still reports boxes
        assert output["boxes"].shape == (count, 4) and output["labels"].shape == (count,)
        assert ((output["labels"] >= 1) & (output["labels"] < NUM_CLASSES)).all()
        # clipped to the resized image, then scaled back: allow float rounding
        assert output["boxes"][:, 2].max() <= width + 1e-3 and output["boxes"][:, 3].max() <= height + 1e-3
        for key in expected_keys & {"amodal_masks", "inmodal_masks", "invisible_masks"}:
            assert output[key].shape == (count, 1, height, width)
            assert 0 <= output[key].min() and output[key].max() <= 1
        assert output["occlusion_scores"].shape == (count,)
        assert ((output["occlusion_scores"] >= 0) & (output["occlusion_scores"] <= 1)).all()


@pytest.mark.parametrize("variant", ["mrcnn_asn", "panet_asn"])
def test_eval_without_detections_returns_empty_outputs(variant):
    model = tiny_model(variant, box_score_thresh=0.999)
    model.eval()
    image, _ = synthetic_pair(0)
    with torch.no_grad():
        (output,) = model([image])
    assert output["boxes"].shape == (0, 4) and output["occlusion_scores"].shape == (0,)
    assert output["amodal_masks"].shape == output["inmodal_masks"].shape == (0, 1, 70, 100)


def test_batch_of_images_without_objects_trains():
    model = tiny_model("mrcnn_asn")
    model.train()
    losses = model(*map(list, zip(empty_pair(), empty_pair(60, 80))))
    assert torch.isfinite(sum(losses.values()))
    assert losses["loss_amodal_mask"] == 0 and losses["loss_box_reg"] == 0
    sum(losses.values()).backward()


def test_bad_targets_raise_clear_errors_through_the_model():
    model = tiny_model("mrcnn_asn")
    model.train()
    image, target = synthetic_pair(0)
    missing = {k: v for k, v in target.items() if k != "inmodal_masks"}
    with pytest.raises(ValueError, match=r"targets\[1\]\['inmodal_masks'\]"):
        model([image, image], [target, missing])
    with pytest.raises(ValueError, match="need one target dict per image"):
        model([image, image], [target])
    with pytest.raises(ValueError, match="targets"):
        model([image])
    with pytest.raises(ValueError, match=r"images\[0\]"):
        model([image[0]], [target])
    # an amodal-only variant trains without inmodal masks, the inmodal one needs them
    amodal_only = tiny_model("mrcnn_amodal")
    amodal_only.train()
    assert "loss_amodal_mask" in amodal_only([image], [missing])
    inmodal_only = tiny_model("mrcnn_inmodal")
    inmodal_only.train()
    with pytest.raises(ValueError, match="inmodal_masks"):
        inmodal_only([image], [missing])


def test_released_occlusion_rule_and_mlc_variants_train():
    image, target = synthetic_pair(3)
    for overrides in (
        {"occlusion_rule": "released"},
        {"mlc_variant": "released", "mlc_box_level": 3, "mlc_mask_level": 0},
        {"mlc_extraction_fusion": "add", "mlc_order_adjust": False, "mlc_extraction_convs": 1,
         "mlc_combination_convs": 1, "mlc_box_level": 0, "mlc_mask_level": 3},
    ):
        model = tiny_model("mrcnn_asn", **overrides)
        model.train()
        losses = model([image], [target])
        assert torch.isfinite(sum(losses.values())), overrides


@pytest.mark.parametrize("levels", [(0, 0), (1, 1), (3, 3), (0, 3), (2, 4)])
def test_mlc_taps_the_paper_levels(levels):
    """MLC(a, b) as the paper defines it: the box and occlusion features after their a-th conv and
    the mask feature after its b-th conv reach MLC, 0 being the RoI feature before any conv."""
    box_level, mask_level = levels
    model = tiny_model("mrcnn_asn", mlc_box_level=box_level, mlc_mask_level=mask_level)
    model.train()
    heads = model.roi_heads
    seen: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, inputs, output):
            seen[name] = output.detach().clone()
        return hook

    def keep_mlc_inputs(module, inputs):
        seen["mlc_mask"], seen["mlc_box"], seen["mlc_occlusion"] = (t.detach().clone() for t in inputs)

    handles = [heads.box_roi_pool.register_forward_hook(keep("box_roi")),
               heads.amodal_mask_roi_pool.register_forward_hook(keep("mask_roi")),
               heads.mask_branches["amodal"].mlc.register_forward_pre_hook(keep_mlc_inputs)]
    for k in range(4):
        handles.append(heads.box_head.convs[k].register_forward_hook(keep(f"box_conv{k + 1}")))
        handles.append(heads.occlusion_head.convs[k].register_forward_hook(keep(f"occlusion_conv{k + 1}")))
        handles.append(heads.mask_branches["amodal"].convs[k].register_forward_hook(keep(f"mask_conv{k + 1}")))
    image, target = synthetic_pair(0)
    torch.manual_seed(0)
    model([image], [target])
    for handle in handles:
        handle.remove()

    # only the foreground RoIs feed the mask branches: find them as the rows of the box RoI
    # features that MLC received
    fg = seen["mlc_box"].shape[0]
    assert fg > 0
    expected_box = seen["box_roi"] if box_level == 0 else seen[f"box_conv{box_level}"]
    expected_occlusion = seen["box_roi"] if box_level == 0 else seen[f"occlusion_conv{box_level}"]
    rows = [int(torch.nonzero((expected_box.flatten(1) == seen["mlc_box"][i].flatten()).all(1))[0])
            for i in range(fg)]
    assert torch.equal(seen["mlc_box"], expected_box[rows])
    assert torch.equal(seen["mlc_occlusion"], expected_occlusion[rows])
    for other in range(5):  # and at no other level
        if other != box_level:
            candidate = seen["box_roi"] if other == 0 else seen[f"box_conv{other}"]
            assert candidate.shape != seen["mlc_box"].shape[1:] or not torch.equal(candidate[rows], seen["mlc_box"])
    expected_mask = seen["mask_roi"] if mask_level == 0 else seen[f"mask_conv{mask_level}"]
    assert torch.equal(seen["mlc_mask"], expected_mask)
    for other in range(5):
        if other != mask_level:
            candidate = seen["mask_roi"] if other == 0 else seen[f"mask_conv{other}"]
            assert not torch.equal(candidate, seen["mlc_mask"])


def test_mlc_level_zero_is_refused_under_adaptive_pooling():
    with pytest.raises(ValueError, match="level 0"):
        tiny_model("panet_asn", mlc_box_level=0, mlc_mask_level=1)
    with pytest.raises(ValueError, match="0..4"):
        tiny_model("mrcnn_asn", mlc_box_level=5)


@pytest.mark.parametrize("variant", ["mrcnn_asn", "panet_asn"])
def test_group_norm_everywhere_trains_and_infers(variant):
    model = tiny_model(variant, head_norm="gn", backbone_norm="gn")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    # the box / occlusion / mask / MLC convs each get one (bias-free convs before them)
    head_norms = [m for m in model.roi_heads.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(head_norms) >= 4 * 4 and len(norms) > len(head_norms)
    for branch in model.roi_heads.mask_branches.values():
        assert any(isinstance(m, torch.nn.GroupNorm) for m in branch.mlc.modules())
    model.train()
    image, target = synthetic_pair(4)
    losses = model([image], [target])
    assert torch.isfinite(sum(losses.values()))
    model.eval()
    with torch.no_grad():
        assert model([image])[0]["amodal_masks"].shape[1:] == (1, 70, 100)


def test_unknown_norms_and_inference_order_are_refused():
    for overrides, message in (({"head_norm": "bn"}, "head_norm"), ({"backbone_norm": "ln"}, "backbone_norm"),
                               ({"inference_order": "fast"}, "inference_order")):
        with pytest.raises(ValueError, match=message):
            tiny_model("mrcnn_asn", **overrides)


def test_paper_inference_order_scores_the_regressed_boxes_in_a_second_pass():
    """Paper 4.3: each proposal's regressed box goes back through the box branch, whose class
    scores rank it before NMS; the released order keeps the first-pass scores."""
    model = tiny_model("mrcnn_asn", seed=2, box_detections_per_img=100, box_nms_thresh=1.0)
    model.eval()
    image, _ = synthetic_pair(6)
    heads = model.roi_heads
    captured = {}
    original = heads.postprocess_detections

    def spy(class_logits, box_regression, proposals, image_shapes):
        captured.update(logits=class_logits, regression=box_regression, proposals=proposals)
        return original(class_logits, box_regression, proposals, image_shapes)

    heads.postprocess_detections = spy
    with torch.no_grad():
        released = model([image])[0]
        first = {k: (v.clone() if isinstance(v, torch.Tensor) else [p.clone() for p in v]) for k, v in captured.items()}
        heads.inference_order = "paper"
        paper = model([image])[0]
    second = captured
    # the paper order hands NMS the regressed boxes with zero deltas and second-pass logits
    assert torch.equal(second["regression"], torch.zeros_like(second["regression"]))
    expected_boxes = heads.regressed_boxes(first["logits"], first["regression"], first["proposals"],
                                           [tuple(model.transform(([image]))[0].image_sizes[0])])
    assert torch.allclose(second["proposals"][0], expected_boxes[0])
    assert not torch.allclose(second["logits"], first["logits"])  # scores come from the second pass
    for output in (released, paper):
        assert set(output) >= {"boxes", "scores", "amodal_masks", "inmodal_masks", "occlusion_scores"}
        assert output["amodal_masks"].shape[0] == output["boxes"].shape[0] > 0


def test_regressed_boxes_take_the_best_foreground_class_and_clip():
    heads = tiny_model("mrcnn").roi_heads
    proposals = [torch.tensor([[10.0, 10.0, 30.0, 40.0], [0.0, 0.0, 20.0, 20.0]])]
    logits = torch.tensor([[5.0, 0.0, 2.0, 1.0], [0.0, 3.0, 0.0, 0.0]])  # background highest in row 0
    deltas = torch.zeros(2, 4 * NUM_CLASSES)
    deltas[0, 8:12] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # class 2: shift right by 0.1 * width (weights 10)
    deltas[1, 4:8] = torch.tensor([-10.0, 0.0, 0.0, 0.0])  # class 1: far left, clipped at 0
    boxes = heads.regressed_boxes(logits, deltas, proposals, [(50, 35)])[0]
    assert torch.allclose(boxes[0], torch.tensor([12.0, 10.0, 32.0, 40.0]))  # (height 50, width 35): inside
    assert boxes[1, 0] == 0 and boxes[1, 2] >= 0
    assert heads.regressed_boxes(logits[:0], deltas[:0], [torch.zeros(0, 4)], [(50, 35)])[0].shape == (0, 4)


def test_seeded_losses_match_the_stored_values():
    expected = json.loads(REGRESSION_FILE.read_text())
    for variant in REGRESSION_VARIANTS:
        actual = seeded_losses(variant)
        assert set(actual) == set(expected["losses"][variant])
        for key, value in expected["losses"][variant].items():
            assert math.isclose(actual[key], value, rel_tol=2e-3, abs_tol=1e-5), (variant, key, actual[key], value)


def test_amodal_mask_loss_falls_when_overfitting_one_pair():
    model = tiny_model("mrcnn_amodal", seed=3, rpn_post_nms_top_n_train=30, box_batch_size_per_image=16)
    model.train()
    image, target = synthetic_pair(7)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    history = []
    torch.manual_seed(0)
    for _ in range(30):
        losses = model([image], [target])
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        history.append(float(losses["loss_amodal_mask"].detach()))
    assert sum(history[-5:]) / 5 < 0.6 * sum(history[:3]) / 3, history


def regenerate() -> None:
    """Write the seeded losses of REGRESSION_VARIANTS to tests/data/model_loss_regression.json."""
    payload = {
        "command": ".venv/bin/python tests/test_model.py --regenerate",
        "note": "seeded losses of tiny CPU models (see tests/test_model.py: seeded_losses)",
        "torch": torch.__version__,
        "losses": {variant: seeded_losses(variant) for variant in REGRESSION_VARIANTS},
    }
    REGRESSION_FILE.parent.mkdir(parents=True, exist_ok=True)
    temporary = REGRESSION_FILE.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    temporary.replace(REGRESSION_FILE)
    print(f"wrote {REGRESSION_FILE}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(__doc__)
    regenerate()
