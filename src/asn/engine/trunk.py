"""The shared pretrained trunk (DESIGN.md 8): what transfers from the ``pretrain`` stage's model
to every Table 4 model and sweep arm, how it is stored, checked, loaded and frozen.

In the paper every run starts from one ImageNet-pretrained ResNet and only the heads start
random. The smoke profile has no ImageNet on a laptop, so the ``pretrain`` stage trains a plain
Mask R-CNN once on a separate synthetic *pretraining world* (never the test images) and keeps
the parts that every variant shares:

========== =================================================== ===============================
part       state-dict keys (plain Mask R-CNN)                  PANet variants
========== =================================================== ===============================
body       ``backbone.body.*`` (the ResNet)                     ``backbone.fpn_backbone.body.*``
fpn        ``backbone.fpn.*``                                   ``backbone.fpn_backbone.fpn.*``
rpn        ``rpn.*``                                            the same
box_head   ``roi_heads.box_head.*``, ``roi_heads.box_predictor.*`` first conv: every pyramid
                                                                level's copy of it (adaptive
                                                                pooling) starts from the one
========== =================================================== ===============================

Everything else (occlusion branch, MLC, the mask heads, PANet's bottom-up path) is
variant-specific and always starts from the seed's random init, so the variants are compared
as in the paper. ``model.trunk_parts`` says which parts a run loads, ``model.freeze`` which of
them stay fixed while it trains (their weights are then identical in every model).

The trunk file (``torch.load(weights_only=True)``-safe dict): ``format``, ``state`` (canonical
key -> tensor, stored in ``dtype``), ``dtype``, ``parts``, ``backbone``, ``backbone_norm``,
``num_classes``, ``label_map``, ``sizes`` (the model widths the shapes depend on) and
``provenance`` (params hash, data hash, world, iterations). :func:`load_trunk` refuses, with an
:class:`~asn.errors.InputError` naming the file and the reason, a file that is missing, corrupt,
of another format, backbone, norm or class count, or whose tensors do not fit the model.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from asn.errors import InputError
from asn.io import write_bytes_atomic

FORMAT = "asn-trunk-1"
PARTS = ("body", "fpn", "rpn", "box_head")
INITS = ("scratch", "trunk")
DTYPES = {"float16": torch.float16, "float32": torch.float32}
# model widths that decide the trunk's tensor shapes (checked before any tensor is copied)
SIZE_KEYS = ("fpn_channels", "box_conv_channels", "box_fc_dim", "anchor_sizes")

_PANET_PREFIX = "backbone.fpn_backbone."
_LEVEL_LAYER = re.compile(r"\.level_layers\.\d+")


def canonical_key(name: str) -> str:
    """A state-dict key of any variant in the plain Mask R-CNN's naming (see the module table)."""
    if name.startswith(_PANET_PREFIX):
        name = "backbone." + name[len(_PANET_PREFIX):]
    if name.startswith("roi_heads.box_head.convs.0."):
        name = _LEVEL_LAYER.sub("", name, count=1)
    return name


def part_of(name: str) -> str | None:
    """The trunk part a (canonical or variant) state-dict key belongs to; None = variant-specific."""
    key = canonical_key(name)
    if key.startswith("backbone.body."):
        return "body"
    if key.startswith("backbone.fpn."):
        return "fpn"
    if key.startswith("rpn."):
        return "rpn"
    if key.startswith(("roi_heads.box_head.", "roi_heads.box_predictor.")):
        return "box_head"
    return None


def check_parts(parts: Iterable[str], what: str, source: str = "params.yaml") -> tuple[str, ...]:
    parts = tuple(parts or ())
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise InputError(source, f"{what}: unknown trunk part(s) {unknown}; valid: {list(PARTS)}")
    return tuple(p for p in PARTS if p in parts)


def _tensor_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers, without BatchNorm's step counter (not a weight)."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def save_trunk(path: str | Path, state: Mapping[str, torch.Tensor], *, dtype: str, meta: Mapping[str, Any]) -> Path:
    """Write the trunk file atomically; float tensors in ``dtype`` (float16 halves the file)."""
    if dtype not in DTYPES:
        raise ValueError(f"trunk dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    stored = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v) for k, v in sorted(state.items())}
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "state": stored, "dtype": dtype, **meta}, buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def export_trunk(checkpoint_path: str | Path, out_path: str | Path, *, parts: Iterable[str], dtype: str,
                 provenance: Mapping[str, Any]) -> dict[str, Any]:
    """Write the trunk file of a trained plain Mask R-CNN checkpoint; returns its metadata.

    Every tensor of the model is kept, so the trunk is a whole Mask R-CNN whose own AP can be
    measured (:func:`trunk_model`); only ``parts`` ever transfer (the mask heads are "probe" parts).
    """
    from asn.engine.checkpoint import build_model_from_checkpoint

    model, checkpoint = build_model_from_checkpoint(checkpoint_path, torch.device("cpu"))
    if any(canonical_key(name) != name for name in model.state_dict()):
        raise InputError(checkpoint_path, "a trunk comes from a plain Mask R-CNN, not from a PANet model")
    state = _tensor_state(model)
    run_model = checkpoint["run"]["model"]
    meta = {
        "parts": list(check_parts(parts, "trunk parts", str(checkpoint_path))),
        "probe_parts": sorted({".".join(k.split(".")[1:3]) for k in state if k.startswith("roi_heads.mask_branches.")}),
        "backbone": run_model["backbone"], "backbone_norm": model.config["backbone_norm"],
        "head_norm": model.config["head_norm"], "num_classes": int(model.num_classes),
        "variant": checkpoint["variant"], "label_map": checkpoint["label_map"],
        "sizes": {key: model.config.get(key) for key in (*SIZE_KEYS, "mask_conv_channels")},
        "model": run_model, "provenance": dict(provenance),
    }
    save_trunk(out_path, state, dtype=dtype, meta=meta)
    return meta


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_trunk(path: str | Path) -> dict[str, Any]:
    """The trunk file's dict, with ``sha256`` added; InputError for a missing / corrupt / foreign file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "trunk file not found (build it with `dvc repro pretrain`)")
    try:
        trunk = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(path, f"cannot read the trunk file: {reason}") from None
    if not isinstance(trunk, dict) or trunk.get("format") != FORMAT:
        raise InputError(path, f"not an asn trunk file (expected format {FORMAT!r})")
    for key in ("state", "parts", "backbone", "backbone_norm", "num_classes", "sizes"):
        if key not in trunk:
            raise InputError(path, f"trunk file lacks {key!r}")
    trunk["sha256"] = file_sha256(path)
    return trunk


def load_trunk(model: nn.Module, path: str | Path, parts: Iterable[str], *,
               label_map: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Copy ``parts`` of the trunk at ``path`` into ``model`` (an :class:`asn.model.AmodalRCNN`).

    Everything is checked before anything is copied: backbone, body norm, class count (when the
    box head transfers), the widths in ``sizes``, and that every tensor of those parts exists in
    the file with the model's shape. ``label_map`` (the training split's) must equal the trunk's
    when the box head transfers, so class k means the same category in both. Returns the trunk's
    metadata (with its ``sha256``), without the tensors.
    """
    parts = tuple(parts)
    path = Path(path)
    trunk = read_trunk(path)
    config = model.config
    missing_parts = sorted(set(parts) - set(trunk["parts"]))
    if missing_parts:
        raise InputError(path, f"the trunk holds parts {list(trunk['parts'])}, not {missing_parts}")
    backbone = getattr(model, "backbone_name", None)
    if backbone is not None and trunk["backbone"] != backbone:
        raise InputError(path, f"the trunk was trained with backbone {trunk['backbone']!r}, this model uses {backbone!r}")
    if "body" in parts:
        norm = config["backbone_norm"]
        compatible = {"gn": {"gn"}, "bn": {"bn", "frozen_bn"}, "frozen_bn": {"bn", "frozen_bn"}}
        if norm not in compatible.get(trunk["backbone_norm"], {trunk["backbone_norm"]}):
            raise InputError(path, f"the trunk's body uses norm {trunk['backbone_norm']!r}, this model "
                                   f"backbone_norm {norm!r}")
    if "box_head" in parts:
        if int(trunk["num_classes"]) != int(model.num_classes):
            raise InputError(path, f"the trunk has {trunk['num_classes']} classes, this model {model.num_classes}")
        if label_map is not None and trunk.get("label_map") is not None \
                and list(trunk["label_map"]["category_ids"]) != list(label_map["category_ids"]):
            raise InputError(path, f"the trunk's classes are KINS categories {trunk['label_map']['category_ids']}, "
                                   f"the training split's {label_map['category_ids']}")
    for key in SIZE_KEYS:
        mine, theirs = config.get(key), trunk["sizes"].get(key)
        if theirs is not None and mine is not None and list(_as_list(mine)) != list(_as_list(theirs)):
            raise InputError(path, f"the trunk was trained with {key}={theirs}, this model has {mine}")
    state = trunk["state"]
    targets = {name: tensor for name, tensor in _tensor_state(model).items() if part_of(name) in parts}
    for name, tensor in targets.items():
        key = canonical_key(name)
        if key not in state:
            raise InputError(path, f"the trunk has no tensor {key!r} (needed for {name!r})")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise InputError(path, f"tensor {key!r} has shape {tuple(state[key].shape)} in the trunk, "
                                   f"{tuple(tensor.shape)} in the model")
    unused = sorted(k for k in state if part_of(k) in parts and k not in {canonical_key(n) for n in targets})
    if unused:
        raise InputError(path, f"the model has no place for trunk tensors {unused[:3]}")
    with torch.no_grad():
        live = dict(model.state_dict(keep_vars=True))
        for name in targets:
            live[name].copy_(state[canonical_key(name)].to(live[name].dtype))
    return {k: v for k, v in trunk.items() if k != "state"}


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def freeze(model: nn.Module, parts: Iterable[str]) -> int:
    """Stop training ``parts`` (requires_grad off); returns the number of frozen tensors."""
    parts = set(parts)
    count = 0
    for name, parameter in model.named_parameters():
        if part_of(name) in parts:
            parameter.requires_grad_(False)
            count += 1
    return count


def trunk_model(path: str | Path):
    """The whole pretraining model (a plain Mask R-CNN, probe mask heads included) rebuilt from
    the trunk file, in eval mode: for measuring the trunk's own AP."""
    from asn.model import build_model_from_params

    trunk = read_trunk(path)
    if "model" not in trunk:
        raise InputError(path, "trunk file lacks 'model' (the pretraining model's parameters)")
    model = build_model_from_params(trunk["model"])
    live = _tensor_state(model)
    missing = sorted(set(live) - set(trunk["state"]))
    if missing:
        raise InputError(path, f"the trunk has no tensors {missing[:3]} of its own model")
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if name in trunk["state"]:
                tensor.copy_(trunk["state"][name].to(tensor.dtype))
    return model.eval(), {k: v for k, v in trunk.items() if k != "state"}
