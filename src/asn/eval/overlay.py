"""Pictures of predictions (and ground truth) for `asn predict`, `asn view` and the report.

- :func:`draw_predictions`: the overlay, amodal outline, inmodal fill, class, score and
  occlusion score, and (given the scene order) each instance's ``ico_id`` digit on its visible
  part, as the paper's Figure 3 writes the order on every instance;
- :func:`draw_layers`: the layered view of Figure 1(c), near to far: every instance's amodal
  mask painted farthest first, so nearer ones cover farther ones, darker the farther it is;
- :func:`scene_figure`: ground truth beside predictions, overlay above layers, one PNG.
"""

from __future__ import annotations

import io
import os
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw

from asn.io import write_bytes_atomic
from asn.stats.visualize import PALETTE


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without scalable default fonts
        return ImageFont.load_default()


def _digit_anchor(visible: np.ndarray, whole: np.ndarray) -> tuple[int, int] | None:
    """Where an instance's order digit goes: the visible pixel nearest the visible part's
    centroid (the amodal mask's when nothing is visible); None for an empty mask."""
    for mask in (visible, whole):
        ys, xs = np.nonzero(mask)
        if len(xs):
            cy, cx = ys.mean(), xs.mean()
            k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
            return int(xs[k]), int(ys[k])
    return None


def draw_order_digits(pil: Image.Image, amodal_masks: np.ndarray, inmodal_masks: np.ndarray,
                      orders: Sequence[int], indices: Sequence[int] | None = None) -> None:
    """Write each instance's order (``ico_id``; 0 or less: not ordered, nothing written) on its
    visible part, white on a black outline, in place. Masks: (K, H, W) bool; orders: K ints."""
    draw = ImageDraw.Draw(pil)
    size = max(10, min(22, pil.size[1] // 12))
    font = _font(size)
    for k in (range(len(orders)) if indices is None else indices):
        if int(orders[k]) <= 0:
            continue
        anchor = _digit_anchor(inmodal_masks[k], amodal_masks[k])
        if anchor is None:
            continue
        draw.text(anchor, str(int(orders[k])), fill=(255, 255, 255), font=font, anchor="mm",
                  stroke_width=2, stroke_fill=(0, 0, 0))


def draw_predictions(image: np.ndarray, amodal_masks: np.ndarray, inmodal_masks: np.ndarray,
                     labels: Sequence[str], scores: Sequence[float], occlusion_scores: Sequence[float],
                     alpha: float = 0.45, orders: Sequence[int] | None = None) -> Image.Image:
    """One overlay image.

    Args:
        image: (H, W, 3) uint8 RGB.
        amodal_masks, inmodal_masks: (K, H, W) bool.
        labels, scores, occlusion_scores: K entries each (occlusion_scores None: not written).
        orders: K ``ico_id`` (optional): written on each instance's visible part (Figure 3).
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
        text = f"{labels[k]} {scores[k]:.2f}" + (
            "" if occlusion_scores is None else f" occ {occlusion_scores[k]:.2f}")
        draw.text((int(xs.min()), max(0, int(ys.min()) - 11)), text, fill=(255, 255, 255),
                  stroke_width=2, stroke_fill=(0, 0, 0))
    if orders is not None:
        if len(orders) != len(amodal_masks):
            raise ValueError(f"{len(amodal_masks)} masks but {len(orders)} orders")
        draw_order_digits(pil, amodal_masks, inmodal_masks, orders, order)
    return pil


def layer_shades(orders: Sequence[int]) -> np.ndarray:
    """``(K,)`` brightness factors of the layered view: 1 for the nearest layer (``ico_id`` 1),
    down to 0.3 for the farthest present; not-ordered instances (``ico_id`` <= 0) count as 1."""
    levels = np.maximum(np.asarray(orders, np.int64).reshape(-1), 1)
    if levels.size == 0:
        return np.zeros(0, np.float32)
    deepest = int(levels.max())
    if deepest == 1:
        return np.ones(levels.shape, np.float32)
    return (1.0 - 0.7 * (levels - 1) / (deepest - 1)).astype(np.float32)


def draw_layers(image: np.ndarray, amodal_masks: np.ndarray, orders: Sequence[int],
                digits: bool = True) -> Image.Image:
    """The layered view (paper Figure 1(c)): ``(H, W, 3)`` uint8 image, ``(K, H, W)`` bool amodal
    masks and K ``ico_id`` -> an RGB picture on the dimmed grey image where every amodal mask is
    painted in its colour times :func:`layer_shades`, farthest first, so a nearer instance covers
    a farther one and farther layers are darker; with ``digits`` the order on each instance's
    part that stays in view."""
    amodal_masks = np.asarray(amodal_masks, bool)
    if len(orders) != len(amodal_masks):
        raise ValueError(f"{len(amodal_masks)} masks but {len(orders)} orders")
    canvas = np.repeat(image.astype(np.float32).mean(axis=2, keepdims=True) * 0.35, 3, axis=2)
    shades = layer_shades(orders)
    levels = np.maximum(np.asarray(orders, np.int64).reshape(-1), 1)
    far_to_near = sorted(range(len(levels)), key=lambda k: (-levels[k], k))
    shown = np.zeros(amodal_masks.shape, bool)
    for k in far_to_near:
        canvas[amodal_masks[k]] = PALETTE[k % len(PALETTE)] * shades[k]
    covered = np.zeros(amodal_masks.shape[1:], bool)
    for k in reversed(far_to_near):  # near to far: what of each stays in view
        shown[k] = amodal_masks[k] & ~covered
        covered |= amodal_masks[k]
    out = canvas.clip(0, 255).astype(np.uint8)
    for k in far_to_near:
        contours, _ = cv2.findContours(amodal_masks[k].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 1)
    pil = Image.fromarray(out)
    if digits:
        draw_order_digits(pil, amodal_masks, shown, levels.tolist())
    return pil


def scene_figure(image: np.ndarray, panels: Sequence[tuple[str, np.ndarray, np.ndarray, Sequence[str],
                                                           Sequence[float], Sequence[int]]]) -> Image.Image:
    """Overlays (top row) above layered views (bottom row), one column per panel.

    panels: ``(title, amodal (K, H, W) bool, inmodal (K, H, W) bool, labels, scores, orders)``,
    e.g. the ground truth (scores 1) and a model's predictions (occlusion scores not written). Returns one RGB picture with the
    titles above the columns.
    """
    height, width = image.shape[:2]
    gap, title_h = 4, 16
    cols = max(1, len(panels))
    sheet = Image.new("RGB", (cols * width + (cols - 1) * gap, title_h + 2 * height + gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, (title, amodal, inmodal, labels, scores, orders) in enumerate(panels):
        x = c * (width + gap)
        draw.text((x + 2, 2), title, fill=(0, 0, 0), font=_font(12))
        overlay = draw_predictions(image, amodal, inmodal, labels, scores, None, orders=orders)
        sheet.paste(overlay, (x, title_h))
        sheet.paste(draw_layers(image, amodal, orders), (x, title_h + height + gap))
    return sheet


def save_png(image: Image.Image, path: str | os.PathLike) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())
