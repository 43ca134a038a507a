"""The training loop: SGD with warmup + multi-step decay, AMP on CUDA, DDP under torchrun,
atomic checkpoints and exact resume.

Reproducibility by construction: before each micro-batch the global torch RNG is seeded from
(seed, iteration, chunk), where chunk numbers the pieces of the global batch across ranks and
accumulation steps. Every random draw of the model (multi-scale size, RPN / RoI sampling)
therefore depends only on which images it sees, never on how many processes share the work
or whether the run was interrupted. With the loader's order a pure function of (seed,
iteration) and the flip a pure function of the sampler's per-item seed, a run killed at any
iteration and resumed from its last checkpoint ends bit-identical to an uninterrupted one
(CPU), and ``torchrun --nproc_per_node 2`` equals one process accumulating the same two
chunks. Per-rank loss normalisation and batch-norm statistics are per chunk, as in
torchvision's references and detectron2.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from asn.engine.checkpoint import (
    load_checkpoint, load_model_state, restore_rng_state, rng_state, save_checkpoint,
)
from asn.engine.config import RunConfig, dumps_config, params_hash
from asn.engine.distributed import World, barrier, init_world, mean_over_ranks, shutdown
from asn.engine.schedule import build_scheduler
from asn.errors import AsnError, InputError
from asn.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from asn.tracking import run_key, run_reference

CHECKPOINT = "checkpoint.pt"
LOG_CSV = "train_log.csv"
LABEL_MAP = "label_map.json"
CONFIG = "config.json"
SUMMARY = "train_summary.json"


class TrainingError(AsnError):
    """Training cannot go on (e.g. a non-finite loss); names the iteration and the terms."""


def micro_batch_seed(seed: int, iteration: int, chunk: int) -> int:
    """Seed of the torch RNG for one chunk of one iteration (a pure function, see module doc)."""
    return int(np.random.SeedSequence([int(seed), int(iteration), int(chunk)]).generate_state(1)[0])


def parameters_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes in order (identical weights <=> identical digest)."""
    import hashlib

    digest = hashlib.sha256()
    for name, parameter in model.named_parameters():
        digest.update(name.encode())
        digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def split_chunks(items: list, parts: int) -> list[list]:
    """``items`` cut into ``parts`` equal contiguous chunks (len divisible by parts)."""
    size = len(items) // parts
    return [items[i * size:(i + 1) * size] for i in range(parts)]


def _format_seconds(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class _Progress:
    """tqdm bar on a terminal; periodic plain lines otherwise (CI logs, DVC, --no-progress)."""

    def __init__(self, total: int, start: int, every: int, enabled: bool, main: bool, label: str):
        self.total, self.start, self.every, self.label = total, start, every, label
        self.main = main
        self.bar = None
        self.t0 = time.perf_counter()
        if main and enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=label, unit="it", dynamic_ncols=True)

    def update(self, done: int, loss: float, lr: float) -> None:
        if not self.main:
            return
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.4g}", refresh=False)
            self.bar.update(1)
            return
        if done % self.every == 0 or done == self.total:
            elapsed = time.perf_counter() - self.t0
            rate = (done - self.start) / elapsed if elapsed > 0 else 0.0
            eta = (self.total - done) / rate if rate > 0 else 0.0
            print(f"{self.label} iter {done}/{self.total} loss {loss:.4f} lr {lr:.5g} "
                  f"{rate:.2f} it/s eta {_format_seconds(eta)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_log_csv(path: Path, rows: list[dict[str, float]]) -> None:
    """Loss per term and lr per iteration (DVC plots it: x=iteration)."""
    keys = sorted({k for row in rows for k in row} - {"iteration", "lr", "loss"})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["iteration", "lr", "loss", *keys])
    for row in rows:
        writer.writerow([row["iteration"], f"{row['lr']:.8g}", f"{row['loss']:.6g}",
                         *(f"{row[k]:.6g}" if k in row else "" for k in keys)])
    write_text_atomic(path, buffer.getvalue())


def train(
    run: RunConfig,
    *,
    gt_dir: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    split: str = "train",
    resume: bool = False,
    progress: bool = True,
    stop_after: Optional[int] = None,
    on_log: Optional[Callable[[dict[str, float]], None]] = None,
    experiment: str = "table4",
    trunk_path: str | Path | None = None,
) -> dict[str, Any]:
    """Train ``run`` on ``<gt_dir>/<split>_{amodal,inmodal}.json`` + images into ``out_dir``.

    Writes ``checkpoint.pt`` (every ``checkpoint_every`` iterations and at the end),
    ``train_log.csv``, ``label_map.json``, ``config.json`` and ``train_summary.json`` (rank 0).
    ``resume``: continue from ``out_dir/checkpoint.pt`` when it exists (refused when its params
    or data hash differ). ``stop_after``: stop (with a checkpoint) after that many iterations
    in total, for tests. ``on_log`` receives each iteration's log row on rank 0. ``experiment``
    names the MLflow experiment in the summary's deterministic run reference (see asn.tracking).
    ``trunk_path``: the shared pretrained trunk, required when ``model.init`` is ``trunk``: its
    ``model.trunk_parts`` are loaded (after the seed's random init of everything) and
    ``model.freeze`` of them stay fixed; its sha256 enters the params hash.
    Returns the summary dict (``complete``: all iterations done; ``seconds``: this call's time).
    """
    from asn.data.dataset import AmodalDataset, GroupedBatchSampler, build_loader, data_hash
    from asn.model import build_model_from_params

    cfg = run.train
    out_dir = Path(out_dir)
    world, device = init_world(cfg.device)
    try:
        if cfg.batch_size % (world.size * cfg.accumulate):
            raise InputError("train.batch_size", f"{cfg.batch_size} is not divisible by world size "
                                                 f"{world.size} x accumulate {cfg.accumulate}")
        amp = device.type == "cuda" if cfg.amp == "auto" else bool(cfg.amp)
        if amp and device.type != "cuda":
            raise InputError("train.amp", "AMP is supported on CUDA only; use amp: auto or false on CPU")
        torch.backends.cudnn.benchmark = False
        dataset = AmodalDataset(gt_dir, split, images_dir, flip_prob=cfg.flip_prob)
        num_classes = int(run.model.get("num_classes", 0))
        if num_classes != len(dataset.category_ids) + 1:
            raise InputError(Path(gt_dir) / f"{split}_amodal.json",
                             f"{len(dataset.category_ids)} categories need model.num_classes = "
                             f"{len(dataset.category_ids) + 1}, params say {num_classes}")
        if world.is_main:
            dataset.check_images()
        d_hash = data_hash(gt_dir, split, images_dir)

        seed_everything(cfg.seed)
        try:
            model = build_model_from_params(run.model)
        except ValueError as error:
            raise InputError("params.yaml", f"model: {error}") from None
        trunk_info = _init_from_trunk(model, run, trunk_path, dataset.label_map())
        p_hash = params_hash(run.hash_payload(amp, trunk_info["sha256"] if trunk_info else None))
        model.to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=cfg.scaled_lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
        scheduler = build_scheduler(optimizer, steps=cfg.steps, gamma=cfg.gamma,
                                    warmup_iterations=cfg.warmup_iterations, warmup_factor=cfg.warmup_factor)
        scaler = torch.amp.GradScaler(device.type, enabled=amp)

        start, log_rows = 0, []
        checkpoint_path = out_dir / CHECKPOINT
        checkpoint = None
        if resume and checkpoint_path.exists():
            checkpoint = load_checkpoint(checkpoint_path)
            for what, mine, theirs in (("params", p_hash, checkpoint.get("params_hash")),
                                       ("data", d_hash, checkpoint.get("data_hash"))):
                if mine != theirs:
                    raise InputError(checkpoint_path, f"cannot resume: the checkpoint was trained with other "
                                                      f"{what} (hash {str(theirs)[:12]}, now {mine[:12]}); "
                                                      f"remove it or train into another folder")
            load_model_state(model, checkpoint["model"], checkpoint_path)
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["lr_scheduler"])
            scaler.load_state_dict(checkpoint["grad_scaler"])
            start = int(checkpoint["iteration"])
            log_rows = list(checkpoint.get("log", []))
        elif not resume and checkpoint_path.exists() and world.is_main:
            print(f"train: {checkpoint_path} exists; starting over (pass --resume to continue it)",
                  file=sys.stderr)

        ddp_model = model
        if world.distributed:
            ddp_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)

        sampler = GroupedBatchSampler(dataset.aspect_ratios, cfg.batch_size, seed=cfg.seed,
                                      start_iteration=start, part=world.rank, num_parts=world.size)
        batches = iter(build_loader(dataset, sampler, num_workers=cfg.workers))
        if checkpoint is not None:
            restore_rng_state(checkpoint["rng"])
        del checkpoint

        end = cfg.iterations if stop_after is None else min(cfg.iterations, stop_after)
        label = f"{run.model['variant']} seed {cfg.seed}"
        bar = _Progress(cfg.iterations, start, cfg.log_every, progress, world.is_main, label)

        def save(done: int) -> None:
            if world.is_main:
                save_checkpoint(checkpoint_path, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "lr_scheduler": scheduler.state_dict(), "grad_scaler": scaler.state_dict(),
                    "iteration": done, "rng": rng_state(done), "run": run.as_dict(),
                    "params_hash": p_hash, "data_hash": d_hash, "label_map": dataset.label_map(),
                    "variant": run.model["variant"], "log": log_rows,
                })
                write_log_csv(out_dir / LOG_CSV, log_rows)
            barrier(world)

        if world.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out_dir / LABEL_MAP, dataset.label_map(), indent=True)
            write_bytes_atomic(out_dir / CONFIG, dumps_config(run))
        model.train()
        t0 = time.perf_counter()
        for iteration in range(start, end):
            images, targets = next(batches)
            lr = optimizer.param_groups[0]["lr"]
            terms = _step(ddp_model, optimizer, scaler, images, targets, device=device, amp=amp,
                          accumulate=cfg.accumulate, seed=cfg.seed, iteration=iteration,
                          first_chunk=world.rank * cfg.accumulate, distributed=world.distributed)
            scheduler.step()
            terms = mean_over_ranks(terms, world, device)
            loss = sum(terms.values())
            if not math.isfinite(loss):
                raise TrainingError(f"iteration {iteration + 1}: loss is not finite "
                                    f"({', '.join(f'{k}={v:.4g}' for k, v in terms.items())}); "
                                    f"lower train.lr or check the data")
            row = {"iteration": iteration + 1, "lr": lr, "loss": loss, **terms}
            log_rows.append(row)
            if world.is_main and on_log is not None:
                on_log(row)
            bar.update(iteration + 1, loss, lr)
            done = iteration + 1
            if done % cfg.checkpoint_every == 0 or done == end:
                save(done)
        bar.close()
        seconds = time.perf_counter() - t0
        if world.distributed:
            # every rank says what it holds: DDP keeps them equal, and anyone can check it
            print(f"rank {world.rank}: parameters sha256 {parameters_digest(model)}", file=sys.stderr, flush=True)
        summary = _summary(run, log_rows, p_hash, d_hash, amp, world, device, experiment)
        if trunk_info is not None:
            summary["trunk"] = {"sha256": trunk_info["sha256"], "parts": list(run.model.get("trunk_parts") or ()),
                                "frozen": list(run.model.get("freeze") or ())}
        if world.is_main:
            if end == cfg.iterations:
                write_json_atomic(out_dir / SUMMARY, summary, indent=True)
            done_now = end - start
            if done_now > 0:
                print(f"{label}: {done_now} iterations in {_format_seconds(seconds)} "
                      f"({done_now / seconds:.2f} it/s) on {device} x{world.size}", file=sys.stderr)
        summary["seconds"] = seconds
        summary["complete"] = end == cfg.iterations
        return summary
    finally:
        shutdown(world)


def _init_from_trunk(model, run: RunConfig, trunk_path, label_map) -> Optional[dict[str, Any]]:
    """Load and freeze the trunk parts named by ``run.model`` (None for ``init: scratch``)."""
    from asn.engine.trunk import freeze, load_trunk

    if run.init != "trunk":
        if trunk_path is not None:  # the DVC stage always names the trunk; a scratch profile does not read it
            print(f"train: model.init is {run.init!r}: the trunk {trunk_path} is not used", file=sys.stderr)
        return None
    if trunk_path is None:
        raise InputError("--trunk", "model.init is 'trunk': pass the shared trunk file (models/trunk/trunk.pt, "
                                    "built by `dvc repro pretrain`)")
    info = load_trunk(model, trunk_path, run.model.get("trunk_parts") or (), label_map=label_map)
    freeze(model, run.model.get("freeze") or ())
    return info


def _step(model, optimizer, scaler, images, targets, *, device, amp, accumulate, seed, iteration,
          first_chunk, distributed) -> dict[str, float]:
    """One optimizer step over ``accumulate`` chunks of this rank's images; logged loss terms."""
    optimizer.zero_grad(set_to_none=True)
    image_chunks = split_chunks(images, accumulate)
    target_chunks = split_chunks(targets, accumulate)
    totals: dict[str, float] = {}
    for index, (chunk_images, chunk_targets) in enumerate(zip(image_chunks, target_chunks)):
        torch.manual_seed(micro_batch_seed(seed, iteration, first_chunk + index))
        chunk_images = [image.to(device, non_blocking=True) for image in chunk_images]
        chunk_targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in chunk_targets]
        sync = nullcontext()
        if distributed and index < accumulate - 1:
            sync = model.no_sync()  # all-reduce once per step, on the last chunk
        with sync:
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                losses = model(chunk_images, chunk_targets)
                loss = sum(losses.values()) / accumulate
            scaler.scale(loss).backward()
        for key, value in losses.items():
            totals[key] = totals.get(key, 0.0) + float(value.detach()) / accumulate
    scaler.step(optimizer)
    scaler.update()
    return totals


def _summary(run: RunConfig, rows: list[dict[str, float]], p_hash: str, d_hash: str, amp: bool,
             world: World, device: torch.device, experiment: str) -> dict[str, Any]:
    """Final figures without wall-clock times (so the file is a function of its inputs)."""
    tail = rows[-min(len(rows), 20):]
    mean_tail = {k: float(np.mean([r[k] for r in tail if k in r]))
                 for k in (tail[0].keys() if tail else []) if k not in ("iteration", "lr")}
    return {
        "variant": run.model["variant"], "profile": run.profile, "seed": run.train.seed,
        "iterations": rows[-1]["iteration"] if rows else 0, "total_batch": run.train.batch_size,
        "lr": run.train.scaled_lr, "amp": amp, "world_size": world.size, "device_type": device.type,
        "params_hash": p_hash, "data_hash": d_hash,
        "final_losses_mean_last_20": mean_tail,
        "mlflow": run_reference(experiment, run_key(experiment, run.model["variant"], run.train.seed, p_hash, d_hash)),
    }
