"""COCO run-length encoding helpers that pycocotools lacks: set difference without decoding.

A COCO RLE walks the image column by column (Fortran order) and alternates runs of 0s and 1s,
starting with 0s. pycocotools can rasterize polygons, merge (union / intersection), measure
area and boxes, but has no difference; decoding full-size masks to subtract them costs
0.1-0.3 ms per KINS-sized mask. Working on run boundaries instead keeps the segmentation
transformation (amodal minus the amodal masks in front) cheap at KINS scale and bit-exact.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils


def string_to_counts(counts: str | bytes) -> np.ndarray:
    """Decode a compressed COCO RLE counts string into run lengths (int64, shape (R,)).

    Inverse of pycocotools' ``rleToString`` (LEB128-like, 5 bits per char, sign bit 0x10,
    continuation bit 0x20, and from the 4th value on a delta to the value two places back).
    """
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    if not counts:
        return np.zeros(0, np.int64)
    c = np.frombuffer(counts, np.uint8).astype(np.int64) - 48
    last = (c & 0x20) == 0  # a char without the continuation bit ends a value
    ends = np.flatnonzero(last)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    group = np.repeat(np.arange(len(ends)), ends - starts + 1)
    shift = 5 * (np.arange(len(c)) - starts[group])
    values = np.add.reduceat((c & 0x1F) << shift, starts)
    negative = (c[ends] & 0x10) != 0
    values[negative] |= -1 << (shift[ends[negative]] + 5)
    # Deltas: value m (m > 2) is stored relative to value m - 2.
    values[3::2] = np.cumsum(values[1::2])[1:]
    values[4::2] = np.cumsum(values[2::2])[1:]
    return values


def counts_to_rle(counts: Sequence[int] | np.ndarray, height: int, width: int) -> dict:
    """Run lengths -> compressed COCO RLE dict (``counts`` as an ASCII str)."""
    if isinstance(counts, np.ndarray):
        counts = counts.tolist()
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def complement(rle: dict) -> dict:
    """The pixels NOT in ``rle`` (compressed RLE in, compressed RLE out)."""
    height, width = rle["size"]
    counts = string_to_counts(rle["counts"])
    # Runs alternate 0s, 1s, ... starting with 0s: complementing shifts the parity by one.
    if len(counts) and counts[0] == 0:
        flipped = counts[1:]
    else:
        flipped = np.concatenate([[0], counts])
    return counts_to_rle(flipped, height, width)


def difference(rle: dict, subtract: Sequence[dict]) -> dict:
    """``rle`` minus the union of ``subtract`` (all compressed RLEs of the same size).

    Returns a compressed RLE dict. Exact: equals decode(rle) & ~decode(union(subtract)).
    pycocotools has union and intersection in C; the complement is a parity shift of the run
    lengths, so only the union of ``subtract`` is decoded to run lengths, never to pixels.
    """
    height, width = rle["size"]
    if not subtract:
        return {"size": [height, width], "counts": _as_str(rle["counts"])}
    cut = subtract[0] if len(subtract) == 1 else mask_utils.merge(
        [_coco(r) for r in subtract], intersect=False)
    keep = mask_utils.merge([_coco(rle), _coco(complement(cut))], intersect=True)
    return {"size": [height, width], "counts": _as_str(keep["counts"])}


def _as_str(counts: str | bytes | list) -> str:
    return counts.decode("ascii") if isinstance(counts, bytes) else counts


def polygons_to_rle(polygons: list[list[float]], height: int, width: int) -> dict:
    """COCO polygons (one object, possibly several parts) -> one compressed RLE dict.

    This is THE rasterization of the project: the synthetic world defines its masks with it,
    so converted ground truth matches the generator bit for bit.
    """
    parts = mask_utils.frPyObjects(polygons, height, width)
    rle = parts[0] if len(parts) == 1 else mask_utils.merge(parts)
    return {"size": [height, width], "counts": _as_str(rle["counts"])}


def normalize_rle(rle: dict) -> dict:
    """Uncompressed (list counts) or compressed RLE -> compressed RLE with str counts."""
    height, width = rle["size"]
    if isinstance(rle["counts"], list):
        return counts_to_rle(rle["counts"], height, width)
    return {"size": [height, width], "counts": _as_str(rle["counts"])}


def _coco(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str)
            else counts}


def area(rles: Sequence[dict]) -> np.ndarray:
    """Pixel areas of compressed RLEs, shape (N,)."""
    if not rles:
        return np.zeros(0, np.int64)
    return mask_utils.area([_coco(r) for r in rles]).astype(np.int64)


def bbox(rles: Sequence[dict]) -> np.ndarray:
    """Tight xywh boxes of compressed RLEs, shape (N, 4); zero boxes for empty masks."""
    if not rles:
        return np.zeros((0, 4), np.float64)
    return mask_utils.toBbox([_coco(r) for r in rles]).astype(np.float64)


def decode(rle: dict) -> np.ndarray:
    """Compressed RLE -> (H, W) bool mask."""
    return mask_utils.decode(_coco(rle)).astype(bool)


def encode(mask: np.ndarray) -> dict:
    """(H, W) bool mask -> compressed RLE dict with str counts."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
