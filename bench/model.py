"""Benchmark: ASN overhead in train-step and inference time, and parameter counts.

Side by side in one process, on the same input and backbone, interleaved repetitions after
warm-up, medians:
- ``mrcnn_asn`` vs stock torchvision Mask R-CNN (``torchvision.models.detection.MaskRCNN``
  with its default TwoMLP box head and one mask head, on the same ResNet-FPN backbone);
- ``mrcnn_asn`` vs our ``mrcnn`` (paper Mask R-CNN: 4conv+FC box head, amodal + inmodal mask
  heads), which isolates what OC + MLC add;
- ``panet_asn`` vs ``panet``.
Goal (issue 4): ASN adds at most 25 % train time and 20 % inference time.

Configurations: ``paper`` = R50-FPN on 375x1242 images at native scale (batch 1), ``smoke`` =
ResNet-18 body + 64-channel FPN preset at 128x416 (batch 4); ``*_trained_rpn`` = the same with
foreground-rich proposals in training (:class:`GroundTruthJitterRPN`), closer to real training
where the sampler's 25 % foreground quota is filled. ``mrcnn_asn_released_mlc`` is ASN with
the released code's cheaper MLC (reported for information). Untrained weights (nothing is
downloaded), 8 classes (7 KINS categories + background), synthetic targets. Inference runs
with the default score threshold; untrained models then keep ~100 detections per image, so
the mask heads run on a full detection budget.

Parameter counts of every variant (paper configuration, by part) are reported next to the
paper's figures (PANet 44,056,576; Mask R-CNN + ASN 13,402,240); the paper does not say
which parts its counts cover.

    .venv/bin/python bench/model.py                      # both configurations
    .venv/bin/python bench/model.py --configs smoke --reps 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from typing import Any, Callable

import torch
from torch import nn

from asn.io import write_json_atomic
from asn.model import VARIANTS, build_model, count_parameters
from asn.model.backbones import build_backbone

NUM_CLASSES = 8
CONFIGS: dict[str, dict[str, Any]] = {
    "paper": dict(backbone="resnet50_fpn", height=375, width=1242, batch=1,
                  overrides=dict(min_size=375, max_size=1242), trained_rpn_standin=False),
    "smoke": dict(backbone="resnet18_fpn_small", height=128, width=416, batch=4, overrides={},
                  trained_rpn_standin=False),
}
# the same with foreground-rich proposals (see GroundTruthJitterRPN): an untrained RPN yields few
# foreground RoIs, which hides the cost of everything that runs on foreground RoIs only (mask
# branches, MLC); a trained one fills the sampler's 25 % foreground quota
CONFIGS["paper_trained_rpn"] = {**CONFIGS["paper"], "trained_rpn_standin": True}
CONFIGS["smoke_trained_rpn"] = {**CONFIGS["smoke"], "trained_rpn_standin": True}
PAPER_PARAMETERS = {"panet": 44_056_576, "mrcnn_asn": 13_402_240}


def synthetic_batch(batch: int, height: int, width: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(batch):
        count = 6
        amodal = torch.zeros(count, height, width, dtype=torch.uint8)
        boxes = []
        for index in range(count):
            w = int(torch.randint(width // 12, width // 4, (1,), generator=generator))
            h = int(torch.randint(height // 8, height // 2, (1,), generator=generator))
            x1 = int(torch.randint(0, width - w, (1,), generator=generator))
            y1 = int(torch.randint(0, height - h, (1,), generator=generator))
            amodal[index, y1:y1 + h, x1:x1 + w] = 1
            boxes.append([x1, y1, x1 + w, y1 + h])
        inmodal = amodal.clone()
        for index in range(count - 1):
            inmodal[index] &= 1 - amodal[index + 1:].amax(0)
        images.append(torch.rand(3, height, width, generator=generator))
        targets.append({
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "labels": torch.randint(1, NUM_CLASSES, (count,), generator=generator),
            "amodal_masks": amodal, "inmodal_masks": inmodal, "masks": amodal,
        })
    return images, targets


class GroundTruthJitterRPN(nn.Module):
    """Stand-in for a trained RPN during training: the real RPN runs (same cost and losses),
    then its lowest-ranked proposals are replaced by jittered copies of the ground-truth boxes,
    so the RoI sampler finds as much foreground as behind a trained RPN. The number of
    proposals does not change; inference is untouched."""

    def __init__(self, rpn: nn.Module, share: float = 1 / 3, jitter: float = 0.1):
        super().__init__()
        self.rpn, self.share, self.jitter = rpn, share, jitter

    def forward(self, images, features, targets=None):
        proposals, losses = self.rpn(images, features, targets)
        if not self.training or targets is None:
            return proposals, losses
        generator = torch.Generator().manual_seed(0)
        mixed = []
        for boxes, target in zip(proposals, targets):
            if target["boxes"].shape[0] == 0:
                mixed.append(boxes)
                continue
            budget = int(boxes.shape[0] * self.share)  # leaves the rest for background samples
            copies = max(1, -(-budget // target["boxes"].shape[0]))
            gt = target["boxes"].repeat_interleave(copies, 0)[:budget]
            size = (gt[:, 2:] - gt[:, :2]).repeat(1, 2)
            noise = (torch.rand(gt.shape, generator=generator) * 2 - 1) * self.jitter * size
            jittered = gt + noise.to(gt)
            jittered[:, 2:] = torch.maximum(jittered[:, 2:], jittered[:, :2] + 1)
            mixed.append(torch.cat([jittered, boxes])[: boxes.shape[0]])
        return mixed, losses


def stock_maskrcnn(config: dict[str, Any]) -> nn.Module:
    """torchvision's MaskRCNN with its default heads on the same backbone and sizes."""
    from torchvision.models.detection import MaskRCNN

    from asn.model import variant_defaults

    sizes = {**variant_defaults("mrcnn", config["backbone"]), **config["overrides"]}
    return MaskRCNN(
        build_backbone(config["backbone"]), num_classes=NUM_CLASSES,
        min_size=sizes["min_size"], max_size=sizes["max_size"],
        rpn_pre_nms_top_n_train=sizes["rpn_pre_nms_top_n_train"], rpn_pre_nms_top_n_test=sizes["rpn_pre_nms_top_n_test"],
        rpn_post_nms_top_n_train=sizes["rpn_post_nms_top_n_train"],
        rpn_post_nms_top_n_test=sizes["rpn_post_nms_top_n_test"],
        box_batch_size_per_image=sizes["box_batch_size_per_image"],
    )


def _strip(targets: list[dict], keep: set[str]) -> list[dict]:
    return [{k: v for k, v in t.items() if k in keep} for t in targets]


def make_steps(model: nn.Module, images, targets, stock: bool) -> tuple[Callable[[], None], Callable[[], None]]:
    keys = {"boxes", "labels", "masks"} if stock else {"boxes", "labels", "amodal_masks", "inmodal_masks"}
    targets = _strip(targets, keys)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

    def train_step() -> None:
        model.train()
        losses = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    def inference_step() -> None:
        model.eval()
        with torch.no_grad():
            model(images)

    return train_step, inference_step


def run_config(name: str, reps: int, warmup: int) -> dict[str, Any]:
    config = CONFIGS[name]
    torch.manual_seed(0)
    images, targets = synthetic_batch(config["batch"], config["height"], config["width"], seed=0)
    models: dict[str, nn.Module] = {"torchvision_maskrcnn": stock_maskrcnn(config)}
    for variant in ("mrcnn", "mrcnn_asn", "panet", "panet_asn"):
        models[variant] = build_model(variant, NUM_CLASSES, backbone=config["backbone"], **config["overrides"])
    models["mrcnn_asn_released_mlc"] = build_model(
        "mrcnn_asn", NUM_CLASSES, backbone=config["backbone"], mlc_variant="released", **config["overrides"]
    )
    if config["trained_rpn_standin"]:
        for model in models.values():
            model.rpn = GroundTruthJitterRPN(model.rpn)
    steps = {key: make_steps(model, images, targets, key == "torchvision_maskrcnn") for key, model in models.items()}
    times: dict[str, dict[str, list[float]]] = {key: {"train": [], "inference": []} for key in models}
    for rep in range(warmup + reps):
        for key, (train_step, inference_step) in steps.items():  # interleaved: drift hits all alike
            for phase, step in (("train", train_step), ("inference", inference_step)):
                start = time.perf_counter()
                step()
                elapsed = time.perf_counter() - start
                if rep >= warmup:
                    times[key][phase].append(elapsed)
        print(f"[{name}] rep {rep + 1}/{warmup + reps} done", file=sys.stderr, flush=True)
    medians = {key: {phase: statistics.median(v) for phase, v in phases.items()} for key, phases in times.items()}

    def ratio(a: str, b: str, phase: str) -> float:
        return medians[a][phase] / medians[b][phase]

    comparisons = {}
    for label, (a, b) in {
        "mrcnn_asn_vs_torchvision_maskrcnn": ("mrcnn_asn", "torchvision_maskrcnn"),
        "mrcnn_asn_vs_mrcnn": ("mrcnn_asn", "mrcnn"),
        "mrcnn_asn_released_mlc_vs_mrcnn": ("mrcnn_asn_released_mlc", "mrcnn"),
        "panet_asn_vs_panet": ("panet_asn", "panet"),
    }.items():
        train, inference = ratio(a, b, "train"), ratio(a, b, "inference")
        comparisons[label] = {
            "train_time_ratio": round(train, 3), "inference_time_ratio": round(inference, 3),
            "meets_goal_train_le_1.25": train <= 1.25, "meets_goal_inference_le_1.20": inference <= 1.20,
        }
    return {
        "input": {"batch": config["batch"], "height": config["height"], "width": config["width"],
                  "backbone": config["backbone"], "overrides": config["overrides"],
                  "trained_rpn_standin": config["trained_rpn_standin"]},
        "median_seconds": {k: {p: round(v, 4) for p, v in d.items()} for k, d in medians.items()},
        "samples_seconds": {k: {p: [round(x, 4) for x in v] for p, v in d.items()} for k, d in times.items()},
        "comparisons": comparisons,
    }


def parameter_report() -> dict[str, Any]:
    report: dict[str, Any] = {}
    for variant in VARIANTS:
        counts = count_parameters(build_model(variant, NUM_CLASSES, backbone="resnet50_fpn"))
        asn_parts = counts["occlusion_branch"] + sum(v for k, v in counts.items() if k.endswith("_mlc"))
        report[variant] = {**counts, "heads_total": counts["total"] - counts["backbone_body"] - counts["fpn"]
                           - counts["panet_bottom_up"] - counts["rpn"], "asn_additions": asn_parts}
        if variant in PAPER_PARAMETERS:
            report[variant]["paper"] = PAPER_PARAMETERS[variant]
    stock = stock_maskrcnn(CONFIGS["paper"])
    report["torchvision_maskrcnn"] = {"total": sum(p.numel() for p in stock.parameters())}
    report["_covers"] = (
        "resnet50_fpn, 8 classes. backbone_body = ResNet-50 without fc; fpn = torchvision FPN (256 ch); "
        "panet_bottom_up = PANet's bottom-up path; rpn = RPN head; box_branch = 4conv+FC head + predictor; "
        "occlusion_branch = OC 4conv+FC head + 2-way predictor; <name>_mask_branch = 4 convs + deconv + logits "
        "(+ PANet fc fusion) without MLC; <name>_mlc = that branch's MLC extraction + combination; "
        "asn_additions = occlusion_branch + all MLC; total = everything. The paper's counts do not state "
        "their coverage."
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="smoke,smoke_trained_rpn,paper,paper_trained_rpn", help="comma list of: " + ", ".join(CONFIGS))
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per model and phase (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads (0 = torch default); 1 by default because on a shared 2-core machine "
        "spinning intra-op threads make single timings swing several-fold",
    )
    parser.add_argument("--out", default="reports/bench/model.json", help="JSON output path (written atomically)")
    args = parser.parse_args(argv)
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {unknown}; valid: {sorted(CONFIGS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict[str, Any] = {
        "goal": "ASN adds at most 25% train time and 20% inference time (ratios = ASN / baseline medians)",
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "device": "cpu"},
        "reps": args.reps, "warmup": args.warmup,
        "configs": {name: run_config(name, args.reps, args.warmup) for name in names},
        "parameters": parameter_report(),
    }
    result["command"] = " ".join(["python", "bench/model.py", *sys.argv[1:]])
    write_json_atomic(args.out, result, indent=True)
    for name, config in result["configs"].items():
        for label, comparison in config["comparisons"].items():
            print(f"{name:18s} {label:40s} train x{comparison['train_time_ratio']:.3f} "
                  f"inference x{comparison['inference_time_ratio']:.3f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
