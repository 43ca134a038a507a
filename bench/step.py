"""Speed of one training step and of an evaluation: before vs after issue 17, side by side.

Train step (smoke model, params.yaml's smoke profile, real batches of the Table 4 train split,
batch 2, 2 threads): for every Table 4 variant,
- ``before``: the protocol before the shared trunk: every part trainable (``init: scratch``);
- ``after``: the trunk protocol of params.yaml (``model.freeze`` parts fixed: no backward
  through them, no optimizer work for them);
both seeded alike, blocks interleaved (before, after, after, before, ...) after warm-up,
median milliseconds per step (forward, loss, backward, SGD step). For each variant a
``torch.profiler`` table of the ``after`` step (top ops by self CPU time) and the forward time
per module (hooks) say where the time goes.

Evaluation (a checkpoint on the test split, the prediction loop of ``asn evaluate``):
- ``before``: the model pastes every mask at image size (torchvision's paste_masks_in_image),
  then each is thresholded and encoded (``asn.eval.predictions.masks_to_rles``);
- ``after``: the masks stay in their boxes and are pasted while encoding
  (``paste_masks_to_rles``), as ``asn evaluate`` now does;
the same images, alternated, median seconds; the two predictions must be identical.

Goal (issue 17): ``panet_asn`` train step and an evaluation each >= 1.5x faster.
Writes ``reports/bench/step.json``.

    python bench/step.py --checkpoint models/mrcnn-0/checkpoint.pt
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from asn.io import write_json_atomic  # noqa: E402

VARIANTS = ("mrcnn", "mrcnn_asn", "panet", "panet_asn", "orcnn")


def load_avg() -> float:
    return os.getloadavg()[0]


def build_trainer(params, variant: str, protocol: str, trunk: Path, dataset):
    """(model, optimizer) of ``variant`` under ``protocol`` (before / after), seeded."""
    from asn.config import thaw
    from asn.engine.config import resolve
    from asn.engine.train import _init_from_trunk, seed_everything
    from asn.model import build_model_from_params

    params = thaw(params)
    if protocol == "before":
        params["profiles"]["smoke"]["model"]["init"] = "scratch"
    run = resolve(params, variant=variant, seed=0)
    seed_everything(0)
    model = build_model_from_params(run.model)
    _init_from_trunk(model, run, trunk if run.init == "trunk" else None, dataset.label_map())
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.001, momentum=0.9,
                                weight_decay=1e-4)
    return model, optimizer


def step(model, optimizer, batch, seed: int) -> float:
    images, targets = batch
    torch.manual_seed(seed)
    losses = model(images, targets)
    loss = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def time_steps(model, optimizer, batches, start: int) -> list[float]:
    times = []
    for k, batch in enumerate(batches):
        t0 = time.perf_counter()
        step(model, optimizer, batch, start + k)
        times.append(time.perf_counter() - t0)
    return times


def module_forward_ms(model, batches) -> dict[str, float]:
    """Forward milliseconds per step of the model's main modules (hooks; backward not included)."""
    spent: dict[str, float] = collections.defaultdict(float)
    handles = []
    for name, module in model.named_modules():
        depth = name.count(".")
        if name and (depth <= 1 or (name.startswith("roi_heads.") and depth == 1) or
                     (name.startswith("roi_heads.mask_branches.") and depth == 2)):
            def pre(m, _inputs):
                m._asn_t0 = time.perf_counter()

            def post(m, _inputs, _output, name=name):
                spent[name] += time.perf_counter() - m._asn_t0
            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    for k, batch in enumerate(batches):
        step(model, optimizer, batch, 10_000 + k)
    for handle in handles:
        handle.remove()
    return {k: round(v / len(batches) * 1000, 2) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}


def profile_ops(model, optimizer, batches, rows: int) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for k, batch in enumerate(batches):
            step(model, optimizer, batch, 20_000 + k)
    table = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:rows]
    return [{"op": e.key, "self_cpu_ms_per_step": round(e.self_cpu_time_total / 1000 / len(batches), 2),
             "calls_per_step": e.count / len(batches)} for e in table]


def bench_train(args, params, dataset) -> dict:
    from asn.data.dataset import collate

    batches = []
    for k in range(args.warmup + args.steps):
        items = [dataset[(2 * k + j) % len(dataset), 2 * k + j] for j in range(2)]
        batches.append(collate(items))
    out = {}
    for variant in args.variants:
        trainers = {p: build_trainer(params, variant, p, args.trunk, dataset) for p in ("before", "after")}
        for protocol, (model, optimizer) in trainers.items():
            time_steps(model, optimizer, batches[:args.warmup], 0)
        times = {"before": [], "after": []}
        timed = batches[args.warmup:]
        half = max(1, len(timed) // 2)
        load0 = load_avg()
        for block in range(args.rounds):
            order = ("before", "after") if block % 2 == 0 else ("after", "before")
            for protocol in order:
                for part in (timed[:half], timed[half:]):
                    model, optimizer = trainers[protocol]
                    times[protocol] += time_steps(model, optimizer, part, 1000 * block)
        before, after = statistics.median(times["before"]), statistics.median(times["after"])
        model, optimizer = trainers["after"]
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        out[variant] = {
            "before_ms": round(before * 1000, 1), "after_ms": round(after * 1000, 1),
            "speedup": round(before / after, 3), "steps_each": len(times["after"]),
            "frozen_parameters": frozen, "load_avg": [round(load0, 2), round(load_avg(), 2)],
            "forward_ms_per_module_after": module_forward_ms(model, timed[:3]),
            "top_ops_after": profile_ops(model, optimizer, timed[:3], args.ops),
        }
        print(f"train {variant}: before {before * 1000:.0f} ms, after {after * 1000:.0f} ms per step "
              f"({before / after:.2f}x)", file=sys.stderr)
    return out


def bench_eval(args, dataset_test) -> dict:
    from asn.engine.checkpoint import build_model_from_checkpoint
    from asn.eval.predictions import detections_to_results

    model, checkpoint = build_model_from_checkpoint(args.checkpoint, "cpu")
    labels = {i + 1: int(c) for i, c in enumerate(checkpoint["label_map"]["category_ids"])}
    images = [dataset_test[i] for i in range(len(dataset_test))][:args.eval_images]

    def run(paste_in_model: bool):
        model.transform.paste_masks = paste_in_model
        results, t0 = [], time.perf_counter()
        with torch.inference_mode():
            for k in range(0, len(images), 2):
                chunk = images[k:k + 2]
                outputs = model([image for image, _ in chunk])
                for output, (_, target) in zip(outputs, chunk):
                    results += detections_to_results(output, int(target["image_id"]), labels)
        return time.perf_counter() - t0, results

    run(False)
    seconds = {"before": [], "after": []}
    same = True
    for block in range(args.eval_rounds):
        for protocol in (("before", "after") if block % 2 == 0 else ("after", "before")):
            elapsed, results = run(protocol == "before")
            seconds[protocol].append(elapsed)
            if block == 0:
                seconds.setdefault("_results", {})[protocol] = results
    kept = seconds.pop("_results")
    same = json.dumps(kept["before"]) == json.dumps(kept["after"])
    if not same:
        raise SystemExit("the two evaluation paths gave different predictions")
    before, after = statistics.median(seconds["before"]), statistics.median(seconds["after"])
    detections = len(kept["after"])
    print(f"evaluate: before {before:.1f} s, after {after:.1f} s for {len(images)} images "
          f"({before / after:.2f}x), {detections} detections, identical: {same}", file=sys.stderr)
    return {"checkpoint": str(args.checkpoint), "images": len(images), "detections": detections,
            "before_s": round(before, 2), "after_s": round(after, 2), "speedup": round(before / after, 3),
            "identical_predictions": same, "rounds": args.eval_rounds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--gt", type=Path, default=ROOT / "data" / "normalized")
    parser.add_argument("--train-images", type=Path, default=ROOT / "data" / "raw" / "training" / "image_2")
    parser.add_argument("--test-images", type=Path, default=ROOT / "data" / "raw" / "testing" / "image_2")
    parser.add_argument("--trunk", type=Path, default=ROOT / "models" / "trunk" / "trunk.pt")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "mrcnn_asn-0" / "checkpoint.pt")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per block")
    parser.add_argument("--rounds", type=int, default=4, help="blocks per protocol")
    parser.add_argument("--ops", type=int, default=15, help="profiler rows per variant")
    parser.add_argument("--eval-images", type=int, default=50)
    parser.add_argument("--eval-rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "step.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from asn.config import load_params
    from asn.data.dataset import AmodalDataset

    params = load_params(args.params, [])
    train_set = AmodalDataset(args.gt, "train", args.train_images, flip_prob=0.5)
    result = {"what": __doc__.split("\n\n")[0], "command": "python bench/step.py " + " ".join(sys.argv[1:]),
              "threads": args.threads, "cpu": os.cpu_count(), "batch": 2,
              "train": bench_train(args, params, train_set)}
    if args.checkpoint.is_file():
        test_set = AmodalDataset(args.gt, "test", args.test_images)
        result["evaluate"] = bench_eval(args, test_set)
    goal = result["train"].get("panet_asn", {}).get("speedup")
    result["goal"] = {"panet_asn_train_speedup": goal, "evaluate_speedup": result.get("evaluate", {}).get("speedup"),
                      "needed": 1.5}
    write_json_atomic(args.out, result, indent=True)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
