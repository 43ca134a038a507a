"""`asn pretrain`: the shared trunk of the smoke profile (DESIGN.md 8), trained once.

Renders the *pretraining world* (the synthetic world with its own seed and size: never the
Table 4 images), trains a plain Mask R-CNN on it with the same training loop as `asn train`, and
writes the trunk file every Table 4 model and sweep arm starts from (see asn.engine.trunk).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping

from asn.errors import InputError

HELP = """Train the shared pretrained trunk once (the smoke profile's stand-in for the paper's ImageNet
init). params.yaml `pretrain:` gives the pretraining world (its own synthetic seed, image count and
size, never the Table 4 images), the variant (a plain Mask R-CNN), the schedule and the parts
that transfer. WORK holds the rendered world (WORK/world) and the training run (WORK/run, with
checkpoints: --resume continues an interrupted pretraining bit-exactly). OUT gets trunk.pt (the
model's state dict in pretrain.dtype: the transferable parts, listed in the file, plus the
pretraining mask heads so that the trunk's own AP can be measured; those never transfer),
trunk.json (provenance: params / data hash, world, iterations, parts, file sha256) and
train_log.csv. The run is logged to MLflow experiment `pretrain`. About 2 hours on 2 CPU cores
for the default schedule; a fresh clone never needs it (trunk.pt is committed)."""

TRUNK_FILE = "trunk.pt"
TRUNK_JSON = "trunk.json"
WORLD_KEYS = {"train", "val", "seed", "width", "height"}
TRAIN_KEYS = {"iterations", "steps", "batch_size", "lr", "lr_reference_batch", "warmup_iterations"}
KEYS = {"world", "variant", "seed", "parts", "dtype", "train", "model"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameters file (default: %(default)s)")
    parser.add_argument("--work", type=Path, required=True, help="working folder: the rendered world and the training run")
    parser.add_argument("--out", type=Path, required=True, help="folder for trunk.pt, trunk.json, train_log.csv")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set pretrain.train.iterations=100 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue the training run in WORK/run")
    parser.add_argument("--no-progress", action="store_true", help="plain periodic log lines instead of progress bars")
    from asn.commands.train import add_tracking_arguments

    add_tracking_arguments(parser)
    parser.set_defaults(experiment="pretrain")


def pretrain_options(params: Mapping[str, Any], source: str) -> dict[str, Any]:
    """params.yaml ``pretrain:``, checked (unknown / missing keys name the file)."""
    from asn.config import section, thaw
    from asn.engine.trunk import DTYPES, check_parts

    options = thaw(section(params, "pretrain", source))
    for where, have, want in (("pretrain", options, KEYS), ("pretrain.world", options.get("world") or {}, WORLD_KEYS),
                              ("pretrain.train", options.get("train") or {}, TRAIN_KEYS)):
        unknown, missing = sorted(set(have) - want), sorted(want - set(have))
        if unknown or missing:
            raise InputError(source, f"{where}: unknown keys {unknown}, missing keys {missing}")
    world = options["world"]
    for key in ("train", "val"):
        if not isinstance(world[key], int) or world[key] < 1:
            raise InputError(source, f"pretrain.world.{key}: expected a positive image count, got {world[key]!r}")
    synth = params.get("synth") or {}
    if world["seed"] == synth.get("seed"):
        raise InputError(source, f"pretrain.world.seed: {world['seed']} is also synth.seed; the pretraining world "
                                 f"must not render the Table 4 images")
    options["parts"] = list(check_parts(options["parts"], "pretrain.parts", source))
    if not options["parts"]:
        raise InputError(source, "pretrain.parts: name at least one part that transfers")
    if options["dtype"] not in DTYPES:
        raise InputError(source, f"pretrain.dtype: expected one of {sorted(DTYPES)}, got {options['dtype']!r}")
    return options


# the model keys a plain Mask R-CNN of the smoke profile depends on (the rest of model: is about
# the other variants' heads, so editing it never makes the trunk stale)
MODEL_KEYS = ("variant", "num_classes", "backbone", "weights_path", "min_size", "max_size", "head_norm",
              "backbone_norm", "overrides")


def pretrain_run(params: Mapping[str, Any], options: Mapping[str, Any], source: str):
    """The RunConfig of the pretraining: the smoke profile's plain Mask R-CNN (the keys of
    :data:`MODEL_KEYS`, ``pretrain.model`` on top) and training loop, ``pretrain.train``'s
    schedule, from scratch (it *is* the trunk)."""
    import dataclasses

    from asn.config import thaw
    from asn.engine.config import resolve

    smoke = {**thaw(params), "profile": "smoke"}  # the trunk is the smoke profile's, whatever profile is active
    run = resolve(smoke, source, variant=options["variant"], seed=int(options["seed"]))
    model = {k: run.model[k] for k in MODEL_KEYS if k in run.model}
    model.update(options.get("model") or {})
    model["init"] = "scratch"
    train = dict(options["train"])
    train["steps"] = tuple(int(s) for s in train["steps"])
    return dataclasses.replace(run, model=model, train=dataclasses.replace(run.train, **train))


def render_world(world: Mapping[str, Any], root: Path, *, params: Mapping[str, Any], source: str,
                 progress: bool) -> Path:
    """The pretraining world in KINS layout + its normalized ground truth; reused when complete."""
    from asn.config import section, thaw
    from asn.data.convert import convert
    from asn.data.synthetic import synthesize
    from asn.io import read_json, write_json_atomic

    stamp = root / "world.json"
    wanted = {k: world[k] for k in sorted(WORLD_KEYS)}
    if stamp.is_file() and read_json(stamp) == wanted:
        return root
    convert_options = thaw(section(params, "convert", source))
    print(f"pretrain: rendering the pretraining world ({world['train']} + {world['val']} images, seed "
          f"{world['seed']}) into {root}", file=sys.stderr)
    synthesize(root / "raw", n_train=int(world["train"]), n_test=int(world["val"]), seed=int(world["seed"]),
               width=int(world["width"]), height=int(world["height"]), workers=2, progress=progress)
    for split, folder, name in (("train", "training", "update_train_2020.json"), ("test", "testing", "update_test_2020.json")):
        convert(root / "raw" / name, root / "normalized", split, images_dir=root / "raw" / folder / "image_2",
                strict=True, category_ids=convert_options["categories"],
                inmodal_source=convert_options["inmodal_source"], workers=int(convert_options["workers"]))
    write_json_atomic(stamp, wanted, indent=True)
    return root


def run(args: argparse.Namespace) -> int:
    from asn.commands.train import log_training
    from asn.config import load_params
    from asn.engine.train import train
    from asn.engine.trunk import export_trunk, file_sha256
    from asn.io import write_json_atomic

    source = str(args.params)
    params = load_params(args.params, args.overrides)
    options = pretrain_options(params, source)
    run_config = pretrain_run(params, options, source)
    world = render_world(options["world"], args.work / "world", params=params, source=source,
                         progress=not args.no_progress)
    run_dir = args.work / "run"
    summary = train(run_config, gt_dir=world / "normalized", images_dir=world / "raw" / "training" / "image_2",
                    out_dir=run_dir, split="train", resume=args.resume, progress=not args.no_progress,
                    experiment=args.experiment)
    if not summary.get("complete"):
        raise InputError(run_dir, "pretraining stopped before its last iteration; rerun with --resume")
    if not args.no_tracking:
        log_training(args.experiment, run_config, summary, run_dir)

    provenance = {"params_hash": summary["params_hash"], "data_hash": summary["data_hash"],
                  "world": dict(options["world"]), "iterations": summary["iterations"],
                  "train": dict(options["train"]), "seed": int(options["seed"]), "mlflow": summary["mlflow"]}
    args.out.mkdir(parents=True, exist_ok=True)
    meta = export_trunk(run_dir / "checkpoint.pt", args.out / TRUNK_FILE, parts=options["parts"],
                        dtype=options["dtype"], provenance=provenance)
    shutil.copyfile(run_dir / "train_log.csv", args.out / "train_log.csv")
    losses = summary["final_losses_mean_last_20"]
    write_json_atomic(args.out / TRUNK_JSON, {
        "file": TRUNK_FILE, "sha256": file_sha256(args.out / TRUNK_FILE), "dtype": options["dtype"],
        **{k: v for k, v in meta.items() if k not in ("model", "label_map")},
        "label_map": meta["label_map"], "final_loss_mean_last_20": losses.get("loss"),
        "final_losses_mean_last_20": losses,
    }, indent=True)
    print(f"pretrain: wrote {args.out / TRUNK_FILE} ({(args.out / TRUNK_FILE).stat().st_size / 1e6:.1f} MB, "
          f"{options['dtype']}; parts {', '.join(options['parts'])}) after {summary['iterations']} iterations",
          file=sys.stderr)
    return 0
