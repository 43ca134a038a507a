"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a dict of plain containers and tensors only (so the safe loader accepts it):

``format``, ``model`` (state dict), ``optimizer``, ``lr_scheduler``, ``grad_scaler``,
``iteration`` (steps done), ``rng`` (python, numpy, torch, cuda, loader), ``run`` (the
resolved configuration: profile, model params, train config), ``params_hash``, ``data_hash``,
``label_map`` (contiguous label <-> KINS category), ``variant``, ``log`` (one row of losses and
lr per iteration, so a resumed run rewrites the same training CSV).

The model can be rebuilt from the checkpoint alone (:func:`build_model_from_checkpoint`):
that is what ``asn evaluate`` and ``asn predict`` do.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asn.errors import InputError
from asn.io import write_bytes_atomic

FORMAT = "asn-checkpoint-1"


def rng_state(loader_iteration: int) -> dict[str, Any]:
    """Every RNG state of this process, in weights_only-loadable types."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss),
                  float(np_gauss)],
        "torch": torch.get_rng_state(),
        # the loader's order is a pure function of (seed, iteration): its state is the iteration
        "loader": {"iteration": int(loader_iteration)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, np_gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Serialize to memory, then publish atomically: a kill never leaves half a file."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; anything else (missing, corrupt, foreign) is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(path, f"cannot read checkpoint: {reason}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise InputError(path, f"not an asn checkpoint (expected format {FORMAT!r})")
    for key in ("model", "run", "label_map", "variant", "iteration"):
        if key not in checkpoint:
            raise InputError(path, f"checkpoint lacks {key!r}")
    return checkpoint


def load_model_state(model: torch.nn.Module, state: dict, path: str | Path) -> None:
    """Load a state dict into ``model``, naming the file when it belongs to another model."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) or first[0]
        raise InputError(path, f"checkpoint does not fit this model: {detail}") from None


def build_model_from_checkpoint(path: str | Path, device: torch.device | str = "cpu"):
    """(model in eval mode on ``device``, checkpoint dict) from a checkpoint file alone."""
    from asn.model import build_model_from_params

    checkpoint = load_checkpoint(path)
    try:
        model = build_model_from_params(checkpoint["run"]["model"])
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(path, f"checkpoint's model parameters are invalid: {error}") from None
    load_model_state(model, checkpoint["model"], path)
    return model.to(device).eval(), checkpoint
