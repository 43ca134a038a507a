"""Prediction overlays for `asn predict`: amodal outline, inmodal fill, class, score, occlusion."""

from __future__ import annotations

import io
import os
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw

from asn.io import write_bytes_atomic
from asn.stats.visualize import PALETTE


def draw_predictions(image: np.ndarray, amodal_masks: np.ndarray, inmodal_masks: np.ndarray,
                     labels: Sequence[str], scores: Sequence[float], occlusion_scores: Sequence[float],
                     alpha: float = 0.45) -> Image.Image:
    """One overlay image.

    Args:
        image: (H, W, 3) uint8 RGB.
        amodal_masks, inmodal_masks: (K, H, W) bool.
        labels, scores, occlusion_scores: K entries each.
    Returns:
        the RGB overlay: inmodal (visible) part filled, amodal (whole) shape outlined, and
        "<class> <score> occ <occlusion score>" at the top left of the amodal box.
    """
    canvas = image.astype(np.float32).copy()
    # back to front by score so the most confident instance is drawn last (on top)
    order = np.argsort(np.asarray(scores, np.float64), kind="stable")
    for k in order:
        color = PALETTE[k % len(PALETTE)]
        visible = inmodal_masks[k]
        canvas[visible] = (1 - alpha) * canvas[visible] + alpha * color
    out = canvas.clip(0, 255).astype(np.uint8)
    for k in order:
        color = tuple(int(c) for c in PALETTE[k % len(PALETTE)])
        contours, _ = cv2.findContours(amodal_masks[k].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, 1)
    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    for k in order:
        ys, xs = np.nonzero(amodal_masks[k])
        if len(xs) == 0:
            continue
        text = f"{labels[k]} {scores[k]:.2f} occ {occlusion_scores[k]:.2f}"
        draw.text((int(xs.min()), max(0, int(ys.min()) - 11)), text, fill=(255, 255, 255),
                  stroke_width=2, stroke_fill=(0, 0, 0))
    return pil


def save_png(image: Image.Image, path: str | os.PathLike) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())
