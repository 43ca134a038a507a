"""params.yaml -> the resolved model parameters and training configuration of one run.

The top-level ``profile`` key picks a block of ``profiles:`` (``smoke`` on a CPU, ``paper`` on 8
GPUs). A profile block holds only what differs between profiles (backbone, image sizes, batch,
schedule); the ``model:`` and ``train:`` sections hold the rest. A key may live in one place
only, so there is never a question which value wins. ``dvc exp run -S profile=paper`` switches.

The params hash covers everything that changes the numbers a run produces (model, schedule,
seed, AMP) and nothing that does not (worker count, logging, checkpoint period, device name),
so a checkpoint can be resumed on another machine but never under other parameters.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from asn.config import thaw
from asn.errors import InputError
from asn.io import dumps_json


@dataclass(frozen=True)
class TrainConfig:
    """Every training knob (units: iterations, images; lr at ``lr_reference_batch``)."""

    iterations: int
    batch_size: int                  # total over all ranks and accumulation steps
    lr: float                        # base lr for a total batch of lr_reference_batch
    lr_reference_batch: int
    steps: tuple[int, ...]           # iterations where the lr is multiplied by gamma
    gamma: float = 0.1
    warmup_iterations: int = 0
    warmup_factor: float = 0.001     # lr factor at iteration 0, rising linearly to 1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    flip_prob: float = 0.5
    accumulate: int = 1              # micro-batches per rank and step (gradients averaged)
    seed: int = 0
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    amp: str | bool = "auto"         # auto = on for CUDA only
    workers: int = 2                 # loader worker processes per rank
    log_every: int = 20
    checkpoint_every: int = 100
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def scaled_lr(self) -> float:
        """Linear scaling rule (Goyal et al.): lr grows with the total batch."""
        return self.lr * self.batch_size / self.lr_reference_batch

    def numeric(self) -> dict[str, Any]:
        """The fields that change a run's numbers (hashed); device/logging/workers excluded."""
        skip = {"device", "workers", "log_every", "checkpoint_every", "extra", "amp"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


_TRAIN_FIELDS = {f.name for f in fields(TrainConfig)} - {"extra"}
_REQUIRED = ("iterations", "batch_size", "lr", "lr_reference_batch", "steps")


@dataclass(frozen=True)
class RunConfig:
    """One run: profile name, model parameters (for build_model_from_params) and TrainConfig."""

    profile: str
    model: dict[str, Any]
    train: TrainConfig

    def as_dict(self) -> dict[str, Any]:
        """Plain containers (for config.json and the checkpoint's ``run``)."""
        return {"profile": self.profile, "model": self.model, "train": asdict(self.train)}

    @property
    def init(self) -> str:
        """How the model starts: ``scratch`` (random, or ImageNet via model.weights_path) or
        ``trunk`` (the shared pretrained trunk, :mod:`asn.engine.trunk`)."""
        return str(self.model.get("init", "scratch"))

    def hash_payload(self, amp: bool, trunk_sha256: str | None = None) -> dict[str, Any]:
        payload = {"profile": self.profile, "model": self.model, "train": self.train.numeric(), "amp": bool(amp)}
        if trunk_sha256 is not None:  # a run from the trunk is a function of the trunk's bytes too
            payload["trunk_sha256"] = trunk_sha256
        return payload


def params_hash(payload: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``payload`` (sorted keys), hex."""
    import orjson

    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    return hashlib.sha256(canonical).hexdigest()


def _merge_disjoint(base: dict, extra: dict, where: str, source: str) -> dict:
    clash = sorted(set(base) & set(extra))
    if clash:
        raise InputError(source, f"{where}: keys {clash} are set both in the section and in the "
                                 f"profile; keep each key in one place")
    return {**base, **extra}


def resolve(params: Mapping[str, Any], source: str = "params.yaml", *,
            variant: str | None = None, seed: int | None = None) -> RunConfig:
    """Resolve ``profile`` + ``profiles.<name>`` + ``model:`` + ``train:`` into a RunConfig.

    ``variant`` / ``seed`` replace ``model.variant`` / ``train.seed`` (matrix stages, sweeps).
    Unknown profile, unknown train key or a missing required key raise InputError naming the
    params file and the key.
    """
    params = thaw(params)
    for key in ("profile", "profiles", "model", "train"):
        if key not in params:
            raise InputError(source, f"missing top-level key {key!r}")
    profiles = params["profiles"] or {}
    name = params["profile"]
    if name not in profiles:
        raise InputError(source, f"unknown profile {name!r}; known: {sorted(profiles)}")
    block = profiles[name] or {}
    unknown_blocks = sorted(set(block) - {"model", "train"})
    if unknown_blocks:
        raise InputError(source, f"profiles.{name}: unknown keys {unknown_blocks}; expected model, train")
    model = _merge_disjoint(dict(params["model"] or {}), dict(block.get("model") or {}),
                            f"model / profiles.{name}.model", source)
    train = _merge_disjoint(dict(params["train"] or {}), dict(block.get("train") or {}),
                            f"train / profiles.{name}.train", source)
    if variant is not None:
        model["variant"] = variant
    if seed is not None:
        train["seed"] = int(seed)
    unknown = sorted(set(train) - _TRAIN_FIELDS)
    if unknown:
        raise InputError(source, f"train: unknown keys {unknown}; known: {sorted(_TRAIN_FIELDS)}")
    missing = [k for k in _REQUIRED if k not in train]
    if missing:
        raise InputError(source, f"train (profile {name}): missing keys {missing}")
    from asn.model import VARIANTS

    if model.get("variant") not in VARIANTS:
        raise InputError(source, f"model.variant: unknown variant {model.get('variant')!r}; "
                                 f"valid: {sorted(VARIANTS)}")
    _check_init(model, source)
    train["steps"] = tuple(int(s) for s in train["steps"])
    config = TrainConfig(**train)
    _check_train(config, source)
    return RunConfig(profile=name, model=model, train=config)


def _check_init(model: dict[str, Any], source: str) -> None:
    from asn.engine.trunk import INITS, check_parts

    init = model.get("init", "scratch")
    if init not in INITS:
        raise InputError(source, f"model.init: expected one of {list(INITS)}, got {init!r}")
    parts = check_parts(model.get("trunk_parts") or (), "model.trunk_parts", source)
    frozen = check_parts(model.get("freeze") or (), "model.freeze", source)
    if init != "trunk":  # trunk_parts / freeze are read with init: trunk only (one key switches protocols)
        return
    if not parts:
        raise InputError(source, "model.trunk_parts: model.init is 'trunk' but no part is loaded from it")
    if set(frozen) - set(parts):
        raise InputError(source, f"model.freeze: {sorted(set(frozen) - set(parts))} are not loaded from the "
                                 f"trunk (model.trunk_parts {list(parts)}); a random part cannot stay frozen")


def _check_train(c: TrainConfig, source: str) -> None:
    problems = []
    if c.iterations < 1:
        problems.append("iterations must be >= 1")
    if c.batch_size < 1 or c.lr_reference_batch < 1 or c.accumulate < 1:
        problems.append("batch_size, lr_reference_batch and accumulate must be >= 1")
    if c.lr <= 0:
        problems.append("lr must be > 0")
    if list(c.steps) != sorted(c.steps):
        problems.append("steps must be increasing")
    if not 0 <= c.flip_prob <= 1:
        problems.append("flip_prob must be in [0, 1]")
    if c.amp not in ("auto", True, False):
        problems.append(f"amp must be auto, true or false, got {c.amp!r}")
    if c.log_every < 1 or c.checkpoint_every < 1 or c.workers < 0:
        problems.append("log_every and checkpoint_every must be >= 1, workers >= 0")
    if problems:
        raise InputError(source, "train: " + "; ".join(problems))


def dumps_config(run: RunConfig) -> bytes:
    """JSON of a run's configuration (written next to its checkpoint)."""
    return dumps_json(run.as_dict(), indent=True)
