"""Unit tests of the ASN model parts: label rules, losses, transform, MLC, target validation,
builder options and local backbone weights."""

from __future__ import annotations

import pytest
import torch

from asn.errors import InputError
from asn.model import VARIANTS, build_model, variant_defaults
from asn.model.backbones import build_backbone
from asn.model.losses import mask_loss, occlusion_loss
from asn.model.mlc import MultiLevelCoding
from asn.model.targets import (
    occluded_masks,
    occlusion_labels,
    occlusion_labels_released,
    occlusion_ratios_from_masks,
    validate_targets,
)
from asn.model.transform import AmodalRCNNTransform


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _square_masks():
    amodal = torch.zeros(3, 10, 10, dtype=torch.uint8)
    inmodal = torch.zeros_like(amodal)
    amodal[0, 0:4, 0:5] = 1  # area 20
    inmodal[0, 0:4, 0:4] = 1  # visible 16 -> ratio 0.2
    amodal[1, 5:10, 5:10] = 1
    inmodal[1, 5:10, 5:10] = 1  # not occluded
    # instance 2: empty amodal mask (degenerate annotation)
    return amodal, inmodal


def test_occlusion_ratios_from_masks():
    amodal, inmodal = _square_masks()
    ratios = occlusion_ratios_from_masks(amodal, inmodal)
    assert torch.allclose(ratios, torch.tensor([0.2, 0.0, 0.0]))
    assert occlusion_ratios_from_masks(amodal[:0], inmodal[:0]).shape == (0,)
    invisible = occluded_masks(amodal, inmodal)
    assert invisible[0].sum() == 4 and invisible[1].sum() == 0


def test_occlusion_labels_threshold_is_strict_and_background_is_negative():
    ratios = torch.tensor([0.0, 0.05, 0.06, 0.5, 0.9])
    labels = torch.tensor([1, 2, 3, 0, -1])
    assert occlusion_labels(ratios, labels, 0.05).tolist() == [0, 0, 1, 0, 0]
    assert occlusion_labels(ratios, torch.ones(5, dtype=torch.int64), 0.0).tolist() == [0, 1, 1, 1, 1]
    assert occlusion_labels(torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.05).shape == (0,)


def test_occlusion_labels_released_looks_inside_the_roi_window():
    amodal, inmodal = _square_masks()
    hidden = occluded_masks(amodal, inmodal)  # instance 0 hides column x=4, rows 0..3
    rois = torch.tensor([[0.0, 0.0, 5.0, 4.0], [0.0, 0.0, 3.0, 3.0], [0.0, 0.0, 5.0, 4.0], [5.0, 5.0, 10.0, 10.0]])
    labels = torch.tensor([1, 1, 0, 1])
    matched = torch.tensor([0, 0, 0, 1])
    assert occlusion_labels_released(rois, labels, matched, hidden).tolist() == [1, 0, 0, 0]
    empty = occlusion_labels_released(rois, labels, matched, hidden[:0])
    assert empty.tolist() == [0, 0, 0, 0]


def test_occlusion_loss_weights_positives_and_handles_empty():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 1, 1])
    nll = -torch.log_softmax(logits, 1)[torch.arange(3), labels]
    expected = (nll[0] + 8 * nll[1] + 8 * nll[2]) / 17
    assert torch.isclose(occlusion_loss(logits, labels, 8.0), expected)
    assert not torch.isclose(occlusion_loss(logits, labels, 1.0), expected)
    empty = occlusion_loss(torch.zeros(0, 2, requires_grad=True), torch.zeros(0, dtype=torch.int64), 8.0)
    assert empty.item() == 0.0 and empty.requires_grad


def test_mask_loss_uses_the_given_ground_truth_set():
    amodal = torch.zeros(1, 60, 60, dtype=torch.uint8)
    amodal[0, 10:50, 10:50] = 1
    inmodal = amodal.clone()
    inmodal[0, :, 30:] = 0  # right half hidden
    boxes = [torch.tensor([[10.0, 10.0, 50.0, 50.0]])]
    labels = [torch.tensor([2])]
    matched = [torch.tensor([0])]
    # logits that say "the whole box, for class 2 only": right for amodal, half wrong for inmodal
    logits = torch.full((1, 3, 28, 28), -10.0)
    logits[:, 2] = 10.0
    loss_amodal = mask_loss(logits, boxes, [amodal], labels, matched)
    loss_inmodal = mask_loss(logits, boxes, [inmodal], labels, matched)
    assert loss_amodal < 0.5 and loss_inmodal > 4.0
    # the class of the matched ground truth selects the channel
    assert mask_loss(logits, boxes, [amodal], [torch.tensor([1])], matched) > 9.0
    empty = mask_loss(torch.zeros(0, 3, 28, 28, requires_grad=True), [boxes[0][:0]], [amodal], labels, [matched[0][:0]])
    assert empty.item() == 0.0 and empty.requires_grad


def test_transform_resizes_both_mask_sets_and_pastes_both_back():
    transform = AmodalRCNNTransform(64, 128, [0.0] * 3, [1.0] * 3)
    image = torch.rand(3, 50, 80)
    amodal = torch.zeros(1, 50, 80, dtype=torch.uint8)
    amodal[0, 10:30, 20:60] = 1
    inmodal = amodal.clone()
    inmodal[0, :, 40:] = 0
    target = {"boxes": torch.tensor([[20.0, 10.0, 60.0, 30.0]]), "labels": torch.tensor([1]),
              "amodal_masks": amodal, "inmodal_masks": inmodal}
    transform.train()
    images, targets = transform([image], [target])
    height, width = images.image_sizes[0]
    assert (height, width) == (64, 102)
    for key in ("amodal_masks", "inmodal_masks"):
        assert targets[0][key].shape == (1, 64, 102) and targets[0][key].dtype == torch.uint8
    assert targets[0]["amodal_masks"].sum() > targets[0]["inmodal_masks"].sum() > 0
    assert target["amodal_masks"].shape == (1, 50, 80)  # the caller's target is untouched
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "amodal_masks": torch.zeros(0, 50, 80, dtype=torch.uint8)}
    _, targets = transform([image], [empty])
    assert targets[0]["amodal_masks"].shape == (0, 64, 102)

    transform.eval()
    probs = torch.ones(2, 1, 28, 28)
    result = [{"boxes": torch.tensor([[0.0, 0.0, 51.0, 32.0], [10.0, 10.0, 20.0, 20.0]]),
               "amodal_masks": probs, "inmodal_masks": probs * 0.5, "invisible_masks": probs * 0.25}]
    out = transform.postprocess(result, [(64, 102)], [(50, 80)])
    for key in ("amodal_masks", "inmodal_masks", "invisible_masks"):
        assert out[0][key].shape == (2, 1, 50, 80)
    # the first box covers about the top-left 40x25 of the original image
    assert out[0]["amodal_masks"][0, 0, 5, 5] > 0.9 and out[0]["amodal_masks"][0, 0, 45, 70] == 0
    assert torch.isclose(out[0]["inmodal_masks"][0, 0, 5, 5], torch.tensor(0.5))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"extraction_fusion": "add"},
        {"order_adjust": False, "extraction_convs": 1},
        {"extraction_convs": 3, "combination_convs": 1},
        {"variant": "released"},
    ],
)
def test_mlc_shapes_and_switches(options):
    mlc = MultiLevelCoding(16, 8, **options)
    box, occ, mask = torch.rand(5, 16, 7, 7), torch.rand(5, 16, 7, 7), torch.rand(5, 8, 14, 14)
    assert mlc.extract(box, occ).shape == (5, 8, 14, 14)
    assert mlc(mask, box, occ).shape == (5, 8, 14, 14)
    convs = [m for m in mlc.combination if isinstance(m, torch.nn.Conv2d)]
    expected = 2 if options.get("variant") == "released" else options.get("combination_convs", 3)
    assert len(convs) == expected and convs[-1].out_channels == 8
    first = mlc.extraction[0]
    expected_in = 16 if options.get("extraction_fusion") == "add" else 32
    assert first.in_channels == expected_in
    deconv_first = isinstance(first, torch.nn.ConvTranspose2d)
    assert deconv_first == (options.get("variant") != "released" and options.get("order_adjust", True))


@pytest.mark.parametrize(
    "options, match",
    [({"extraction_fusion": "mul"}, "mlc_extraction_fusion"), ({"extraction_convs": 4}, "mlc_extraction_convs"),
     ({"combination_convs": 0}, "mlc_combination_convs"), ({"variant": "v2"}, "mlc_variant")],
)
def test_mlc_rejects_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        MultiLevelCoding(16, 8, **options)


def _target(num=2, height=20, width=30):
    masks = torch.zeros(num, height, width, dtype=torch.uint8)
    masks[:, 2:8, 3:12] = 1
    return {"boxes": torch.tensor([[3.0, 2.0, 12.0, 8.0]] * num), "labels": torch.ones(num, dtype=torch.int64),
            "amodal_masks": masks, "inmodal_masks": masks.clone()}


@pytest.mark.parametrize(
    "mutate, error, words",
    [
        (lambda t: t.pop("amodal_masks"), ValueError, ["targets[1]", "amodal_masks", "missing"]),
        (lambda t: t.update(labels=torch.ones(3, dtype=torch.int64)), ValueError, ["targets[1]", "labels", "(2,)"]),
        (lambda t: t.update(labels=torch.tensor([1, 9])), ValueError, ["targets[1]", "labels", "1..3"]),
        (lambda t: t.update(labels=torch.tensor([1.0, 1.0])), TypeError, ["targets[1]", "labels", "int64"]),
        (lambda t: t["boxes"].__setitem__((0, 2), 1.0), ValueError, ["targets[1]", "boxes", "x2<=x1"]),
        (lambda t: t.update(boxes=t["boxes"].long()), TypeError, ["targets[1]", "boxes", "float"]),
        (lambda t: t.update(inmodal_masks=t["inmodal_masks"][:, :10]), ValueError, ["targets[1]", "inmodal_masks", "(2, 20, 30)"]),
        (lambda t: t.update(amodal_masks=t["amodal_masks"].float()), TypeError, ["targets[1]", "amodal_masks", "uint8"]),
        (lambda t: t.update(occlusion_ratios=torch.tensor([0.5, 2.0])), ValueError, ["targets[1]", "occlusion_ratios"]),
    ],
)
def test_validate_targets_names_image_key_and_expectation(mutate, error, words):
    images = [torch.rand(3, 20, 30), torch.rand(3, 20, 30)]
    targets = [_target(), _target()]
    mutate(targets[1])
    with pytest.raises(error) as info:
        validate_targets(images, targets, num_classes=4, need_amodal_masks=True, need_inmodal_masks=True,
                         need_occlusion_ratios=True)
    for word in words:
        assert word in str(info.value)


def test_validate_targets_fills_occlusion_ratios_and_accepts_empty():
    images = [torch.rand(3, 20, 30), torch.rand(3, 20, 30)]
    first = _target()
    first["inmodal_masks"][0, 2:8, 3:6] = 0
    empty = {"boxes": torch.tensor([]), "labels": torch.tensor([])}
    out = validate_targets(images, [first, empty], num_classes=4, need_amodal_masks=False, need_inmodal_masks=False,
                           need_occlusion_ratios=False)
    assert out[1]["boxes"].shape == (0, 4) and out[1]["labels"].dtype == torch.int64
    out = validate_targets(images[:1], [first], num_classes=4, need_amodal_masks=True, need_inmodal_masks=True,
                           need_occlusion_ratios=True)
    assert torch.allclose(out[0]["occlusion_ratios"], torch.tensor([1 / 3, 0.0]))
    assert "occlusion_ratios" not in first
    with pytest.raises(ValueError, match="2 images but 1 targets"):
        validate_targets(images, [first], num_classes=4, need_amodal_masks=True, need_inmodal_masks=True,
                         need_occlusion_ratios=True)
    no_inmodal = {k: v for k, v in first.items() if k != "inmodal_masks"}
    with pytest.raises(ValueError, match="occlusion_ratios"):
        validate_targets(images[:1], [no_inmodal], num_classes=4, need_amodal_masks=True, need_inmodal_masks=False,
                         need_occlusion_ratios=True)


def test_builder_rejects_unknown_names_and_lists_valid_ones():
    with pytest.raises(ValueError, match="mrcnn_asn"):
        build_model("mask_rcnn_plus", 4, backbone="resnet18_fpn_small")
    with pytest.raises(ValueError) as info:
        build_model("mrcnn_asn", 4, backbone="resnet18_fpn_small", mlc_levle=2)
    assert "mlc_levle" in str(info.value) and "mlc_box_level" in str(info.value)
    with pytest.raises(ValueError, match="resnet18_fpn_small"):
        build_model("mrcnn", 4, backbone="vgg16")
    with pytest.raises(ValueError, match="mlc_box_level"):
        build_model("mrcnn_asn", 4, backbone="resnet18_fpn_small", mlc_box_level=5)
    with pytest.raises(ValueError, match="occlusion"):
        build_model("mrcnn", 4, backbone="resnet18_fpn_small", mlc=True)
    with pytest.raises(ValueError, match="anchor_sizes must be 5"):
        build_model("mrcnn", 4, backbone="resnet18_fpn_small", anchor_sizes=[8, 16, 32])


def test_anchor_sizes_follow_the_preset_and_the_override():
    def sizes(model):
        return [s[0] for s in model.rpn.anchor_generator.sizes]

    assert sizes(build_model("mrcnn", 4, backbone="resnet50_fpn")) == [32, 64, 128, 256, 512]
    assert sizes(build_model("mrcnn", 4, backbone="resnet18_fpn_small")) == [8, 16, 32, 64, 128]
    assert sizes(build_model("mrcnn", 4, backbone="resnet18_fpn_small", anchor_sizes=[4, 8, 16, 32, 64])) == [4, 8, 16, 32, 64]


def test_variant_defaults_cover_every_variant_and_knob():
    for variant, switches in VARIANTS.items():
        defaults = variant_defaults(variant, "resnet18_fpn_small")
        assert {k: defaults[k] for k in switches} == switches
        for key in ("occlusion_threshold", "occlusion_positive_weight", "occlusion_rule", "mlc_box_level",
                    "mlc_mask_level", "mlc_extraction_fusion", "mlc_order_adjust", "mlc_extraction_convs",
                    "mlc_combination_convs", "mlc_variant", "min_size", "fpn_channels", "box_batch_size_per_image"):
            assert key in defaults
    assert variant_defaults("mrcnn_asn", "resnet50_fpn")["fpn_channels"] == 256
    assert variant_defaults("mrcnn_asn", "resnet18_fpn_small")["fpn_channels"] == 64
    assert variant_defaults("mrcnn_asn")["occlusion_positive_weight"] == 8.0


def test_backbone_loads_local_weights_and_reports_bad_files(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(1)
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(reference.state_dict(), path)
    backbone = build_backbone("resnet18_fpn_small", weights_path=path)
    assert torch.equal(backbone.body.conv1.weight, reference.conv1.weight)
    assert torch.equal(backbone.body.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    assert not backbone.body.conv1.weight.requires_grad and backbone.body.layer4[0].conv1.weight.requires_grad
    model = build_model("mrcnn", 4, backbone="resnet18_fpn_small", weights_path=path)
    assert torch.equal(model.backbone.body.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)

    with pytest.raises(InputError, match="not found"):
        build_backbone("resnet18_fpn_small", weights_path=tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(InputError, match="does not fit"):
        build_backbone("resnet18_fpn_small", weights_path=wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        build_backbone("resnet18_fpn_small", weights_path=garbage)


def test_params_yaml_model_section_builds_and_overrides_apply():
    from pathlib import Path

    from asn.config import load_params
    from asn.model import build_model_from_params

    params_path = Path(__file__).resolve().parents[1] / "params.yaml"
    model = build_model_from_params(load_params(params_path)["model"])
    assert model.roi_heads.has_occlusion() and model.roi_heads.has_mlc()
    plain = build_model_from_params(
        load_params(params_path, ["model.variant=mrcnn", "model.overrides={box_batch_size_per_image: 32}"])["model"])
    assert not plain.roi_heads.has_occlusion()
    assert plain.roi_heads.fg_bg_sampler.batch_size_per_image == 32
    with pytest.raises(ValueError, match="unknown model option"):
        build_model_from_params({**load_params(params_path)["model"], "mlc_levels": 2})
