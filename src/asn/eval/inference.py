"""Run a model over a dataset and collect COCO-style predictions (DESIGN.md section 2)."""

from __future__ import annotations

import sys
import time
from typing import Any, Mapping

import torch


def output_to_cpu(output: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model output on the CPU, floating tensors as float32 (AMP gives float16 on CUDA)."""
    return {k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in output.items()}


def predict_dataset(model, dataset, *, device: torch.device, batch_size: int = 2, workers: int = 0,
                    mask_threshold: float = 0.5, label_to_category: Mapping[int, int],
                    progress: bool = True) -> tuple[list[dict[str, Any]], float]:
    """Predictions for every image of ``dataset`` (in file order) and the model's seconds.

    Images are read by the project's loader (worker processes, one-line errors); the model
    runs under ``torch.inference_mode`` and, on CUDA, autocast.
    """
    from asn.data.dataset import build_loader

    indices = list(range(len(dataset)))
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    loader = build_loader(dataset, batches, num_workers=workers)
    results: list[dict[str, Any]] = []
    model.eval()
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(indices), desc="predict", unit="img", dynamic_ncols=True)
    # the masks stay in their boxes; detections_to_results pastes them while encoding
    paste, model.transform.paste_masks = model.transform.paste_masks, False
    try:
        seconds = _predict_batches(model, loader, device, results, label_to_category, mask_threshold, bar)
    finally:
        model.transform.paste_masks = paste
    if bar is not None:
        bar.close()
    return results, seconds


def _predict_batches(model, loader, device, results, label_to_category, mask_threshold, bar) -> float:
    from asn.eval.predictions import detections_to_results

    seconds = 0.0
    with torch.inference_mode():
        for images, targets in loader:
            images = [image.to(device, non_blocking=True) for image in images]
            t0 = time.perf_counter()
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                outputs = model(images)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds += time.perf_counter() - t0
            for output, target in zip(outputs, targets):
                results.extend(detections_to_results(output_to_cpu(output), int(target["image_id"]), label_to_category,
                                                     mask_threshold=mask_threshold))
            if bar is not None:
                bar.update(len(images))
    return seconds
