"""Vectorised decoding of COCO compressed RLE strings, restricted to each mask's box window.

Decoding a full-size mask per instance (94k instances per KINS split, 375x1242 pixels each)
costs about 45 GB of memory traffic; the statistics only need the pixels inside each
instance's box. Here the counts strings of many masks are decoded at once with numpy (the
same LEB128-like scheme as pycocotools' ``rleFrString``), then the foreground runs are cut
into per-column pieces and painted into one buffer that holds every box window of a chunk.
"""

from __future__ import annotations


import numpy as np

from asn.data.rle import decode_counts  # noqa: F401  (re-exported: the batched decoder lives in the data layer)


def box_windows(
    boxes_xywh: np.ndarray, heights: np.ndarray, widths: np.ndarray
) -> np.ndarray:
    """Integer pixel windows covering each box, clipped to its image.

    Args:
        boxes_xywh: float [n, 4]; heights, widths: int [n] image sizes.
    Returns:
        int64 [n, 4] windows (x0, y0, x1, y1), end exclusive; may be empty (x1 == x0).
    """
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    x0 = np.clip(np.floor(boxes[:, 0]), 0, widths).astype(np.int64)
    y0 = np.clip(np.floor(boxes[:, 1]), 0, heights).astype(np.int64)
    x1 = np.clip(np.ceil(boxes[:, 0] + boxes[:, 2]), 0, widths).astype(np.int64)
    y1 = np.clip(np.ceil(boxes[:, 1] + boxes[:, 3]), 0, heights).astype(np.int64)
    return np.stack([x0, y0, np.maximum(x1, x0), np.maximum(y1, y0)], axis=1)


def window_masks(
    runs: np.ndarray,
    offsets: np.ndarray,
    heights: np.ndarray,
    windows: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Paint the foreground of each RLE inside its window into one flat buffer.

    Args:
        runs, offsets: from :func:`decode_counts` (n RLEs).
        heights: int [n] image height of each RLE (COCO RLEs run down columns).
        windows: int [n, 4] (x0, y0, x1, y1) from :func:`box_windows`.
    Returns:
        ``(buffer, starts)``: uint8 buffer and int64 starts [n+1]; the window of RLE i is
        ``buffer[starts[i]:starts[i+1]].reshape(x1-x0, y1-y0).T`` (rows = y, columns = x),
        1 for foreground pixels.
    """
    n = offsets.size - 1
    heights = np.asarray(heights, np.int64)
    windows = np.asarray(windows, np.int64).reshape(-1, 4)
    win_w = windows[:, 2] - windows[:, 0]
    win_h = windows[:, 3] - windows[:, 1]
    # Each window is stored column by column with one spare row for the run-end markers.
    sizes = win_w * (win_h + 1)
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(sizes, out=starts[1:])
    if n == 0 or runs.size == 0:
        return np.zeros(0, np.uint8), np.zeros(n + 1, np.int64)
    rle_of_run = np.repeat(np.arange(n), np.diff(offsets))
    local = np.arange(runs.size, dtype=np.int64) - offsets[rle_of_run]
    run_end = np.cumsum(runs)
    # cumulative pixel position restarts at every RLE
    first_end = run_end[offsets[:-1].clip(max=runs.size - 1)]
    first_run = runs[offsets[:-1].clip(max=runs.size - 1)]
    rle_base = first_end - first_run
    run_end = run_end - rle_base[rle_of_run]
    run_start = run_end - runs
    fg = (local % 2 == 1) & (runs > 0)
    fg_rle = rle_of_run[fg]
    fg_start = run_start[fg]
    fg_end = run_end[fg]
    h = heights[fg_rle]
    # Cut each foreground run at column boundaries: one piece per column it touches.
    col_first = fg_start // h
    col_last = (fg_end - 1) // h
    # Only columns inside the window matter; clip before expanding to keep the pieces few.
    wx0 = windows[fg_rle, 0]
    wx1 = windows[fg_rle, 2]
    c_lo = np.maximum(col_first, wx0)
    c_hi = np.minimum(col_last, wx1 - 1)
    keep = c_hi >= c_lo
    fg_rle, fg_start, fg_end, h, c_lo, c_hi = (
        a[keep] for a in (fg_rle, fg_start, fg_end, h, c_lo, c_hi)
    )
    n_pieces = c_hi - c_lo + 1
    piece_run = np.repeat(np.arange(n_pieces.size), n_pieces)
    piece_offsets = np.zeros(n_pieces.size, np.int64)
    if n_pieces.size:
        piece_offsets[1:] = np.cumsum(n_pieces)[:-1]
    piece_col = c_lo[piece_run] + (np.arange(piece_run.size, dtype=np.int64) - piece_offsets[piece_run])
    piece_h = h[piece_run]
    col_base = piece_col * piece_h
    row_start = np.maximum(fg_start[piece_run] - col_base, 0)
    row_end = np.minimum(fg_end[piece_run] - col_base, piece_h)
    piece_rle = fg_rle[piece_run]
    wy0 = windows[piece_rle, 1]
    wy1 = windows[piece_rle, 3]
    row_start = np.clip(row_start, wy0, wy1) - wy0
    row_end = np.clip(row_end, wy0, wy1) - wy0
    nonempty = row_end > row_start
    piece_rle, piece_col, row_start, row_end = (
        a[nonempty] for a in (piece_rle, piece_col, row_start, row_end)
    )
    column_offset = starts[piece_rle] + (piece_col - windows[piece_rle, 0]) * (win_h[piece_rle] + 1)
    # Pieces in one column are separated by background runs of length >= 1, so no two marks
    # share a position and plain assignment replaces the much slower np.add.at. Every piece
    # ends at the latest in the spare row of its column, so the running sum is 0/1 and never
    # leaks into the next column.
    total = int(starts[-1])
    marks = np.zeros(-(-(total + 1) // 8) * 8, np.uint8)
    marks[column_offset + row_start] = 1  # toggles: a pixel is inside a run when an odd
    marks[column_offset + row_end] = 1  # number of toggles lie at or before it
    buffer = prefix_parity(marks)[:total]
    return buffer, starts


_BYTE_ONES = np.uint64(0x0101010101010101)


def prefix_parity(toggles: np.ndarray) -> np.ndarray:
    """Running parity of a 0/1 uint8 array (length a multiple of 8), 8 bytes at a time.

    numpy's cumsum on bytes runs one element at a time (about 5 ns each here, seconds for the
    billion window pixels of a KINS split). Multiplying a little-endian 64-bit word by
    0x0101010101010101 puts the prefix sum of its bytes in every byte (at most 8, no carry);
    the parity carried in from earlier words comes from a cumsum over 8x fewer word totals.
    """
    words = toggles.view(np.uint64)
    within = words * _BYTE_ONES
    totals = within >> np.uint64(56)
    carry = (np.cumsum(totals) - totals) & np.uint64(1)
    within += carry * _BYTE_ONES
    within &= _BYTE_ONES
    return within.view(np.uint8)


def window_view(buffer: np.ndarray, starts: np.ndarray, windows: np.ndarray, i: int) -> np.ndarray:
    """The [h, w] uint8 mask window of RLE i (a C-contiguous copy, ready for OpenCV)."""
    x0, y0, x1, y1 = (int(v) for v in windows[i])
    w, h = x1 - x0, y1 - y0
    if w == 0 or h == 0:
        return np.zeros((h, w), np.uint8)
    block = buffer[starts[i] : starts[i + 1]].reshape(w, h + 1)[:, :h]
    return np.ascontiguousarray(block.T)


def chunk_bounds(sizes: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Split consecutive items into [start, end) chunks whose total size stays near ``budget``."""
    sizes = np.asarray(sizes, np.int64)
    if sizes.size == 0:
        return []
    cum = np.cumsum(sizes)
    bounds = []
    start = 0
    while start < sizes.size:
        base = cum[start - 1] if start else 0
        end = int(np.searchsorted(cum, base + budget, side="right"))
        end = max(end, start + 1)
        bounds.append((start, min(end, sizes.size)))
        start = end
    return bounds


__all__ = ["decode_counts", "box_windows", "window_masks", "window_view", "chunk_bounds"]
