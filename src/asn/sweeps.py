"""Named sweeps (paper Tables 4-7, or a custom list of variants) -> (arm, seed) jobs -> one table.

A sweep is a list of *arms*; an arm is one row of a table: a model variant plus its own dotted
overrides. params.yaml ``sweeps:`` defines the named ones (table4 .. table7); ``custom`` takes a
list of variants, one arm per variant. Every (arm, seed) job is trained and evaluated by the same
``asn train`` / ``asn evaluate`` commands as the DVC stages; this module holds everything about
a sweep that needs no orchestrator, so the Prefect flow (pipelines/ablation.py) stays thin and
the rules are testable without a server:

- :func:`plan` validates a request (table, variants, seeds, overrides, profile) up front, with
  one clear :class:`~asn.errors.InputError` naming the bad part, and returns the jobs with
  their cache keys.
- The cache key of a job covers everything that changes its numbers or its files: the params
  hash of the resolved run (the same hash ``asn train`` writes into the checkpoint), the eval
  options, the data hashes of the train and test splits, the source of the code the two
  commands run (like the ``deps`` of the DVC stages) with the torch versions, the arm, the seed,
  the table (the MLflow experiment) and the output folders.
- :func:`table4_reuse`: a job that is the same model as a Table 4 model of the DVC pipeline (the
  same params hash, trunk included, and the same train data hash, read from the checkpoint; the
  checkpoint is the one dvc.lock records, and DVC would not rebuild it) reuses that checkpoint
  instead of training, and its metrics.json too when they score the job's eval options on the
  same test data; the table marks those rows.
- :func:`write_table` aggregates the per-seed metrics with :mod:`asn.eval.seeds` (mean and
  sample variance over seeds) into ``<reports>/<table>.md/.csv/.json/.png``, with the wall time
  of the flow run.

Override precedence, lowest first: params.yaml, the ``profile`` argument, the flow's
``overrides``, the sweep's ``set`` (common to its arms), the arm's ``set``.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import yaml

from asn.config import load_params, section, thaw
from asn.errors import InputError

TABLES = ("table4", "table5", "table6", "table7", "inference_order", "custom")
SOURCE = "asn-ablation"  # the "file" part of errors about the flow's own parameters
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # arm names become folder and run names
# What `asn train` + `asn evaluate` run (the deps of the DVC train / evaluate stages), relative
# to the asn package folder: an edit there invalidates the cached results of every sweep.
CODE_PATHS = ("engine", "model", "eval", "data/dataset.py", "commands/train.py", "commands/evaluate.py",
              "tracking.py", "config.py", "io.py", "cli.py")
KEY_VERSION = "asn-sweep-job-v1"


@dataclass(frozen=True)
class Arm:
    """One table row: a variant and the dotted overrides (``key=value`` strings) that define it."""

    name: str
    variant: str
    overrides: tuple[str, ...] = ()
    label: str = ""


@dataclass(frozen=True)
class Sweep:
    table: str
    title: str
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    comparisons: tuple[tuple[str, str], ...] = ()
    extra_metrics: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job:
    """One (arm, seed): what to run, where to write, and the identity that keys its cache."""

    arm: Arm
    seed: int
    overrides: tuple[str, ...]       # every --set for train and evaluate, in precedence order
    model_dir: Path
    eval_dir: Path
    identity: Mapping[str, Any] = field(default_factory=dict)
    reuse: Optional["Reuse"] = None  # the Table 4 model this job is (not trained again), see table4_reuse
    reuse_note: str = ""            # why it is not reused (when a Table 4 model of its variant and seed exists)

    @property
    def cache_key(self) -> str:
        return hash_json(self.identity)

    @property
    def checkpoint(self) -> Path:
        """The checkpoint this job's evaluation scores: its own, or the reused Table 4 one."""
        return self.reuse.checkpoint if self.reuse is not None else self.model_dir / "checkpoint.pt"


@dataclass(frozen=True)
class Plan:
    sweep: Sweep
    jobs: tuple[Job, ...]
    params_path: Path
    gt_dir: Path
    images_dir: Path
    test_images_dir: Path
    out_dir: Path
    reports_dir: Path
    flow_overrides: tuple[str, ...]
    trunk: Optional[Path] = None   # the shared trunk (--trunk of asn train) when an arm starts from it


# ----------------------------------------------------------------------------------------------
# overrides
# ----------------------------------------------------------------------------------------------
def yaml_text(value: Any) -> str:
    """``value`` as YAML text that :func:`asn.config.apply_override` parses back to ``value``.

    YAML rather than JSON: PyYAML reads JSON's ``1e-05`` as a string, its own ``1.0e-05`` as a float.
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, sort_keys=False).strip()
    if text.endswith("\n..."):  # document end marker after a plain scalar
        text = text[: -len("\n...")].strip()
    return text


def override_strings(overrides: Mapping[str, Any] | Iterable[str] | None, source: str = SOURCE) -> list[str]:
    """Dotted overrides as ``key=value`` strings for ``--set``.

    A mapping's string values are taken as YAML text, like ``--set`` (so ``"[0, 1]"`` is a list
    and ``"0.01"`` a float); other values are written as YAML. Strings already of the form
    ``key=value`` pass through.
    """
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        out = []
        for key, value in overrides.items():
            if not isinstance(key, str) or not key.strip() or "=" in key:
                raise InputError(source, f"overrides: bad key {key!r}; expected a dotted name like 'train.lr'")
            out.append(f"{key.strip()}={value if isinstance(value, str) else yaml_text(value)}")
        return out
    if isinstance(overrides, str):
        raise InputError(source, "overrides: expected a mapping of dotted keys to values, got a string")
    out = []
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise InputError(source, f"overrides: {item!r} is not of the form key=value")
        out.append(item)
    return out


def _override_keys(overrides: Iterable[str]) -> list[str]:
    return [item.split("=", 1)[0].strip() for item in overrides]


# ----------------------------------------------------------------------------------------------
# sweep definitions
# ----------------------------------------------------------------------------------------------
def _arm_set(raw: Any, where: str, source: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) and k and "=" not in k for k in raw):
        raise InputError(source, f"{where}.set: expected a mapping of dotted keys to values")
    return dict(raw)


def _check_name(name: Any, where: str, source: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(source, f"{where}: bad arm name {name!r}; use letters, digits, '_', '.', '-'")
    return name


def _check_seeds(seeds: Any, where: str, source: str) -> tuple[int, ...]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise InputError(source, f"{where}: expected a list of seeds, got {seeds!r}")
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise InputError(source, f"{where}: expected a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise InputError(source, f"{where}: repeated seeds in {seeds!r}")
    return tuple(int(s) for s in seeds)


def sweep_from_params(params: Mapping[str, Any], table: str, *, variants: Optional[Sequence[str]] = None,
                      seeds: Optional[Sequence[int]] = None, source: str = "params.yaml") -> Sweep:
    """The sweep ``table`` of ``params`` (``sweeps.<table>``; ``custom``: one arm per variant)."""
    if table not in TABLES:
        raise InputError(SOURCE, f"table: unknown table {table!r}; choose one of {', '.join(TABLES)}")
    sweeps = thaw(section(params, "sweeps", source))
    if not isinstance(sweeps, dict):
        raise InputError(source, "sweeps: expected a mapping")
    default_seeds = sweeps.get("seeds", [0, 1, 2, 3, 4])
    from asn.model import VARIANTS

    if table == "custom":
        if not variants:
            raise InputError(SOURCE, "variants: table 'custom' needs a non-empty list of variants, "
                                     f"e.g. [mrcnn, mrcnn_asn]; valid: {', '.join(sorted(VARIANTS))}")
        if isinstance(variants, str):
            raise InputError(SOURCE, f"variants: expected a list of variants, got the string {variants!r}")
        if len(set(variants)) != len(variants):
            raise InputError(SOURCE, f"variants: repeated variants in {list(variants)!r}")
        spec = {"title": "Custom sweep", "arms": [{"name": v, "variant": v} for v in variants],
                "compare": [], "extra_metrics": []}
        where = "variants"
    else:
        if variants:
            raise InputError(SOURCE, f"variants: only for table 'custom'; {table}'s arms are defined in "
                                     f"{source} sweeps.{table}.arms")
        spec = sweeps.get(table)
        if not isinstance(spec, dict):
            raise InputError(source, f"sweeps.{table}: missing; the named sweeps there are "
                                     f"{sorted(k for k, v in sweeps.items() if isinstance(v, dict))}")
        where = f"sweeps.{table}"
    raw_arms = spec.get("arms")
    if not isinstance(raw_arms, list) or not raw_arms:
        raise InputError(source, f"{where}.arms: expected a non-empty list")
    common = _arm_set(spec.get("set"), where, source)
    arms = []
    for index, raw in enumerate(raw_arms):
        at = f"variants[{index}]" if table == "custom" else f"{where}.arms[{index}]"
        if not isinstance(raw, dict):
            raise InputError(source, f"{at}: expected a mapping with name, variant and optional set, label")
        unknown = sorted(set(raw) - {"name", "variant", "set", "label"})
        if unknown:
            raise InputError(source, f"{at}: unknown keys {unknown}; expected name, variant, set, label")
        name = _check_name(raw.get("name"), at, source if table != "custom" else SOURCE)
        variant = raw.get("variant")
        if variant not in VARIANTS:
            raise InputError(source if table != "custom" else SOURCE,
                             f"{at}: unknown variant {variant!r}; valid: {', '.join(sorted(VARIANTS))}")
        merged = {**common, **_arm_set(raw.get("set"), at, source)}  # one entry per key; the arm's wins
        arms.append(Arm(name=name, variant=variant, label=str(raw.get("label") or ""),
                        overrides=tuple(f"{key}={yaml_text(thaw(value))}" for key, value in merged.items())))
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise InputError(source, f"{where}: repeated arm names in {names}")
    comparisons = []
    for pair in spec.get("compare") or []:
        if not (isinstance(pair, list) and len(pair) == 2 and all(p in names for p in pair)):
            raise InputError(source, f"{where}.compare: {pair!r} is not a pair of arm names of {names}")
        comparisons.append((pair[0], pair[1]))
    extra = spec.get("extra_metrics") or []
    if not isinstance(extra, list) or not all(isinstance(m, str) for m in extra):
        raise InputError(source, f"{where}.extra_metrics: expected a list of metrics.json field names")
    seeds = _check_seeds(seeds if seeds is not None else default_seeds,
                         "seeds" if seeds is not None else "sweeps.seeds", SOURCE if seeds is not None else source)
    return Sweep(table=table, title=str(spec.get("title") or table), arms=tuple(arms), seeds=seeds,
                 comparisons=tuple(comparisons), extra_metrics=tuple(extra))


# ----------------------------------------------------------------------------------------------
# identities and cache keys
# ----------------------------------------------------------------------------------------------
def hash_json(payload: Any) -> str:
    import orjson

    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


@lru_cache(maxsize=None)
def code_hash() -> str:
    """sha256 of the code `asn train` / `asn evaluate` run (CODE_PATHS) and of the torch versions."""
    import asn
    import torch
    import torchvision

    root = Path(asn.__file__).resolve().parent
    digest = hashlib.sha256(f"{KEY_VERSION}\0torch {torch.__version__}\0torchvision {torchvision.__version__}\0".encode())
    for entry in CODE_PATHS:
        path = root / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            data = file.read_bytes()
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
            digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


@lru_cache(maxsize=64)
def _data_hash(gt_dir: str, split: str, images_dir: str, stamp: tuple) -> str:
    from asn.data.dataset import data_hash

    return data_hash(gt_dir, split, images_dir)


def split_hash(gt_dir: Path, split: str, images_dir: Path) -> str:
    """:func:`asn.data.dataset.data_hash`, memoised per process while the two JSON files are unchanged."""
    stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) if p.exists() else None
                  for p in (gt_dir / f"{split}_amodal.json", gt_dir / f"{split}_inmodal.json"))
    return _data_hash(str(gt_dir), split, str(images_dir), stamp)


def run_params_hash(run, trunk_sha256: Optional[str] = None) -> str:
    """The params hash `asn train` will write for ``run`` on this machine (AMP depends on the
    device; a run from the shared trunk also depends on the trunk's bytes)."""
    from asn.engine.config import params_hash
    from asn.engine.distributed import resolve_device

    device = resolve_device(str(run.train.device))
    amp = device.type == "cuda" if run.train.amp == "auto" else bool(run.train.amp)
    return params_hash(run.hash_payload(amp, trunk_sha256 if run.init == "trunk" else None))


@lru_cache(maxsize=8)
def _trunk_sha256(path: str, stamp: tuple) -> str:
    from asn.engine.trunk import file_sha256

    return file_sha256(path)


def trunk_hash(path: Path) -> str:
    """sha256 of the trunk file (memoised while it is unchanged); InputError when it is missing."""
    if not path.is_file():
        raise InputError(path, "trunk file not found (the smoke profile starts every model from it; "
                               "build it with `dvc repro pretrain`)")
    stat = path.stat()
    return _trunk_sha256(str(path), (stat.st_mtime_ns, stat.st_size))


# ----------------------------------------------------------------------------------------------
# reuse of the Table 4 models of the DVC pipeline
# ----------------------------------------------------------------------------------------------
# An arm can be the very model a Table 4 stage trains (Table 5's "amodal + inmodal" = mrcnn and
# MLC(1, 1) = mrcnn_asn, Table 6's 5 % and Table 7's 1111 = mrcnn_asn, Table 6's MR = mrcnn). Such
# a job takes the Table 4 checkpoint instead of training it again, when its identity is proven by
# hashes, never by a name:
#   1. models/<variant>-<seed>/checkpoint.pt holds the params hash and train data hash this job
#      would write (asn.engine.train stores both; the params hash covers the resolved model,
#      schedule, seed, AMP and the trunk's sha256) and is complete (iteration = its schedule);
#   2. dvc.lock's stage train@<variant>-<seed> records exactly this file (md5 of its outs) and every
#      dependency it lists (code, data, trunk) still has the recorded md5: DVC would not rebuild it.
# Its metrics.json is reused as well when, in the same way, reports/eval/<variant>-<seed>/metrics.json
# names that checkpoint's hashes, dvc.lock's evaluate@<variant>-<seed> records this file and this
# checkpoint, its dependencies (test data, evaluation code) are unchanged and its `eval` params are
# the job's eval options; otherwise the reused checkpoint is evaluated again (in the job's folder).
TABLE4 = "table4"


@dataclass(frozen=True)
class Table4Models:
    """Where the DVC pipeline keeps the Table 4 models (dvc.yaml stages train / evaluate)."""

    models_dir: Path = Path("models")        # <models_dir>/<variant>-<seed>/checkpoint.pt
    eval_dir: Path = Path("reports/eval")    # <eval_dir>/<variant>-<seed>/metrics.json
    lock: Path = Path("dvc.lock")            # what each stage was last made from
    root: Optional[Path] = None              # the folder dvc.lock's paths are relative to (default: its own)

    def __post_init__(self) -> None:
        if self.root is None:
            object.__setattr__(self, "root", Path(self.lock).parent)


@dataclass(frozen=True)
class Reuse:
    """A Table 4 model a job reuses: its checkpoint, and its metrics when they apply as they are."""

    name: str                           # "<variant>-<seed>" of Table 4
    checkpoint: Path
    checkpoint_md5: str
    metrics: Optional[Path] = None      # metrics.json reused as it is; None: the checkpoint is evaluated again
    metrics_md5: Optional[str] = None
    note: str = ""                      # why the metrics are not reused

    @property
    def label(self) -> str:
        return f"reused from Table 4 {self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {"source": TABLE4, "name": self.name, "checkpoint": str(self.checkpoint),
                "checkpoint_md5": self.checkpoint_md5, "metrics": None if self.metrics is None else str(self.metrics),
                "metrics_md5": self.metrics_md5, "note": self.note}


@lru_cache(maxsize=4096)
def _md5_of(path: str, stamp: tuple) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_md5(path: Path) -> str:
    """md5 of a file's bytes (DVC 3's ``hash: md5``), memoised while the file is unchanged."""
    stat = path.stat()
    return _md5_of(str(path), (stat.st_mtime_ns, stat.st_size))


def _dvcignore(root: Path) -> tuple[str, ...]:
    path = root / ".dvcignore"
    if not path.is_file():
        return ()
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def _ignored(name: str, is_dir: bool, patterns: Sequence[str]) -> bool:
    """A name matched by one of .dvcignore's patterns (the name-only patterns this project uses)."""
    import fnmatch

    for pattern in patterns:
        if pattern.endswith("/"):
            if is_dir and fnmatch.fnmatch(name, pattern[:-1]):
                return True
        elif "/" not in pattern and fnmatch.fnmatch(name, pattern):
            return True
    return False


def dvc_md5(path: Path, root: Path = Path(".")) -> str:
    """The md5 DVC 3 records for ``path`` in dvc.lock: the file's md5, or for a folder
    ``md5(json of [{"md5", "relpath"}] sorted by relpath) + ".dir"`` over its files outside .dvcignore."""
    import json
    import os

    if path.is_file():
        return file_md5(path)
    if not path.is_dir():
        raise FileNotFoundError(path)
    patterns = _dvcignore(root)
    entries = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not _ignored(d, True, patterns))
        for name in files:
            if not _ignored(name, False, patterns):
                file = Path(folder) / name
                entries.append({"md5": file_md5(file), "relpath": file.relative_to(path).as_posix()})
    entries.sort(key=lambda entry: entry["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


@lru_cache(maxsize=4)
def _lock_stages(path: str, stamp: tuple) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    stages = data.get("stages") if isinstance(data, dict) else None
    return stages if isinstance(stages, dict) else {}


def lock_stages(path: Path) -> dict[str, Any]:
    """``stages:`` of a dvc.lock ({} when the file is missing or has none)."""
    if not path.is_file():
        return {}
    stat = path.stat()
    try:
        return _lock_stages(str(path), (stat.st_mtime_ns, stat.st_size))
    except yaml.YAMLError as error:
        raise InputError(path, f"not valid YAML: {error}") from None


def _relative(path: Path, root: Path) -> str:
    import os

    return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()


def stale_dependency(entry: Mapping[str, Any], root: Path) -> Optional[str]:
    """None when every dependency of a dvc.lock stage entry still has its recorded md5; else
    which one changed (or is missing)."""
    for dep in entry.get("deps") or []:
        path = root / str(dep.get("path"))
        try:
            current = dvc_md5(path, root)
        except FileNotFoundError:
            return f"{dep.get('path')} is missing"
        if current != dep.get("md5"):
            return f"{dep.get('path')} changed since dvc.lock"
    return None


def _recorded_out(entry: Mapping[str, Any], relpath: str) -> Optional[str]:
    for out in [*(entry.get("outs") or []), *(entry.get("metrics") or [])]:
        if isinstance(out, Mapping) and out.get("path") == relpath:
            return out.get("md5")
    return None


def checkpoint_header(path: Path) -> dict[str, Any]:
    """The identity fields of a checkpoint (params / data hash, iteration, scheduled iterations)
    without reading its tensors (memory-mapped)."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # corrupt, foreign, half-copied
        raise InputError(path, f"cannot read checkpoint: {str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}") from None
    if not isinstance(checkpoint, dict):
        raise InputError(path, "not an asn checkpoint")
    run = checkpoint.get("run") or {}
    return {"params_hash": checkpoint.get("params_hash"), "data_hash": checkpoint.get("data_hash"),
            "iteration": checkpoint.get("iteration"), "iterations": (run.get("train") or {}).get("iterations")}


def table4_reuse(job: Job, eval_options: Mapping[str, Any], models: Table4Models) -> tuple[Optional[Reuse], str]:
    """``(Reuse, "")`` when ``job`` is the Table 4 model ``<variant>-<seed>`` (see the rules above),
    else ``(None, why not)``. ``eval_options``: the job's resolved ``eval:`` section. Needs the
    job's params hash and train data hash (a plan made with ``hash_data=True``)."""
    identity = job.identity
    if not identity.get("params_hash") or not identity.get("train_data_hash"):
        return None, "no params / data hash (planned without hashing the data)"
    name = f"{job.arm.variant}-{job.seed}"
    checkpoint = models.models_dir / name / "checkpoint.pt"
    if not checkpoint.is_file():
        return None, f"no Table 4 model {name}"
    try:
        header = checkpoint_header(checkpoint)
    except InputError as error:
        return None, f"Table 4 {name}: {error.reason}"
    if header["params_hash"] != identity["params_hash"]:
        return None, (f"Table 4 {name} has params hash {str(header['params_hash'])[:12]}, this arm "
                      f"{identity['params_hash'][:12]}: another model (or a stale one)")
    if header["data_hash"] != identity["train_data_hash"]:
        return None, f"Table 4 {name} was trained on other data (data hash {str(header['data_hash'])[:12]})"
    if header["iteration"] is None or header["iteration"] != header["iterations"]:
        return None, f"Table 4 {name} is not complete (iteration {header['iteration']} of {header['iterations']})"
    stages = lock_stages(models.lock)
    train_entry = stages.get(f"train@{name}")
    if not isinstance(train_entry, Mapping):
        return None, f"{models.lock} has no stage train@{name}: cannot tell what made {checkpoint}"
    checkpoint_md5 = file_md5(checkpoint)
    if _recorded_out(train_entry, _relative(checkpoint, models.root)) != checkpoint_md5:
        return None, f"{checkpoint} is not the file dvc.lock's train@{name} records (replaced by hand?)"
    stale = stale_dependency(train_entry, models.root)
    if stale:
        return None, f"Table 4 {name} is out of date ({stale}; `dvc repro` retrains it)"
    why = _metrics_not_reusable(name, checkpoint, checkpoint_md5, header, eval_options, models, stages)
    if why:
        return Reuse(name=name, checkpoint=checkpoint, checkpoint_md5=checkpoint_md5, note=why), ""
    metrics = models.eval_dir / name / "metrics.json"
    return Reuse(name=name, checkpoint=checkpoint, checkpoint_md5=checkpoint_md5, metrics=metrics,
                 metrics_md5=file_md5(metrics)), ""


def _metrics_not_reusable(name: str, checkpoint: Path, checkpoint_md5: str, header: Mapping[str, Any],
                          eval_options: Mapping[str, Any], models: Table4Models,
                          stages: Mapping[str, Any]) -> str:
    """"" when Table 4's metrics.json of ``name`` scores this checkpoint with ``eval_options`` on
    the current test data; else why not (the checkpoint is then evaluated again)."""
    from asn.io import read_json

    metrics = models.eval_dir / name / "metrics.json"
    if not metrics.is_file():
        return f"no {metrics}"
    try:
        run = read_json(metrics).get("run") or {}
    except (InputError, AttributeError):
        return f"{metrics} is not readable"
    if run.get("params_hash") != header["params_hash"] or run.get("data_hash") != header["data_hash"]:
        return f"{metrics} scores another checkpoint (its params / data hash differ)"
    entry = stages.get(f"evaluate@{name}")
    if not isinstance(entry, Mapping):
        return f"{models.lock} has no stage evaluate@{name}"
    if _recorded_out(entry, _relative(metrics, models.root)) != file_md5(metrics):
        return f"{metrics} is not the file dvc.lock's evaluate@{name} records"
    deps = {dep.get("path"): dep.get("md5") for dep in entry.get("deps") or []}
    if deps.get(_relative(checkpoint, models.root)) != checkpoint_md5:
        return f"evaluate@{name} scored another version of {checkpoint}"
    recorded = [section.get("eval") for section in (entry.get("params") or {}).values() if isinstance(section, Mapping)]
    if not recorded or hash_json(thaw(recorded[0])) != hash_json(thaw(eval_options)):
        return "the arm's eval options differ from Table 4's"
    stale = stale_dependency(entry, models.root)
    if stale:
        return f"Table 4's evaluation of {name} is out of date ({stale})"
    return ""


# ----------------------------------------------------------------------------------------------
# the plan of a flow run
# ----------------------------------------------------------------------------------------------
def plan(*, table: str, variants: Optional[Sequence[str]] = None, seeds: Optional[Sequence[int]] = None,
         overrides: Mapping[str, Any] | Iterable[str] | None = None, profile: Optional[str] = None,
         params_path: str | Path = "params.yaml", gt_dir: str | Path = "data/normalized",
         images_dir: str | Path = "data/raw/training/image_2",
         test_images_dir: str | Path = "data/raw/testing/image_2", out_dir: str | Path | None = None,
         reports_dir: str | Path = "reports/tables", tracking: bool = True,
         hash_data: bool = True, trunk: str | Path = "models/trunk/trunk.pt",
         reuse_from: Optional[Table4Models] = None) -> Plan:
    """Validate a sweep request and list its jobs (arm-major, then seed) with their identities.

    Every arm's parameters are loaded and resolved here, so an unknown table, variant, override
    key or profile fails before anything trains. ``hash_data=False`` skips the data hashes (the
    sweep definition alone, e.g. for listing). ``reuse_from``: the Table 4 models of the DVC
    pipeline; a job that is one of them (:func:`table4_reuse`) reuses it instead of training, and
    its identity (cache key) names the reused files.
    """
    from asn.engine.config import resolve

    params_path = Path(params_path)
    flow_overrides = override_strings(overrides)
    if profile is not None:
        if not isinstance(profile, str) or not profile:
            raise InputError(SOURCE, f"profile: expected a profile name, got {profile!r}")
        flow_overrides = [f"profile={profile}", *flow_overrides]
    params = load_params(params_path, flow_overrides)
    if profile is not None and profile not in (params.get("profiles") or {}):
        raise InputError(params_path, f"profile: unknown profile {profile!r}; known: {sorted(params.get('profiles') or {})}")
    sweep = sweep_from_params(params, table, variants=variants, seeds=seeds, source=str(params_path))
    out_dir = Path(out_dir) if out_dir else Path("runs") / table
    gt_dir, images_dir, test_images_dir = Path(gt_dir), Path(images_dir), Path(test_images_dir)
    hashes: dict[str, str] = {}
    if hash_data:
        hashes = {"train_data_hash": split_hash(gt_dir, "train", images_dir),
                  "test_data_hash": split_hash(gt_dir, "test", test_images_dir)}
    jobs = []
    trunk_path, uses_trunk = Path(trunk), False
    for arm in sweep.arms:
        all_overrides = (*flow_overrides, *arm.overrides)
        arm_params = load_params(params_path, all_overrides)
        eval_options = thaw(section(arm_params, "eval", str(params_path)))
        for seed in sweep.seeds:
            seeded = resolve(arm_params, str(params_path), variant=arm.variant, seed=seed)
            uses_trunk = uses_trunk or seeded.init == "trunk"
            trunk_sha = trunk_hash(trunk_path) if hash_data and seeded.init == "trunk" else None
            model_dir, eval_dir = out_dir / f"{arm.name}-{seed}", out_dir / "eval" / f"{arm.name}-{seed}"
            identity = {
                "version": KEY_VERSION, "table": table, "arm": arm.name, "variant": arm.variant, "seed": seed,
                "params_hash": run_params_hash(seeded, trunk_sha) if hash_data else None,
                "eval_hash": hash_json(eval_options), "code_hash": code_hash() if hash_data else None,
                "model_dir": str(model_dir.resolve()), "eval_dir": str(eval_dir.resolve()),
                "tracking": bool(tracking), **hashes,
            }
            job = Job(arm=arm, seed=seed, overrides=all_overrides, model_dir=model_dir, eval_dir=eval_dir,
                      identity=identity)
            if reuse_from is not None and hash_data:
                reuse, note = table4_reuse(job, eval_options, reuse_from)
                identity["reuse"] = None if reuse is None else {
                    k: v for k, v in reuse.as_dict().items() if k not in ("checkpoint", "metrics", "note")}
                job = Job(arm=arm, seed=seed, overrides=all_overrides, model_dir=model_dir, eval_dir=eval_dir,
                          identity=identity, reuse=reuse, reuse_note=note)
            jobs.append(job)
    return Plan(sweep=sweep, jobs=tuple(jobs), params_path=params_path, gt_dir=gt_dir, images_dir=images_dir,
                test_images_dir=test_images_dir, out_dir=out_dir, reports_dir=Path(reports_dir),
                flow_overrides=tuple(flow_overrides), trunk=trunk_path if uses_trunk else None)


def shadowed_overrides(plan_: Plan) -> dict[str, list[str]]:
    """``{arm: [flow override keys its own set replaces]}`` (worth a warning: the arm wins)."""
    flow_keys = set(_override_keys(plan_.flow_overrides)) - {"profile"}
    return {arm.name: sorted(flow_keys & set(_override_keys(arm.overrides)))
            for arm in plan_.sweep.arms if flow_keys & set(_override_keys(arm.overrides))}


def train_argv(plan_: Plan, job: Job, *, resume: bool = False, tracking: bool = True) -> Optional[list[str]]:
    """`asn train` arguments of ``job``: the DVC train stage's command line, plus the overrides
    (None for a job that reuses a Table 4 model)."""
    if job.reuse is not None:
        return None
    argv = ["train", "--params", str(plan_.params_path), "--gt", str(plan_.gt_dir), "--split", "train",
            "--images", str(plan_.images_dir), "--variant", job.arm.variant, "--seed", str(job.seed),
            "--out", str(job.model_dir), "--experiment", plan_.sweep.table, "--no-progress"]
    argv += ["--trunk", str(plan_.trunk)] if plan_.trunk is not None else []
    argv += ["--resume"] if resume else []
    argv += [] if tracking else ["--no-tracking"]
    for item in job.overrides:
        argv += ["--set", item]
    return argv


def evaluate_argv(plan_: Plan, job: Job, *, tracking: bool = True) -> Optional[list[str]]:
    """`asn evaluate` arguments of ``job``: the DVC evaluate stage's command line, plus the overrides
    (on the reused Table 4 checkpoint for a reused model; None when its metrics are reused too)."""
    if job.reuse is not None and job.reuse.metrics is not None:
        return None
    argv = ["evaluate", "--params", str(plan_.params_path), "--gt", str(plan_.gt_dir), "--split", "test",
            "--images", str(plan_.test_images_dir), "--checkpoint", str(job.checkpoint),
            "--out", str(job.eval_dir), "--experiment", plan_.sweep.table, "--no-progress"]
    argv += [] if tracking else ["--no-tracking"]
    for item in job.overrides:
        argv += ["--set", item]
    return argv


# ----------------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------------
def _label(table: str) -> str:
    return re.sub(r"^table(\d+)$", r"Table \1", table)


def _stats_cell(stats: Optional[Mapping[str, Any]]) -> str:
    if not stats:
        return "n/a"
    if stats["variance"] is None:
        return f"{stats['mean']:.1f} ± n/a"
    return f"{stats['mean']:.1f} ± {stats['variance']:.2f}"


# ----------------------------------------------------------------------------------------------
# the paper's row of an arm, by what the arm IS (variant + its resolved model knobs)
# ----------------------------------------------------------------------------------------------
# The full MLC of DESIGN.md section 5 (Table 7's "1111"): what the sweep table7 pins in its `set`.
FULL_MLC: Mapping[str, Any] = {"mlc_variant": "paper", "mlc_extraction_fusion": "concat", "mlc_order_adjust": True,
                               "mlc_extraction_convs": 2, "mlc_combination_convs": 3}
# Table 7's four parts (asn.paper.TABLE7_PARTS, code digits 1-4) -> our knob of that part (None: none here)
TABLE7_KNOBS: Mapping[str, Optional[str]] = {
    "extraction fusion": "mlc_extraction_fusion", "extraction convs": "mlc_extraction_convs",
    "combination fusion": None, "combination convs": "mlc_combination_convs"}
PAPER_TABLES = ("table4", "table5", "table6", "table7")


def arm_model(arm: Arm, params: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The model an arm trains: params.yaml's ``model:`` (with the profile's ``model:`` keys) under
    the arm's overrides (flow + sweep + arm ``set``), plus the variant's switches
    (:data:`asn.model.VARIANTS`: occlusion, mlc, amodal_mask, ...) and ``variant``."""
    from asn.config import apply_override
    from asn.model import VARIANTS

    if params is not None:
        resolved = thaw(params)
        for item in arm.overrides:
            apply_override(resolved, item, SOURCE)
    else:  # no params.yaml given: the arm's own model.* keys only
        resolved = {"model": {}}
        for item in arm.overrides:
            key, raw = item.split("=", 1)
            if key.strip().startswith("model."):
                resolved["model"][key.strip()[len("model."):]] = yaml.safe_load(raw)
    model = dict(resolved.get("model") or {})
    profile = (resolved.get("profiles") or {}).get(resolved.get("profile")) or {}
    model.update(profile.get("model") or {})
    model.update(VARIANTS[arm.variant])
    model["variant"] = arm.variant
    return model


def _values(row: Mapping[str, Any], metrics: Sequence[str]) -> dict[str, Any]:
    values = dict(zip(metrics, row["values"]))
    if "occlusion_accuracy" in values and values["occlusion_accuracy"] is not None:
        from asn import paper

        values["occlusion_accuracy"] = paper.occlusion_accuracy_percent(values["occlusion_accuracy"])
    return values


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return abs(float(a) - float(b)) < 1e-9
    return a == b


def paper_rows(table: str) -> list[dict[str, Any]]:
    """The paper's rows of ``table`` as ``{"key", "name", "values": {metric: value}}`` (AP in
    percent, Table 6's occlusion accuracy converted to a percentage like our metrics.json)."""
    from asn import paper

    if table == "table4":
        return [{"key": name, "name": name, "values": dict(zip(paper.AP_METRICS, values))}
                for name, values in paper.TABLE4.items()]
    if table == "table5":
        return [{"key": row["model"], "name": row["model"], "values": _values(row, paper.AP_METRICS)}
                for row in paper.TABLE5]
    if table == "table6":
        return [{"key": row["model"], "name": row["model"], "values": _values(row, paper.TABLE6_METRICS)}
                for row in paper.TABLE6]
    if table == "table7":
        return [{"key": paper.table7_label(row), "name": paper.table7_label(row),
                 "values": _values(row, paper.AP_METRICS)} for row in paper.TABLE7]
    return []


def paper_match(table: str, model: Mapping[str, Any]) -> tuple[Optional[str], str]:
    """``(key of the paper row, note)`` for an arm whose resolved model is ``model``
    (:func:`arm_model`), or ``(None, why there is none)``. Never by position: by the variant's
    switches and knobs. Table 5: mask heads, OC, and MLC(a, b) = (model.mlc_box_level,
    model.mlc_mask_level) as the paper's (a, b). Table 6: OC threshold (no OC: the paper's "MR").
    Table 7: which MLC part differs from :data:`FULL_MLC`, as the paper's code + modification."""
    from asn import paper

    variant = model.get("variant")
    if table == "table4":
        name = paper.TABLE4_VARIANTS.get(variant)
        return (name, "") if name else (None, f"`{variant}` is not a row of the paper's Table 4")
    if table not in PAPER_TABLES:
        return None, ""
    if model.get("panet") or model.get("invisible_mask"):
        return None, f"`{variant}` (PANet / ORCNN) is not in the paper's {_label(table)}"
    occlusion, mlc = bool(model.get("occlusion")), bool(model.get("mlc"))
    amodal, inmodal = bool(model.get("amodal_mask")), bool(model.get("inmodal_mask"))
    parts = {key: model.get(key) for key in FULL_MLC}
    changed = sorted(key for key in FULL_MLC if not _same(parts[key], FULL_MLC[key]))
    levels = (model.get("mlc_box_level"), model.get("mlc_mask_level"))
    if table == "table5":
        if mlc and not occlusion:
            return None, "MLC without OC is not in the paper's Table 5"
        if not occlusion:
            heads = {(False, True): "Mask R-CNN, inmodal mask only", (True, False): "Mask R-CNN, amodal mask only",
                     (True, True): "Mask R-CNN, amodal + inmodal"}
            name = heads.get((amodal, inmodal))
            return (name, "") if name else (None, "no mask head")
        if not mlc:
            return "Mask R-CNN + OC", ""
        if changed:
            return None, "MLC parts differ from the full MLC (" + ", ".join(f"{k}={parts[k]}" for k in changed) + ")"
        for row in paper.TABLE5:
            if row["mlc"] is not None and tuple(row["mlc"]) == tuple(levels):
                return row["model"], ""
        return None, f"MLC({levels[0]}, {levels[1]}) is not in the paper's Table 5"
    if table == "table6":
        if not (amodal and inmodal):
            return None, "the paper's Table 6 has amodal + inmodal heads"
        if not occlusion:
            return ("MR", "") if not mlc else (None, "MLC without OC is not in the paper's Table 6")
        threshold = model.get("occlusion_threshold")
        for row in paper.TABLE6:
            if row["threshold"] is not None and _same(row["threshold"], threshold):
                note = "the paper's row is MR + OC without MLC; this arm adds MLC" if mlc else ""
                return row["model"], note
        return None, f"occlusion threshold {threshold} is not in the paper's Table 6"
    # table7
    if not (mlc and occlusion):
        return None, "Table 7 varies the parts of MLC; this arm has no MLC"
    if tuple(levels) != (1, 1):
        return None, f"MLC({levels[0]}, {levels[1]}); the paper's Table 7 modifies the default MLC(1, 1)"
    if parts["mlc_variant"] != FULL_MLC["mlc_variant"]:
        return None, f"mlc_variant {parts['mlc_variant']!r} (not the paper's MLC)"
    digits, modifications = ["1"] * 4, []
    if not _same(parts["mlc_extraction_fusion"], FULL_MLC["mlc_extraction_fusion"]):
        digits[0] = "0"
        modifications.append(str(parts["mlc_extraction_fusion"]).upper())
    if not _same(parts["mlc_order_adjust"], FULL_MLC["mlc_order_adjust"]):
        digits[1] = "0"
        modifications.append("Order Adjustment")
    if not _same(parts["mlc_extraction_convs"], FULL_MLC["mlc_extraction_convs"]):
        digits[1] = "0"
        modifications.append(f"{parts['mlc_extraction_convs']} CONV")
    if not _same(parts["mlc_combination_convs"], FULL_MLC["mlc_combination_convs"]):
        digits[3] = "0"
        modifications.append(f"{parts['mlc_combination_convs']} CONV")
    code = "".join(digits)
    if len(modifications) > 1:
        return None, (f"{code}: {' + '.join(modifications)} (two modifications at once; each paper row changes "
                      "one part one way)")
    modification = modifications[0] if modifications else None
    for row in paper.TABLE7:
        if row["code"] == code and row["modification"] == modification:
            return paper.table7_label(row), ""
    return None, f"{code} {modification}: the paper has no such row"


def _paper_only_note(table: str, key: str) -> str:
    """Why a paper row has no arm here (Table 7: the part it changes has no knob, or the paper's
    modification is our full MLC already)."""
    from asn import paper

    if table == "table4":
        return "not implemented here"
    if table == "table7":
        row = next(r for r in paper.TABLE7 if paper.table7_label(r) == key)
        part = paper.TABLE7_PARTS[row["code"].index("0")] if "0" in row["code"] else None
        knob = TABLE7_KNOBS.get(part) if part else None
        if part and knob is None:
            return f"no arm: this project has no knob for the {part}"
        if part == "extraction convs" and row["modification"] == "Order Adjustment":
            return "no arm in this sweep"
        if part and row["modification"] == "Order Adjustment":
            return f"no arm: this project has no order adjustment of the {part}"
        if knob and row["modification"].endswith(" CONV"):
            n = int(row["modification"].split()[0])
            if _same(FULL_MLC[knob], n):
                return (f"no arm: our full MLC already uses {n} {part}, so '{row['modification']}' is no "
                        "change here (the paper does not print its default number)")
    return "no arm in this sweep"


TABLE_PAPER_NOTES: Mapping[str, tuple[str, ...]] = {
    "table5": ("Arms are matched to the paper's rows by their variant (mask heads, OC, MLC) and their resolved "
               "model.mlc_box_level / model.mlc_mask_level as the paper's MLC(a, b): a = after the a-th box / "
               "occlusion conv, b = after the b-th mask conv, 0 = the RoI feature; the paper's default is "
               "MLC(1, 1).", "– in a paper cell: the paper prints none (that model has no such mask head)."),
    "table6": ("Arms are matched by model.occlusion_threshold (no OC branch: the paper's 'MR' row). The paper's "
               "rows are MR + OC, without MLC.",
               "Occlusion accuracy: the paper prints a fraction (e.g. 0.872); it is shown here as a percentage "
               "(87.2), the unit of our metrics.json."),
    "table7": ("Paper codes: four digits for MLC's parts in the paper's order (1 extraction fusion, 2 extraction "
               "convs, 3 combination fusion, 4 combination convs); 0 marks the one part changed from the default "
               "MLC, the modification says how; 1111 = the default. Arms are matched by which of "
               "model.mlc_extraction_fusion, mlc_order_adjust, mlc_extraction_convs, mlc_combination_convs "
               "differs from the full MLC (concat, deconv first, 2 extraction and 3 combination convs); the order "
               "adjustment belongs to the extraction part (digit 2).",),
}


def paper_columns(sweep: Sweep, params: Optional[Mapping[str, Any]] = None):
    """``({arm: (paper row name, values, note)}, [(paper-only name, values, note)], source, notes)``
    for :func:`asn.eval.seeds.build_table`, matched by :func:`paper_match`."""
    from asn import paper

    rows = {row["key"]: row for row in paper_rows(sweep.table)}
    if not rows:
        return {}, [], None, []
    matched: dict[str, tuple] = {}
    used = set()
    for arm in sweep.arms:
        key, note = paper_match(sweep.table, arm_model(arm, params))
        if key is not None and key in rows:
            matched[arm.name] = (rows[key]["name"], rows[key]["values"], note)
            used.add(key)
        else:
            matched[arm.name] = (None, None, note)
    only = [(row["name"], row["values"], _paper_only_note(sweep.table, key))
            for key, row in rows.items() if key not in used]
    source = paper.cite(_label(sweep.table)) + (", R50-FPN" if sweep.table == "table4" else "")
    return matched, only, source, list(TABLE_PAPER_NOTES.get(sweep.table, ()))


def build(sweep: Sweep, per_arm: Mapping[str, list[dict]], params: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """:func:`asn.eval.seeds.build_table` over arms, with the arm labels, the extra metrics and the
    paper's numbers of each arm's row (Tables 4-7, :func:`paper_columns`; ``params``: the loaded
    params.yaml the arms' overrides resolve against).

    ``per_arm``: ``{arm: [metrics.json of each seed, with "_seed"]}``.
    """
    from asn.eval.seeds import COMPARISONS, build_table, seed_stats

    matched, only, source, notes = paper_columns(sweep, params)
    paper = {name: entry for name, entry in matched.items() if entry[0] is not None}
    comparisons = sweep.comparisons or (COMPARISONS if sweep.table == "table4" else ())
    table = build_table(per_arm, paper=paper, comparisons=comparisons, paper_only=only,
                        paper_source=source or "")
    table["paper_notes"] = notes
    arms = {arm.name: arm for arm in sweep.arms}
    for row in table["rows"]:
        arm = arms.get(row["variant"])
        if arm is not None:
            row["name"] = arm.label or (row.get("paper_name") if sweep.table == "table4" else None) or arm.name
        entry = matched.get(row["variant"])
        if entry is not None and entry[0] is None and entry[2]:
            row["paper_note"] = entry[2]
        if "paper" in row:  # the extra metrics the paper prints (Table 6's occlusion accuracy)
            full = paper[row["variant"]][1]
            row["paper"].update({m: full[m] for m in sweep.extra_metrics if m in full})
        for metric in sweep.extra_metrics:
            values = [r.get(metric) for r in per_arm[row["variant"]]]
            numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            row[metric] = seed_stats(numbers) if numbers else None
            row[metric + "_per_seed"] = values
    for item, (_, values, _) in zip(table["paper_only"], only):
        item["paper"].update({m: values[m] for m in sweep.extra_metrics if m in values})
    for row in table["rows"]:
        runs = per_arm[row["variant"]]
        reused = [r.get("_reused_from") for r in runs]
        if any(reused):
            row["reused_from"] = reused
            row["reused_metrics"] = [bool(r.get("_reused_metrics")) for r in runs]
            row["reuse_notes"] = sorted({r.get("_reuse_note") for r in runs if r.get("_reuse_note")})
            if all(reused):
                row["name"] = f"{row['name']} [Table 4 model, reused]"
    table["arms"] = [{"name": a.name, "variant": a.variant, "label": a.label, "overrides": list(a.overrides)}
                     for a in sweep.arms]
    table["extra_metrics"] = list(sweep.extra_metrics)
    return table


def reuse_line(row: Mapping[str, Any]) -> str:
    """How a row's models came about: "trained here", or which Table 4 models it reuses."""
    reused = row.get("reused_from") or []
    if not any(reused):
        return "trained here"
    seeds = [s for s, name in zip(row["seed_list"], reused) if name]
    names = sorted({name for name in reused if name})
    stems = sorted({name.rsplit("-", 1)[0] for name in names})
    which = (f"`{stems[0]}-<seed>`" if len(stems) == 1 else ", ".join(f"`{n}`" for n in names))
    with_metrics = [m for m, name in zip(row.get("reused_metrics") or [], reused) if name]
    metrics = ("checkpoint and metrics" if all(with_metrics) else "checkpoint; evaluated again here"
               if not any(with_metrics) else "checkpoint; metrics of some seeds")
    text = f"reused from Table 4 {which} (seeds {', '.join(map(str, seeds))}; {metrics})"
    if len(seeds) < len(reused):
        text += "; the other seeds trained here"
    return text


def render_markdown(sweep: Sweep, table: Mapping[str, Any], *, header: Mapping[str, str], command: str,
                    source: str) -> str:
    from asn.eval import seeds

    title = f"{sweep.title}" + (" — synthetic world, not KINS" if source == "synthetic" else " — KINS")
    text = seeds.render_markdown(table, title=title, header=header, command=command)
    lines = [text.rstrip("\n"), ""]
    label = table.get("paper_label", "paper-reported on KINS")
    for metric in sweep.extra_metrics:
        with_paper = any(metric in (r.get("paper") or {}) for r in [*table["rows"], *table.get("paper_only", [])])
        lines += [f"## {metric} (mean ± sample variance over seeds)", "",
                  f"| Arm | Seeds with a value | {metric} | Per seed |" + (f" Paper row | {metric} ({label}) |"
                                                                            if with_paper else ""),
                  "|---|---|---|---|" + ("---|---|" if with_paper else "")]
        for row in table["rows"]:
            stats = row.get(metric)
            per_seed = ", ".join("n/a" if not isinstance(v, (int, float)) else f"{v:.2f}"
                                 for v in row.get(metric + "_per_seed", []))
            line = f"| `{row['variant']}` | {stats['n'] if stats else 0} | {_stats_cell(stats)} | {per_seed} |"
            if with_paper:
                value = (row.get("paper") or {}).get(metric)
                line += (f" {row.get('paper_name', '')} | {'–' if value is None else f'{value:.1f}'} |"
                         if "paper" in row else " no paper row | – |")
            lines.append(line)
        if with_paper:
            for item in table.get("paper_only", []):
                value = item["paper"].get(metric)
                lines.append(f"| paper only: {item['name']} | – | – | – | {item['name']} | "
                             f"{'–' if value is None else f'{value:.1f}'} |")
        lines.append("")
    if "occlusion_accuracy" in sweep.extra_metrics:
        from asn.model import VARIANTS

        without = [a["name"] for a in table["arms"] if not VARIANTS.get(a["variant"], {}).get("occlusion")]
        if without:
            lines += ["Arms without the occlusion classification branch (" + ", ".join(f"`{n}`" for n in without)
                      + "): their occlusion_score is 1 - |inmodal| / |amodal| of the predicted masks "
                      "(asn.model.roi_heads), so their occlusion accuracy measures the masks, not an OC branch.", ""]
    rows_by_arm = {row["variant"]: row for row in table["rows"]}
    lines += ["## Arms", "", "| Arm | Variant | Overrides (on top of params.yaml and the flow's) | Description | Models |",
              "|---|---|---|---|---|"]
    for arm in table["arms"]:
        sets = ", ".join(f"`{o}`" for o in arm["overrides"]) or "–"
        row = rows_by_arm.get(arm["name"], {})
        lines.append(f"| `{arm['name']}` | `{arm['variant']}` | {sets} | {arm['label'] or '–'} | {reuse_line(row)} |")
    reused_rows = [row for row in table["rows"] if any(row.get("reused_from") or [])]
    if reused_rows:
        lines += ["", "## Models reused from Table 4", "",
                  "An arm that is the same model as a Table 4 model of the DVC pipeline (the same params hash, "
                  "trunk included, and train data hash, read from the checkpoint, which dvc.lock records and DVC "
                  "would not rebuild) takes that checkpoint instead of training it again; its Table 4 metrics are "
                  "taken too when they score the arm's eval options on the same test data (asn.sweeps.table4_reuse). "
                  "Their MLflow runs are in experiment `table4`.", "",
                  "| Arm | Seed | Table 4 model | Metrics |", "|---|---|---|---|"]
        for row in reused_rows:
            for seed, name, metrics in zip(row["seed_list"], row["reused_from"], row["reused_metrics"]):
                if name:
                    lines.append(f"| `{row['variant']}` | {seed} | `{name}` | "
                                 + ("Table 4's metrics.json" if metrics else "evaluated again here") + " |")
        notes = sorted({note for row in reused_rows for note in row.get("reuse_notes") or []})
        lines += [""] + [f"- Evaluated again: {note}" for note in notes]
    return "\n".join(lines) + "\n"


def render_csv(sweep: Sweep, table: Mapping[str, Any]) -> str:
    """:func:`asn.eval.seeds.render_csv` plus mean / variance / n columns of the extra metrics (and
    the paper's value where it prints one)."""
    import csv
    import io

    from asn.eval import seeds

    rows = list(csv.reader(io.StringIO(seeds.render_csv(table))))
    n_ours = len(table["rows"])
    for metric in sweep.extra_metrics:
        rows[0] += [f"{metric}_mean", f"{metric}_variance", f"{metric}_n", f"{metric}_paper_kins"]
        for line, row in zip(rows[1:1 + n_ours], table["rows"]):
            stats = row.get(metric)
            value = (row.get("paper") or {}).get(metric)
            line += (["", "", "0"] if not stats else [
                f"{stats['mean']:.4f}", "" if stats["variance"] is None else f"{stats['variance']:.4f}",
                str(stats["n"])]) + ["" if value is None else f"{value:.1f}"]
        for line, item in zip(rows[1 + n_ours:], table.get("paper_only", [])):
            value = item["paper"].get(metric)
            line += ["", "", "0", "" if value is None else f"{value:.1f}"]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def timing_summary(results: Sequence[Mapping[str, Any]], *, wall_s: Optional[float] = None,
                   cached: Sequence[str] = ()) -> dict[str, Any]:
    """How a flow run's jobs came about and what they cost: jobs trained here, reused from Table 4
    (with or without their metrics), served from the Prefect cache; the flow run's wall time and
    the sum of the jobs' own train + evaluate seconds (when each ran, cached or not)."""
    reused = [r for r in results if r.get("reused_from")]
    seconds = [float(r["seconds"]) for r in results if isinstance(r.get("seconds"), (int, float))]
    return {"wall_s": None if wall_s is None else round(float(wall_s), 1), "jobs": len(results),
            "trained": sum(1 for r in results if not r.get("reused_from")), "reused": len(reused),
            "reused_with_metrics": sum(1 for r in reused if r.get("reused_metrics")),
            "cached": len(cached), "job_seconds_total": round(sum(seconds), 1) if seconds else None}


def format_seconds(seconds: Optional[float]) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def timing_line(timing: Mapping[str, Any]) -> str:
    return (f"{format_seconds(timing.get('wall_s'))} for this flow run ({timing['jobs']} jobs: {timing['trained']} "
            f"trained here, {timing['reused']} reused from Table 4 ({timing['reused_with_metrics']} with their "
            f"metrics); {timing['cached']} of the {timing['jobs']} served from the Prefect cache); the jobs' own train + evaluate "
            f"time when they ran: {format_seconds(timing.get('job_seconds_total'))}")


def write_table(plan_: Plan, results: Sequence[Mapping[str, Any]], *, flow_run: str = "",
                tracking: bool = True, timing: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Write ``<reports>/<table>.md/.csv/.json/.png`` from the jobs' results and log the table to
    MLflow (experiment ``<table>``: a parent run whose children are the (arm, seed) runs).

    ``results``: one per job, each with ``arm``, ``seed`` and ``metrics`` (its metrics.json), and
    for a reused Table 4 model ``reused_from`` / ``reused_metrics`` / ``reuse_note``.
    ``timing``: :func:`timing_summary` of the flow run (in the header and the JSON).
    Returns the paths written and the table.
    """
    from asn.eval.seeds import plot
    from asn.io import write_json_atomic, write_text_atomic
    from asn.tracking import git_commit

    sweep = plan_.sweep
    per_arm: dict[str, list[dict]] = {arm.name: [] for arm in sweep.arms}
    for result in results:
        metrics = dict(result["metrics"])
        metrics["_seed"] = int(result["seed"])
        metrics["_path"] = str(Path(result["eval_dir"]) / "metrics.json")
        if result.get("reused_from"):
            metrics["_reused_from"] = str(result["reused_from"])
            metrics["_reused_metrics"] = bool(result.get("reused_metrics"))
            if result.get("reuse_note") and not result.get("reused_metrics"):
                metrics["_reuse_note"] = str(result["reuse_note"])
        timing_file = Path(result["eval_dir"]) / "timing.json"  # untracked side file of `asn evaluate`
        if timing_file.is_file() and "model_ms_per_image" not in metrics:
            from asn.io import read_json

            metrics["model_ms_per_image"] = read_json(timing_file).get("model_ms_per_image")
        per_arm[result["arm"]].append(metrics)
    for name, runs in per_arm.items():
        got = sorted(r["_seed"] for r in runs)
        if got != sorted(sweep.seeds):
            raise InputError(plan_.out_dir, f"arm {name}: results for seeds {got}, expected {sorted(sweep.seeds)}")
        runs.sort(key=lambda r: sweep.seeds.index(r["_seed"]))
    profiles = sorted({str(r.get("run", {}).get("profile")) for runs in per_arm.values() for r in runs})
    if len(profiles) != 1:
        raise InputError(plan_.out_dir, f"the metrics mix profiles {profiles}")
    params = thaw(load_params(plan_.params_path, plan_.flow_overrides))
    source = str(params.get("data", {}).get("source", "synthetic"))
    table = build(sweep, per_arm, params)
    from asn.commands.aggregate import DATA_SOURCES

    commit = git_commit(paths=["src", "pipelines", "params.yaml", "pyproject.toml"])
    header = {"Data": DATA_SOURCES.get(source, source), "Profile": profiles[0],
              "Seeds": ", ".join(str(s) for s in sweep.seeds), "Git commit": commit,
              "MLflow experiment": f"`{sweep.table}` (`make ui`)",
              "Flow overrides": ", ".join(f"`{o}`" for o in plan_.flow_overrides) or "none",
              "Models / metrics": f"`{plan_.out_dir}/<arm>-<seed>/`, `{plan_.out_dir}/eval/<arm>-<seed>/`"}
    if flow_run:
        header["Prefect flow run"] = flow_run
    if timing:
        header["Wall time"] = timing_line(timing)
    command = (f"prefect deployment run 'asn-ablation/{sweep.table}' (server: make prefect), or "
               f"python pipelines/ablation.py --table {sweep.table}")
    stem = plan_.reports_dir / sweep.table
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stem.with_suffix(".md"), render_markdown(sweep, table, header=header, command=command,
                                                               source=source))
    write_text_atomic(stem.with_suffix(".csv"), render_csv(sweep, table))
    write_json_atomic(stem.with_suffix(".json"), {
        "table": sweep.table, "title": sweep.title, "data_source": source, "profile": profiles[0],
        "git_commit": commit, "flow_overrides": list(plan_.flow_overrides),
        **({"timing": dict(timing)} if timing else {}), **table}, indent=True)
    plot(table, stem.with_suffix(".png"),
         title=f"{sweep.title} ({profiles[0]} profile, {len(sweep.seeds)} seeds)")
    if tracking:
        label_runs(sweep.table, per_arm)
        from asn.commands.aggregate import log_table

        log_table(sweep.table, table, stem)
    return {"md": str(stem.with_suffix(".md")), "csv": str(stem.with_suffix(".csv")),
            "json": str(stem.with_suffix(".json")), "png": str(stem.with_suffix(".png")), "table": table}


def label_runs(experiment: str, per_arm: Mapping[str, list[dict]]) -> None:
    """Name each (arm, seed) MLflow run after its arm: `asn train` names it after the variant,
    and the arms of an ablation share one variant."""
    from asn.tracking import Tracker

    tracker = Tracker()
    for arm, runs in per_arm.items():
        for metrics in runs:
            key = (metrics.get("mlflow") or {}).get("run_key")
            run_id = tracker.find_run(experiment, key) if key else None
            if run_id:
                tracker.set_tags(run_id, {"mlflow.runName": f"{arm}-seed{metrics['_seed']}", "asn.arm": arm,
                                          "asn.sweep": experiment})


# ----------------------------------------------------------------------------------------------
# the job process: `python -m asn.sweeps <asn command and arguments>`
# ----------------------------------------------------------------------------------------------
def exit_with_parent(interval_s: float = 2.0) -> None:
    """Terminate this process when its parent (ASN_PARENT_PID, else the current one) goes away.

    A job (`asn train` / `asn evaluate`) runs as a child of the flow-run process; when that one is
    killed (a cancelled flow run, a stopped worker) the job would otherwise go on training as an
    orphan. A daemon thread notices the re-parenting and sends this process SIGTERM (checkpoints
    are written atomically, so nothing half-written is left; loader workers follow their parent).
    The spawner names itself in ASN_PARENT_PID, so a parent that died before this process got
    here is noticed too.
    """
    import os
    import signal
    import threading
    import time

    parent = int(os.environ.get("ASN_PARENT_PID") or os.getppid())

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="asn-exit-with-parent", daemon=True).start()


if __name__ == "__main__":
    # asn.cli.main, the entry point of the DVC stages too, guarded by exit_with_parent
    import sys

    from asn.cli import main

    exit_with_parent()
    sys.exit(main(sys.argv[1:]))
