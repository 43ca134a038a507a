"""Figure 1/3 style visualisations: amodal masks coloured with occlusion-order digits (left),
inmodal masks (right), on the image when it exists and on a grey canvas otherwise."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from asn.io import write_bytes_atomic
from asn.stats.clusters import polygons_to_rles

# A fixed palette: the same instance has the same colour on both sides.
PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
     [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40]],
    np.float32,
)


def _background(image_path: Path | None, height: int, width: int) -> np.ndarray:
    if image_path is not None and image_path.is_file():
        with Image.open(image_path) as image:
            array = np.asarray(image.convert("RGB"), np.float32)
        if array.shape[:2] == (height, width):
            return array
    return np.full((height, width, 3), 96, np.float32)


def render_instances(
    out_path: str | os.PathLike,
    image_path: Path | None,
    height: int,
    width: int,
    amodal_segmentations: list[list[list[float]]],
    inmodal_rles: list[dict],
    orders: list[int],
    alpha: float = 0.6,
) -> None:
    """Write one side-by-side PNG (amodal left, inmodal right) for an image's instances.

    Amodal masks are blended back to front (largest order first) so the front instance's
    colour stays visible; each instance's ico_id is written at the centre of its amodal box
    (``-`` when the order is unknown).
    """
    # A dimmed grey photo, so the mask colours stand out from the (colourful) objects.
    background = _background(image_path, height, width).mean(axis=2, keepdims=True) * 0.55
    background = np.repeat(background, 3, axis=2)
    left = background.copy()
    right = background.copy()
    amodal_rles = polygons_to_rles(amodal_segmentations, height, width)
    draw_order = sorted(range(len(orders)), key=lambda i: -orders[i])
    for i in draw_order:
        color = PALETTE[i % len(PALETTE)]
        if amodal_rles[i] is not None:
            m = mask_utils.decode(amodal_rles[i]).astype(bool)
            left[m] = (1 - alpha) * left[m] + alpha * color
        m = mask_utils.decode(inmodal_rles[i]).astype(bool)
        right[m] = (1 - alpha) * right[m] + alpha * color
    canvas = Image.fromarray(np.concatenate([left, np.full((height, 4, 3), 255, np.float32), right], axis=1).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    # Amodal outlines on the left show the hidden extent of each instance.
    for i, seg in enumerate(amodal_segmentations):
        color = tuple(int(c) for c in PALETTE[i % len(PALETTE)])
        for poly in seg or []:
            if len(poly) >= 6:
                draw.line(list(zip(poly[0::2], poly[1::2])) + [(poly[0], poly[1])], fill=color,
                          width=1)
    for i, rle in enumerate(amodal_rles):
        if rle is None:
            continue
        x, y, w, h = mask_utils.toBbox(rle)
        label = str(orders[i]) if orders[i] > 0 else "-"
        cx, cy = float(x + w / 2), float(y + h / 2)
        draw.text((cx - 3, cy - 6), label, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    write_bytes_atomic(out_path, buffer.getvalue())
