"""Read and write the KITTI 2015 16-bit PNG encodings exactly as the official devkit does.

The devkit (``cpp/io_disp.h``, ``io_flow.h``, ``io_integer.h`` of the KITTI 2015 stereo /
flow / scene flow development kit) defines:

- disparity: 16-bit gray PNG, ``disp = I / 256``, valid where ``I > 0``. Writing
  (``DisparityImage::writeDisparityMap``): ``I = (uint16)max(disp * 256, 1)`` where valid,
  ``0`` where invalid, i.e. TRUNCATED (not rounded) and never below 1 so that a valid pixel
  stays valid. The devkit casts values above 65535 to uint16 unchecked (undefined behaviour);
  we saturate at 65535 instead.
- flow: 16-bit RGB PNG, ``u = (R - 2^15) / 64``, ``v = (G - 2^15) / 64``, valid where ``B > 0``;
  invalid pixels read as ``u = v = 0``. Writing (``FlowImage::writeFlowField``):
  ``R = (uint16)max(min(u * 64 + 2^15, 65535), 0)`` computed in float32 (truncated), same for
  G, and ``B = 1`` where valid; all three 0 where invalid.
- object map: 8-bit gray PNG, 0 = background, > 0 = foreground (objects).

Values at the encoding's precision (multiples of 1/256 resp. 1/64 in range) round-trip
exactly. PNGs are decoded with OpenCV (``IMREAD_UNCHANGED`` keeps 16 bits; Pillow cannot read
16-bit RGB losslessly); OpenCV orders channels BGR, so the flow channels are flipped here.

A missing or undecodable file, a file that is not a PNG, the wrong bit depth or channel count,
and sizes that disagree between an estimate and its ground truth raise
:class:`asn.errors.InputError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from asn.errors import InputError
from asn.io import read_bytes, write_bytes_atomic

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DISP_SCALE = 256.0
FLOW_SCALE = 64.0
FLOW_OFFSET = 32768.0  # 2^15

Disparity = tuple[np.ndarray, np.ndarray]  # (float32 HxW disparity, bool HxW valid)
Flow = tuple[np.ndarray, np.ndarray]  # (float32 HxWx2 (u, v), bool HxW valid)


def _read_png(path: str | os.PathLike) -> np.ndarray:
    """Decode a PNG file unchanged (bit depth and channels kept; BGR order for colour)."""
    path = Path(path)
    data = read_bytes(path, "a PNG file")
    # the devkit reads PNG only; OpenCV would also accept TIFF, JPEG, ... silently
    if not data.startswith(PNG_SIGNATURE):
        raise InputError(path, "not a PNG file")
    # imdecode (not imread): works on any path, and the bytes are already in memory
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(path, "cannot decode the PNG (corrupt or truncated)")
    return image


def _describe(image: np.ndarray) -> str:
    channels = 1 if image.ndim == 2 else image.shape[2]
    bits = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(image.dtype, image.dtype)
    return f"{bits}-bit, {channels} channel{'s' if channels != 1 else ''}"


def read_disparity(path: str | os.PathLike) -> Disparity:
    """KITTI disparity PNG -> (disp float32 HxW, valid bool HxW); invalid pixels hold 0."""
    image = _read_png(path)
    if image.dtype != np.uint16 or image.ndim != 2:
        raise InputError(path, f"expected a 16-bit 1-channel disparity PNG, got {_describe(image)}")
    valid = image > 0
    # I / 256 is exact in float32 (16-bit integers, power-of-two divisor)
    return image.astype(np.float32) / np.float32(DISP_SCALE), valid


def read_flow(path: str | os.PathLike) -> Flow:
    """KITTI flow PNG -> (flow float32 HxWx2 holding (u, v), valid bool HxW); invalid hold 0."""
    image = _read_png(path)
    if image.dtype != np.uint16 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(path, f"expected a 16-bit 3-channel (RGB) flow PNG, got {_describe(image)}")
    rgb = image[:, :, ::-1]  # OpenCV gives BGR
    valid = rgb[:, :, 2] > 0
    flow = (rgb[:, :, :2].astype(np.float32) - np.float32(FLOW_OFFSET)) / np.float32(FLOW_SCALE)
    flow[~valid] = 0.0  # as the devkit's readFlowField
    return flow, valid


def read_object_map(path: str | os.PathLike) -> np.ndarray:
    """KITTI object map PNG (8-bit gray) -> bool HxW foreground mask (value > 0)."""
    image = _read_png(path)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise InputError(path, f"expected an 8-bit 1-channel object map PNG, got {_describe(image)}")
    return image > 0


def encode_disparity(disp: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(disp HxW, valid HxW) -> uint16 HxW as the devkit writes it.

    ``I = trunc(max(disp * 256, 1))`` saturated at 65535 where valid (and finite), 0 elsewhere.
    """
    disp = np.asarray(disp)
    valid = np.asarray(valid, dtype=bool)
    if disp.shape != valid.shape or disp.ndim != 2:
        raise ValueError(f"disparity {disp.shape} and valid {valid.shape} must be the same HxW")
    # the devkit multiplies in double (float * 256.0); a NaN / inf pixel cannot be encoded
    scaled = disp.astype(np.float64) * DISP_SCALE
    keep = valid & np.isfinite(scaled)
    out = np.zeros(disp.shape, np.uint16)
    out[keep] = np.clip(np.trunc(scaled[keep]), 1.0, 65535.0).astype(np.uint16)
    return out


def encode_flow(flow: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(flow HxWx2, valid HxW) -> uint16 HxWx3 in RGB order as the devkit writes it.

    ``R = trunc(clip(u * 64 + 2^15, 0, 65535))`` in float32, likewise G from v, B = 1 where
    valid (and finite); all 0 elsewhere.
    """
    flow = np.asarray(flow)
    valid = np.asarray(valid, dtype=bool)
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[:2] != valid.shape:
        raise ValueError(f"flow {flow.shape} must be HxWx2 and valid {valid.shape} HxW")
    scaled = flow.astype(np.float32) * np.float32(FLOW_SCALE) + np.float32(FLOW_OFFSET)
    keep = valid & np.isfinite(scaled).all(axis=2)
    out = np.zeros((*valid.shape, 3), np.uint16)
    out[keep, :2] = np.trunc(np.clip(scaled[keep], 0.0, 65535.0)).astype(np.uint16)
    out[keep, 2] = 1
    return out


def _write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the PNG")
    return write_bytes_atomic(path, buffer.tobytes())


def write_disparity(path: str | os.PathLike, disp: np.ndarray, valid: np.ndarray) -> Path:
    """Write a KITTI disparity PNG (16-bit gray) atomically; see :func:`encode_disparity`."""
    return _write_png(path, encode_disparity(disp, valid))


def write_flow(path: str | os.PathLike, flow: np.ndarray, valid: np.ndarray) -> Path:
    """Write a KITTI flow PNG (16-bit RGB) atomically; see :func:`encode_flow`."""
    return _write_png(path, encode_flow(flow, valid)[:, :, ::-1])  # OpenCV writes BGR


def write_object_map(path: str | os.PathLike, foreground: np.ndarray) -> Path:
    """Write a KITTI-style object map PNG (8-bit gray): 1 where foreground, 0 elsewhere.

    (KITTI's own maps number the objects 1, 2, ...; only 0 vs > 0 matters for evaluation.)
    """
    foreground = np.asarray(foreground)
    if foreground.ndim != 2:
        raise ValueError(f"object map must be HxW, got {foreground.shape}")
    return _write_png(path, (foreground > 0).astype(np.uint8))


def check_same_size(path: str | os.PathLike, shape: tuple[int, ...],
                    reference_path: str | os.PathLike, reference_shape: tuple[int, ...]) -> None:
    """Raise InputError naming ``path`` when its HxW differs from the reference file's."""
    if tuple(shape[:2]) != tuple(reference_shape[:2]):
        h, w = shape[:2]
        rh, rw = reference_shape[:2]
        raise InputError(path, f"size {w}x{h} px does not match {Path(reference_path).name} "
                               f"({rw}x{rh} px)")
