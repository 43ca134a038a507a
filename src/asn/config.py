"""params.yaml -> validated, read-only parameters, with dotted overrides ("train.lr=0.01").

`params.yaml` is the single source of truth for every knob; DVC tracks the keys each stage
reads (dvc.yaml ``params:``), and stages receive the file path on their command line.
Overrides use the same dotted names as ``dvc exp run -S``; values are parsed as YAML, so
``synth.train=20`` gives an int and ``data.source=kins`` a string.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import yaml

from asn.errors import InputError


def _freeze(obj: Any) -> Any:
    if isinstance(obj, dict):
        return MappingProxyType({k: _freeze(v) for k, v in obj.items()})
    if isinstance(obj, list):
        return tuple(_freeze(v) for v in obj)
    return obj


def thaw(obj: Any) -> Any:
    """A plain, mutable deep copy of frozen parameters (for JSON output or kwargs)."""
    if isinstance(obj, Mapping):
        return {k: thaw(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return [thaw(v) for v in obj]
    return copy.copy(obj)


def apply_override(params: dict, override: str, source: str = "override") -> None:
    """Apply one ``dotted.key=value`` override in place; the key must already exist."""
    if "=" not in override:
        raise InputError(source, f"override {override!r} is not of the form key=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    node = params
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "(not a section)"
            raise InputError(
                source, f"unknown parameter {'.'.join(parts[: i + 1])!r}; known here: {known}"
            )
        if i == len(parts) - 1:
            try:
                node[part] = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise InputError(source, f"override {override!r}: bad value: {exc}") from None
        else:
            node = node[part]


def load_params(
    path: str | Path = "params.yaml", overrides: Iterable[str] = ()
) -> Mapping[str, Any]:
    """Read ``path`` (YAML mapping), apply dotted ``overrides`` and return a read-only view."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "params file not found") from None
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(path, f"invalid YAML: {exc}") from None
    if not isinstance(params, dict):
        raise InputError(path, "expected a mapping of sections at the top level")
    for override in overrides:
        apply_override(params, override, source=str(path))
    return _freeze(params)


def section(params: Mapping[str, Any], name: str, path: str | Path = "params.yaml") -> Mapping:
    """One top-level section of the parameters, with a clear error when it is missing."""
    if name not in params:
        raise InputError(path, f"missing section {name!r}")
    return params[name]
