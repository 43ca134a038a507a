"""Benchmark: FLOPs and achieved FLOP/s of every variant, and the training engine's overhead.

Everything is measured in one process, in this order, with the load average recorded at the
start and end of each section (the machine has 2 cores shared with other work):

1. Dense peak: float32 ``n x n @ n x n`` matmul (n = 2048), best of a few reps, at 1 and at 2
   intra-op threads; GFLOP/s = 2 n^3 / t. Measured at the start, after section 2, after
   section 3 and at the end; the best of these is the peak the final fractions refer to
   (other work on the machine only ever lowers it).
2. Every variant of ``asn.model.VARIANTS`` at the paper structure (``resnet50_fpn``, 4conv+FC
   box head, 4-conv mask heads, 512 sampled RoIs, 2000/1000 RPN proposals), 192x640 images
   (min_size=192, max_size=640: no resizing), 8 classes, from scratch, 1 thread. Input: the
   first training image of a small synthetic world (``asn synth --train 8 --test 2 --seed 0``
   + ``asn convert``) and its real targets, batch 1.
   - train step = ``zero_grad``, forward, loss sum, backward (no optimizer step, so the
     weights never change and every rep computes the same thing);
   - inference = eval mode, ``no_grad``, one image, ``box_score_thresh=0.0`` so an untrained
     model still hands ``box_detections_per_img`` (100) RoIs to the mask heads.
   ``torch.manual_seed(0)`` before every run fixes the RPN / RoI sampling; the RoIs seen by
   the box head and the mask heads and the detections are recorded per run. FLOPs come from
   ``torch.utils.flop_counter.FlopCounterMode`` (matmul / conv / bmm forward and backward;
   elementwise ops, RoIAlign and NMS are not counted) on an untimed first round, which also
   warms up. Then ``--warmup`` untimed and ``--reps`` timed rounds, variants interleaved so
   drift hits all alike; medians. Achieved GFLOP/s = FLOPs / median wall seconds; fraction
   of the 1-thread peak. CPU seconds of the process (``time.process_time``) are recorded too:
   at 1 thread they exclude time the scheduler gave to other processes.
3. Engine overhead: the real engine (``AmodalDataset`` + ``GroupedBatchSampler`` +
   ``build_loader`` with the profile's workers, then ``asn.engine.train._step`` + scheduler
   step, as ``train()`` runs them, minus checkpoints and logging output) against bare steps
   on the same batches preloaded into memory (seeded forward, loss sum, backward, optimizer
   and scheduler step). Both start from the same seeded weights and see the same batches in
   the same order, so they compute the same thing: their per-step losses are compared
   (``same_losses``). Blocks alternate engine, bare, bare, engine (``--engine-rounds`` 2);
   the first steps of each block are untimed (the loader workers start; smoke: workers + 1
   steps, R50: 1 step, which lasts long enough for every worker to start). Configurations:
   the smoke profile of params.yaml (its total batch, 4) at 1 thread and at the default
   thread count, and R50-FPN at 192x640 (the paper profile with min_size [192], max_size
   640, total batch 2) at the default thread count. Ratio = median engine step / median bare
   step; goal <= 1.10. The time each engine step waits for its batch (``next`` on the
   loader) is recorded apart: it is the loader's share of any overhead.
4. The smoke profile's figures: FLOPs per training step (every timed step replayed under the
   FLOP counter), seconds per iteration and GFLOP/s at 1 thread and at the default thread
   count (from section 3), FLOPs and seconds of inference per image.

Goals (from the issue): every variant at R50 trains at >= 80 % of the 1-thread peak; the
engine step is within 10 % of the bare step. Whether each is met is computed, never set.
The JSON is rewritten (atomically) after every section, with ``complete: false`` until the end.

    .venv/bin/python bench/train.py                        # full run: 30 min on a quiet 2-core machine
    .venv/bin/python bench/train.py --quick --out /tmp/train_quick.json   # minutes, tiny sizes
    .venv/bin/python bench/train.py --variants mrcnn,mrcnn_asn --reps 5
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 8
GOAL_FRACTION_OF_PEAK = 0.80
GOAL_ENGINE_OVER_BARE = 1.10
ISSUE_FIGURES = {
    "note": "figures quoted in the issue (192x640, 1 thread), for comparison",
    "peak_gflops_1_thread": 98.0,
    "mrcnn_train_fraction_of_peak": 0.84,
    "mrcnn_asn_train_fraction_of_peak": 0.90,
    "mrcnn_asn_vs_mrcnn_time_per_flop_train": 0.94,
    "mrcnn_asn_vs_mrcnn_time_per_flop_inference": 0.97,
}


def log(message: str) -> None:
    print(f"[bench/train {time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}",
          file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------------- peak


def matmul_peak(n: int, reps: int, threads: int) -> dict[str, Any]:
    """Best-of-``reps`` float32 n x n matmul at ``threads`` intra-op threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=generator)
        b = torch.randn(n, n, generator=generator)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)  # warm-up
        walls, cpus = [], []
        for _ in range(reps):
            wall, cpu = time.perf_counter(), time.process_time()
            torch.mm(a, b, out=out)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    finally:
        torch.set_num_threads(previous)
    flops = 2 * n**3
    best = min(walls)
    return {"threads": threads, "n": n, "reps": reps, "best_seconds": round(best, 5),
            "median_seconds": round(statistics.median(walls), 5),
            "gflops": round(flops / best / 1e9, 2),
            "gflops_median": round(flops / statistics.median(walls) / 1e9, 2),
            "gflops_per_cpu_second_best": round(flops / max(min(cpus), 1e-9) / 1e9, 2)}


def measure_peaks(n: int, reps: int) -> dict[str, Any]:
    return {"1_thread": matmul_peak(n, reps, 1), "2_threads": matmul_peak(n, reps, 2),
            "load_average": loadavg()}


# ---------------------------------------------------------------------------------- data


def make_world(folder: Path, train: int, test: int) -> tuple[Path, Path]:
    """``asn synth`` + ``asn convert`` (the real CLI, in subprocesses); returns (gt_dir, images)."""
    cli = [sys.executable, "-c", "import sys; from asn.cli import main; sys.exit(main())"]
    world, gt = folder / "world", folder / "gt"
    subprocess.run([*cli, "synth", "--out", str(world), "--train", str(train), "--test", str(test),
                    "--seed", "0", "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    for split, images in (("train", "training"), ("test", "testing")):
        subprocess.run([*cli, "convert", "--kins", str(world / f"update_{split}_2020.json"),
                        "--images", str(world / images / "image_2"), "--out", str(gt), "--split", split,
                        "--workers", "1"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return gt, world


# ---------------------------------------------------------------------------------- helpers


def _rows(x: Any) -> int:
    """RoIs in a pooled input: a tensor, or PANet's list of per-level tensors."""
    return int((x[0] if isinstance(x, (list, tuple)) else x).shape[0])


class RoiCounter:
    """Forward hooks recording how many RoIs the box head and the mask pooler see per call."""

    def __init__(self, model: torch.nn.Module):
        heads = model.roi_heads
        self.box: list[int] = []
        self.mask: list[int] = []
        self.handles = [heads.box_head.register_forward_hook(
            lambda _m, inputs, _o: self.box.append(_rows(inputs[0])))]
        if getattr(heads, "amodal_mask_roi_pool", None) is not None:
            self.handles.append(heads.amodal_mask_roi_pool.register_forward_hook(
                lambda _m, _i, output: self.mask.append(_rows(output))))

    def take(self) -> dict[str, list[int]]:
        out = {"box_head": list(self.box), "mask_heads": list(self.mask)}
        self.box.clear()
        self.mask.clear()
        return out


def flop_breakdown(counter: FlopCounterMode) -> dict[str, int]:
    """Forward FLOPs per part: backbone, rpn, roi_heads, its heads, each mask branch's parts.
    (Only for a counter around a forward pass: the counter's attribution of backward FLOPs
    to modules is unreliable, so train steps are counted forward and backward apart.)"""
    out: dict[str, int] = {}
    for name, ops in counter.get_flop_counts().items():
        parts = name.split(".")
        if (len(parts) == 2 or (len(parts) == 3 and parts[1] == "roi_heads")
                or (len(parts) in (4, 5) and parts[2] == "mask_branches")):
            out[".".join(parts[1:])] = int(sum(ops.values()))
    return dict(sorted(out.items()))


def counted_train_pass(forward: Callable[[], torch.Tensor]) -> tuple[int, int, dict[str, int]]:
    """Run ``forward`` (returns the loss) and its backward under two FLOP counters:
    (forward FLOPs, backward FLOPs, forward breakdown by part)."""
    with FlopCounterMode(display=False) as fwd:
        loss = forward()
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    return int(fwd.get_total_flops()), int(bwd.get_total_flops()), flop_breakdown(fwd)


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def r(x: float, digits: int = 4) -> float:
    return round(float(x), digits)


# ---------------------------------------------------------------------------------- variants


def variant_bench(variants: list[str], backbone: str, size: tuple[int, int], image: torch.Tensor,
                  target: dict[str, torch.Tensor], reps: int, warmup: int,
                  peak_1thread: Callable[[], float]) -> dict[str, Any]:
    """Section 2 (1 thread): FLOPs, median times and achieved FLOP/s of each variant."""
    from asn.model import build_model

    torch.set_num_threads(1)
    overrides = dict(min_size=size[0], max_size=size[1], box_score_thresh=0.0)
    models, counters, steps = {}, {}, {}
    for name in variants:
        torch.manual_seed(0)
        model = build_model(name, NUM_CLASSES, backbone=backbone, **overrides)
        models[name], counters[name] = model, RoiCounter(model)

        def train_step(model=model, count: bool = False) -> Any:
            model.train()
            torch.manual_seed(0)
            model.zero_grad(set_to_none=True)
            if count:
                out = counted_train_pass(lambda: sum(model([image], [target]).values()))
            else:
                losses = model([image], [target])
                sum(losses.values()).backward()
                out = None
            model.zero_grad(set_to_none=True)  # frees the gradients (memory of 8 models)
            return out

        def inference_step(model=model) -> int:
            model.eval()
            torch.manual_seed(0)
            with torch.no_grad():
                return int(model([image])[0]["boxes"].shape[0])

        steps[name] = {"train": train_step, "inference": inference_step}

    result: dict[str, Any] = {name: {"train": {}, "inference": {}} for name in variants}
    samples = {name: {p: {"wall": [], "cpu": [], "rois": [], "detections": []} for p in ("train", "inference")}
               for name in variants}
    # round 0: FLOP counting (untimed; also the first warm-up)
    for name in variants:
        forward, backward, parts = steps[name]["train"](count=True)
        result[name]["train"].update(flops=forward + backward, flops_forward=forward, flops_backward=backward,
                                     forward_flops_by_part=parts, rois_counted_run=counters[name].take())
        with FlopCounterMode(display=False) as counter:
            detections = steps[name]["inference"]()
        result[name]["inference"].update(flops=int(counter.get_total_flops()), flops_by_part=flop_breakdown(counter),
                                         rois_counted_run=counters[name].take(),
                                         detections_counted_run=detections)
        log(f"FLOPs {name}: train {result[name]['train']['flops'] / 1e9:.1f} G, "
            f"inference {result[name]['inference']['flops'] / 1e9:.1f} G")
    for rep in range(warmup + reps):
        for name in variants:  # interleaved
            for phase in ("train", "inference"):
                wall, cpu, out = timed(steps[name][phase])
                rois = counters[name].take()
                if rep >= warmup:
                    s = samples[name][phase]
                    s["wall"].append(wall)
                    s["cpu"].append(cpu)
                    s["rois"].append(rois)
                    if phase == "inference":
                        s["detections"].append(out)
        log(f"variants round {rep + 1}/{warmup + reps} done")
    peak = peak_1thread()
    for name in variants:
        for phase in ("train", "inference"):
            rec, s = result[name][phase], samples[name][phase]
            wall, cpu = median(s["wall"]), median(s["cpu"])
            rec.update(
                median_seconds=r(wall), median_cpu_seconds=r(cpu),
                samples_seconds=[r(x) for x in s["wall"]], samples_cpu_seconds=[r(x) for x in s["cpu"]],
                gflops_per_s=r(rec["flops"] / wall / 1e9, 2),
                fraction_of_start_peak_1thread=r(rec["flops"] / wall / 1e9 / peak, 3),
                gflops_per_cpu_s=r(rec["flops"] / cpu / 1e9, 2),
                fraction_of_start_peak_1thread_cpu_time=r(rec["flops"] / cpu / 1e9 / peak, 3),
                rois_same_every_run=all(x == rec["rois_counted_run"] for x in s["rois"]),
                rois_timed_runs=s["rois"][0] if s["rois"] else None,
            )
            if phase == "inference":
                rec["detections_per_run"] = s["detections"]
                rec["detections_same_every_run"] = all(d == rec["detections_counted_run"] for d in s["detections"])
    comparisons = {}
    for a, b in (("mrcnn_asn", "mrcnn"), ("panet_asn", "panet"), ("mrcnn_oc", "mrcnn")):
        if a in result and b in result:
            comparisons[f"{a}_vs_{b}"] = {
                phase: {
                    "flop_ratio": r(result[a][phase]["flops"] / result[b][phase]["flops"], 3),
                    "time_ratio": r(result[a][phase]["median_seconds"] / result[b][phase]["median_seconds"], 3),
                    "time_per_flop_ratio": r((result[a][phase]["median_seconds"] / result[a][phase]["flops"])
                                             / (result[b][phase]["median_seconds"] / result[b][phase]["flops"]), 3),
                } for phase in ("train", "inference")
            }
    for counter in counters.values():
        for handle in counter.handles:
            handle.remove()
    return {
        "config": {"backbone": backbone, "height": size[0], "width": size[1], "batch": 1, "threads": 1,
                   "num_classes": NUM_CLASSES, "weights": "none (from scratch)", **overrides,
                   "box_detections_per_img": models[variants[0]].roi_heads.detections_per_img,
                   "train_step": "zero_grad, forward, loss sum, backward (no optimizer step)",
                   "input": "training image 0 of the synthetic world and its targets, no flip",
                   "start_peak_gflops_1thread": peak},
        "reps": reps, "warmup_after_counting_round": warmup,
        "variants": result, "comparisons": comparisons,
    }


# ---------------------------------------------------------------------------------- engine


def engine_vs_bare(run, gt_dir: Path, images_dir: Path, threads: int, steps: int, rounds: int,
                   count_flops: bool, untimed: int) -> dict[str, Any]:
    """Section 3: real engine steps vs bare steps on preloaded batches, same computation."""
    from asn.data.dataset import AmodalDataset, GroupedBatchSampler, build_loader, collate
    from asn.engine.schedule import build_scheduler
    from asn.engine.train import _step, micro_batch_seed, seed_everything, split_chunks
    from asn.model import build_model_from_params

    torch.set_num_threads(threads)
    cfg = run.train
    dataset = AmodalDataset(gt_dir, "train", images_dir, flip_prob=cfg.flip_prob)
    if int(run.model["num_classes"]) != len(dataset.category_ids) + 1:
        raise SystemExit("num_classes does not match the world's categories")
    skip = max(1, untimed)  # untimed steps at the start of each block (workers start, warm-up)
    per_kind = rounds * (steps + skip)
    sampler_stream = iter(GroupedBatchSampler(dataset.aspect_ratios, cfg.batch_size, seed=cfg.seed))
    preloaded = [collate([dataset[key] for key in next(sampler_stream)]) for _ in range(per_kind)]
    device = torch.device("cpu")

    def make_state() -> dict[str, Any]:
        seed_everything(cfg.seed)  # as train(): identical initial weights for every state
        model = build_model_from_params(run.model)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=cfg.scaled_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        scheduler = build_scheduler(optimizer, steps=cfg.steps, gamma=cfg.gamma,
                                    warmup_iterations=cfg.warmup_iterations, warmup_factor=cfg.warmup_factor)
        model.train()
        return {"model": model, "optimizer": optimizer, "scheduler": scheduler,
                "scaler": torch.amp.GradScaler("cpu", enabled=False), "next": 0,
                "wall": [], "cpu": [], "loss": {}, "iterations_timed": [], "data_wait": []}

    def bare_step(state, iteration: int, counts: list | None = None) -> dict[int, dict[str, torch.Tensor]]:
        """One bare step; with ``counts`` (a list) its chunks' FLOPs are appended to it."""
        model, optimizer = state["model"], state["optimizer"]
        images, targets = preloaded[iteration]
        optimizer.zero_grad(set_to_none=True)
        kept = {}
        for index, (chunk_images, chunk_targets) in enumerate(
                zip(split_chunks(images, cfg.accumulate), split_chunks(targets, cfg.accumulate))):
            torch.manual_seed(micro_batch_seed(cfg.seed, iteration, index))

            def forward() -> torch.Tensor:
                losses = model(chunk_images, chunk_targets)
                kept[index] = {k: v.detach() for k, v in losses.items()}
                return sum(losses.values()) / cfg.accumulate

            if counts is None:
                forward().backward()
            else:
                counts.append(counted_train_pass(forward))
        optimizer.step()
        state["scheduler"].step()
        return kept

    def bare_loss(kept) -> float:  # the engine's arithmetic: per-term float means, then a sum
        totals: dict[str, float] = {}
        for losses in kept.values():
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + float(value) / cfg.accumulate
        return sum(totals.values())

    def engine_block(state) -> None:
        start = state["next"]
        sampler = GroupedBatchSampler(dataset.aspect_ratios, cfg.batch_size, seed=cfg.seed, start_iteration=start)
        loader = build_loader(dataset, sampler, num_workers=cfg.workers)
        batches = iter(loader)
        model, optimizer, scheduler = state["model"], state["optimizer"], state["scheduler"]
        try:
            for iteration in range(start, start + steps + skip):
                def one() -> float:
                    wait = time.perf_counter()
                    images, targets = next(batches)
                    waits.append(time.perf_counter() - wait)
                    terms = _step(model, optimizer, state["scaler"], images, targets, device=device, amp=False,
                                  accumulate=cfg.accumulate, seed=cfg.seed, iteration=iteration,
                                  first_chunk=0, distributed=False)
                    scheduler.step()
                    loss = sum(terms.values())
                    if loss != loss:
                        raise SystemExit(f"engine: non-finite loss at iteration {iteration + 1}")
                    return loss
                waits: list[float] = []
                wall, cpu, loss = timed(one)
                state["loss"][iteration] = loss
                if iteration >= start + skip:
                    state["data_wait"].append(waits[0])
                    state["wall"].append(wall)
                    state["cpu"].append(cpu)
                    state["iterations_timed"].append(iteration)
        finally:
            loader.close()
        state["next"] = start + steps + skip

    def bare_block(state) -> None:
        start = state["next"]
        for iteration in range(start, start + steps + skip):
            wall, cpu, kept = timed(lambda: bare_step(state, iteration))
            state["loss"][iteration] = bare_loss(kept)
            if iteration >= start + skip:
                state["wall"].append(wall)
                state["cpu"].append(cpu)
                state["iterations_timed"].append(iteration)
        state["next"] = start + steps + skip

    states = {"engine": make_state(), "bare": make_state()}
    order = []
    for k in range(rounds):
        order += ["engine", "bare"] if k % 2 == 0 else ["bare", "engine"]
    load_start = loadavg()
    block_loads = []
    for kind in order:
        before = loadavg()[0]
        (engine_block if kind == "engine" else bare_block)(states[kind])
        block_loads.append({"kind": kind, "load_1min_start": before, "load_1min_end": loadavg()[0]})
        log(f"  {kind} block done ({threads} thread(s))")
    load_end = loadavg()

    flops_per_iteration: dict[int, int] = {}
    first_step_parts: dict[str, Any] = {}
    if count_flops:  # replay the same trajectory under the FLOP counter (untimed)
        replay = make_state()
        for iteration in range(per_kind):
            counts: list = []
            kept = bare_step(replay, iteration, counts)
            flops_per_iteration[iteration] = sum(f + b for f, b, _ in counts)
            replay["loss"][iteration] = bare_loss(kept)
            if iteration == 0:
                first_step_parts = {"flops_forward": sum(f for f, _, _ in counts),
                                    "flops_backward": sum(b for _, b, _ in counts),
                                    "forward_flops_by_part_chunk_0": counts[0][2],
                                    "input_image_sizes": [list(i.shape[-2:]) for i in preloaded[0][0]]}
        states["flop_replay"] = replay

    engine, bare = states["engine"], states["bare"]
    same = all(engine["loss"][i] == bare["loss"][i] for i in range(per_kind))
    out: dict[str, Any] = {
        "threads": threads, "total_batch": cfg.batch_size, "workers": cfg.workers, "accumulate": cfg.accumulate,
        "timed_steps_per_block": steps, "untimed_steps_at_block_start": skip, "rounds": rounds, "block_order": order,
        "median_seconds_engine": r(median(engine["wall"])), "median_seconds_bare": r(median(bare["wall"])),
        "ratio_engine_over_bare": r(median(engine["wall"]) / median(bare["wall"]), 3),
        "mean_seconds_engine": r(statistics.fmean(engine["wall"])),
        "mean_seconds_bare": r(statistics.fmean(bare["wall"])),
        "ratio_of_means": r(statistics.fmean(engine["wall"]) / statistics.fmean(bare["wall"]), 3),
        "median_cpu_seconds_engine_main_process": r(median(engine["cpu"])),
        "median_cpu_seconds_bare": r(median(bare["cpu"])),
        "median_data_wait_seconds_engine": r(median(engine["data_wait"])),
        "max_data_wait_seconds_engine": r(max(engine["data_wait"])),
        "ratio_engine_minus_data_wait_over_bare": r((median(engine["wall"]) - median(engine["data_wait"]))
                                                    / median(bare["wall"]), 3),
        "samples_data_wait_seconds_engine": [r(x) for x in engine["data_wait"]],
        "iterations_timed": engine["iterations_timed"],
        "samples_seconds_engine": [r(x) for x in engine["wall"]],
        "samples_seconds_bare": [r(x) for x in bare["wall"]],
        "same_losses": same,
        "max_abs_loss_difference": r(max(abs(engine["loss"][i] - bare["loss"][i]) for i in range(per_kind)), 9),
        "load_average_start": load_start, "load_average_end": load_end, "blocks_load": block_loads,
    }
    if count_flops:
        out["flop_replay_same_losses"] = all(states["flop_replay"]["loss"][i] == bare["loss"][i]
                                             for i in range(per_kind))
        for kind in ("engine", "bare"):
            state = states[kind]
            flops = sum(flops_per_iteration[i] for i in state["iterations_timed"])
            seconds = sum(state["wall"])
            out[f"gflops_per_s_{kind}"] = r(flops / seconds / 1e9, 2)
        timed_flops = [flops_per_iteration[i] for i in engine["iterations_timed"]]
        out["mean_flops_per_step"] = int(statistics.fmean(timed_flops))
        out["flops_per_step_range"] = [min(timed_flops), max(timed_flops)]
        out["first_step"] = first_step_parts
    return out


def inference_figures(model_params: dict, image: torch.Tensor, threads: int, reps: int) -> dict[str, Any]:
    """FLOPs and seconds of eval-mode inference on one image (score threshold 0)."""
    from asn.model import build_model_from_params

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model_from_params({**model_params, "box_score_thresh": 0.0}).eval()

    def run() -> int:
        torch.manual_seed(0)
        with torch.no_grad():
            return int(model([image])[0]["boxes"].shape[0])

    with FlopCounterMode(display=False) as counter:
        detections = run()
    walls = [timed(run)[0] for _ in range(reps)]
    flops = int(counter.get_total_flops())
    wall = median(walls)
    return {"threads": threads, "flops": flops, "detections": detections, "median_seconds": r(wall),
            "samples_seconds": [r(x) for x in walls], "gflops_per_s": r(flops / wall / 1e9, 2)}


# ---------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="timed rounds per variant and phase (median)")
    parser.add_argument("--warmup", type=int, default=0,
                        help="untimed rounds after the FLOP-counting round (which itself warms up)")
    parser.add_argument("--variants", default=None, help="comma list (default: all of asn.model.VARIANTS)")
    parser.add_argument("--engine-steps", type=int, default=None,
                        help="timed steps per engine / bare block (default 8 smoke, 3 R50; 2 with --quick)")
    parser.add_argument("--engine-rounds", type=int, default=2, help="engine+bare block pairs, ABBA order")
    parser.add_argument("--skip-engine", action="store_true", help="sections 1-2 only")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes for a fast check: resnet18_fpn_small at 96x320, 512 matmul, 1 rep")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"), help="params file (smoke profile)")
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench" / "train.json"),
                        help="JSON output path (written atomically after every section)")
    args = parser.parse_args(argv)

    from asn.config import load_params, thaw
    from asn.data.dataset import AmodalDataset
    from asn.engine.config import resolve
    from asn.io import write_json_atomic
    from asn.model import VARIANTS

    variants = list(VARIANTS) if not args.variants else [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; valid: {sorted(VARIANTS)}")
    if args.quick:
        backbone, size, matmul_n, matmul_reps = "resnet18_fpn_small", (96, 320), 512, 3
        reps = 1 if args.reps == 3 else args.reps
        smoke_steps = r50_steps = args.engine_steps or 2
        rounds = 1 if args.engine_rounds == 2 else args.engine_rounds
    else:
        backbone, size, matmul_n, matmul_reps = "resnet50_fpn", (192, 640), 2048, 5
        reps, rounds = args.reps, args.engine_rounds
        smoke_steps, r50_steps = args.engine_steps or 8, args.engine_steps or 3
    default_threads = torch.get_num_threads()
    t_start = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "train/inference FLOPs and FLOP/s of every variant vs the matmul peak; engine step vs bare step",
        "command": " ".join(["python", "bench/train.py", *(sys.argv[1:] if argv is None else argv)]),
        "complete": False, "quick": args.quick,
        "torch": torch.__version__,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "device": "cpu"},
        "threads": {"default": default_threads, "variants": 1, "peak": [1, 2],
                    "smoke_engine": sorted({1, default_threads}), "r50_engine": default_threads},
        "load_average": {"start": loadavg()},
        "issue_figures": ISSUE_FIGURES,
    }

    def save() -> None:
        result["wall_seconds"] = round(time.perf_counter() - t_start, 1)
        write_json_atomic(args.out, result, indent=True)

    log("peak (start)")
    result["peak"] = {"start": measure_peaks(matmul_n, matmul_reps)}

    def peak_gflops(key: str) -> float:
        return max(p[key]["gflops"] for p in result["peak"].values() if isinstance(p, dict) and key in p)

    save()
    with tempfile.TemporaryDirectory(prefix="asn-bench-train-") as tmp:
        log("synthetic world: asn synth --train 8 --test 2 --seed 0 + asn convert")
        gt_dir, world = make_world(Path(tmp), 8, 2)
        result["data"] = {"world": "asn synth --out W --train 8 --test 2 --seed 0; asn convert (train, test)",
                          "image_size": [192, 640]}
        dataset = AmodalDataset(gt_dir, "train", world / "training" / "image_2")
        image, target = dataset[0]

        log(f"variants ({backbone} {size[0]}x{size[1]}, 1 thread): {', '.join(variants)}")
        result["variants"] = variant_bench(variants, backbone, size, image, target, reps, args.warmup,
                                           lambda: peak_gflops("1_thread"))
        result["variants"]["load_average_end"] = loadavg()
        log("peak (after the variants)")
        result["peak"]["after_variants"] = measure_peaks(matmul_n, matmul_reps)
        save()

        if not args.skip_engine:
            params = thaw(load_params(args.params))
            params["profile"] = "smoke"
            smoke = resolve(params, args.params)
            if args.quick:
                smoke = dataclasses.replace(smoke, train=dataclasses.replace(smoke.train, batch_size=2))
            paper_params = dict(params, profile="paper")
            paper = resolve(paper_params, args.params)
            r50_model = {**paper.model, "min_size": [size[0]], "max_size": size[1], "backbone": backbone}
            r50 = dataclasses.replace(paper, model=r50_model,
                                      train=dataclasses.replace(paper.train, batch_size=2))
            images_dir = world / "training" / "image_2"
            engine: dict[str, Any] = {"smoke": {"model": smoke.model, "train": dataclasses.asdict(smoke.train)},
                                      f"r50_{size[0]}x{size[1]}": {"model": r50.model,
                                                                   "train": dataclasses.asdict(r50.train)}}
            result["engine_overhead"] = engine
            for threads in sorted({1, default_threads}):
                log(f"engine vs bare: smoke profile, {threads} thread(s)")
                engine["smoke"][f"threads_{threads}"] = engine_vs_bare(
                    smoke, gt_dir, images_dir, threads, smoke_steps, rounds, count_flops=True,
                    untimed=smoke.train.workers + 1)
                save()
            log(f"engine vs bare: R50 {size[0]}x{size[1]}, {default_threads} thread(s)")
            engine[f"r50_{size[0]}x{size[1]}"][f"threads_{default_threads}"] = engine_vs_bare(
                r50, gt_dir, images_dir, default_threads, r50_steps, rounds, count_flops=False, untimed=1)
            log("peak (after the engine comparison)")
            result["peak"]["after_engine"] = measure_peaks(matmul_n, matmul_reps)
            save()

            log("smoke inference figures")
            test_image = AmodalDataset(gt_dir, "test", world / "testing" / "image_2")[0][0]
            result["smoke_inference"] = {
                f"threads_{t}": inference_figures(smoke.model, test_image, t, max(reps, 3))
                for t in sorted({1, default_threads})}
            save()

    log("peak (end)")
    result["peak"]["end"] = measure_peaks(matmul_n, matmul_reps)
    torch.set_num_threads(default_threads)
    peak1, peak2 = peak_gflops("1_thread"), peak_gflops("2_threads")
    result["peak"]["best_gflops"] = {"1_thread": peak1, "2_threads": peak2}
    # 2 threads on 2 cores should give about twice the 1-thread figure; much less means the
    # second core was busy with other work while the peak was measured
    result["peak"]["2_thread_peak_suspect_under_1.5x"] = peak2 < 1.5 * peak1

    # --- figures computed against the final peaks
    fractions = {name: v["train"]["flops"] / v["train"]["median_seconds"] / 1e9 / peak1
                 for name, v in result["variants"]["variants"].items()}
    inference_fractions = {name: v["inference"]["flops"] / v["inference"]["median_seconds"] / 1e9 / peak1
                           for name, v in result["variants"]["variants"].items()}
    for name, v in result["variants"]["variants"].items():
        v["train"]["fraction_of_best_peak_1thread"] = r(fractions[name], 3)
        v["inference"]["fraction_of_best_peak_1thread"] = r(inference_fractions[name], 3)
    goals: dict[str, Any] = {
        f"every_variant_{backbone}_train_ge_{GOAL_FRACTION_OF_PEAK:.2f}_of_1thread_peak": {
            "threshold": GOAL_FRACTION_OF_PEAK, "peak_gflops_1thread": peak1,
            "train_fraction": {k: r(v, 3) for k, v in fractions.items()},
            "failing": sorted(k for k, v in fractions.items() if v < GOAL_FRACTION_OF_PEAK),
            "met": all(v >= GOAL_FRACTION_OF_PEAK for v in fractions.values()),
            "inference_fraction_for_information": {k: r(v, 3) for k, v in inference_fractions.items()},
            "inference_also_ge_threshold": all(v >= GOAL_FRACTION_OF_PEAK for v in inference_fractions.values()),
            "train_fraction_on_cpu_time_for_information": {
                k: r(v["train"]["flops"] / v["train"]["median_cpu_seconds"] / 1e9 / peak1, 3)
                for k, v in result["variants"]["variants"].items()},
        }}
    if "engine_overhead" in result:
        ratios = {f"{cfg}/{key}": v["ratio_engine_over_bare"]
                  for cfg, block in result["engine_overhead"].items()
                  for key, v in block.items() if key.startswith("threads_")}
        goals[f"engine_over_bare_le_{GOAL_ENGINE_OVER_BARE:.2f}"] = {
            "threshold": GOAL_ENGINE_OVER_BARE, "ratios": ratios,
            "failing": sorted(k for k, v in ratios.items() if v > GOAL_ENGINE_OVER_BARE),
            "met": all(v <= GOAL_ENGINE_OVER_BARE for v in ratios.values()),
        }
        smoke_block = result["engine_overhead"]["smoke"]
        figures = {}
        for key, block in smoke_block.items():
            if not key.startswith("threads_"):
                continue
            peak = peak1 if block["threads"] == 1 else peak2
            figures[key] = {
                "flops_per_step_mean": block["mean_flops_per_step"],
                "seconds_per_iteration_engine": block["median_seconds_engine"],
                "seconds_per_iteration_bare": block["median_seconds_bare"],
                "gflops_per_s_engine": block["gflops_per_s_engine"],
                "gflops_per_s_bare": block["gflops_per_s_bare"],
                "fraction_of_peak_bare": r(block["gflops_per_s_bare"] / peak, 3),
                "fraction_of_peak_engine": r(block["gflops_per_s_engine"] / peak, 3),
                "peak_used": f"{block['threads']}-thread matmul",
                "engine_over_bare": block["ratio_engine_over_bare"],
            }
        for key, block in result.get("smoke_inference", {}).items():
            peak = peak1 if block["threads"] == 1 else peak2
            figures.setdefault(key, {}).update(
                inference_flops_per_image=block["flops"], inference_seconds_per_image=block["median_seconds"],
                inference_gflops_per_s=block["gflops_per_s"], inference_fraction_of_peak=r(block["gflops_per_s"] / peak, 3),
                inference_detections=block["detections"])
        result["smoke_profile_figures"] = {
            "profile": "smoke", "backbone": smoke.model.get("backbone"), "variant": smoke.model.get("variant"),
            "total_batch": smoke.train.batch_size, "min_size": smoke.model.get("min_size"),
            "max_size": smoke.model.get("max_size"), **figures}
    result["goals"] = goals
    result["load_average"]["end"] = loadavg()
    result["complete"] = True
    save()

    for name, v in result["variants"]["variants"].items():
        print(f"{name:14s} train {v['train']['flops'] / 1e9:7.1f} GF {v['train']['median_seconds']:7.2f} s "
              f"{fractions[name]:5.1%} | inference {v['inference']['flops'] / 1e9:7.1f} GF "
              f"{v['inference']['median_seconds']:7.2f} s {inference_fractions[name]:5.1%}")
    print(f"peak 1 thread {peak1:.1f} GFLOP/s, 2 threads {peak2:.1f} GFLOP/s")
    for name, goal in goals.items():
        print(f"goal {name}: {'met' if goal['met'] else 'MISSED'} {goal.get('ratios', goal.get('train_fraction'))}")
    print(f"wrote {args.out} in {result['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
