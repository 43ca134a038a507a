"""Learning-rate schedule: linear warmup, then multi-step decay (detectron2's WarmupMultiStepLR).

A pure function of the iteration, so a resumed run lands on exactly the same lr; the torch
LambdaLR around it only exists so the optimizer/scheduler pair checkpoints as torch expects.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Sequence

import torch


def lr_factor(iteration: int, *, steps: Sequence[int], gamma: float = 0.1,
              warmup_iterations: int = 0, warmup_factor: float = 0.001) -> float:
    """Multiplier of the base lr at ``iteration`` (0-based, the step about to be taken).

    Warmup rises linearly from ``warmup_factor`` at 0 to 1 at ``warmup_iterations``; each
    entry of ``steps`` that has been reached multiplies by ``gamma``.
    """
    factor = gamma ** bisect_right(list(steps), iteration)
    if iteration < warmup_iterations:
        alpha = iteration / warmup_iterations
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, *, steps: Sequence[int], gamma: float,
                    warmup_iterations: int, warmup_factor: float) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over :func:`lr_factor` (stepped once per iteration)."""
    steps = tuple(int(s) for s in steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda it: lr_factor(it, steps=steps, gamma=gamma, warmup_iterations=warmup_iterations,
                             warmup_factor=warmup_factor),
    )
