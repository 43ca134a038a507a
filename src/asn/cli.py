"""The `asn` command: one entry point for every stage (see DESIGN.md section 6).

Errors derived from :class:`asn.errors.AsnError` print one line naming the file, the record
and the reason, and exit with code 2. Stage scripts in ``stages/`` call :func:`main` too, so a
DVC stage, a Prefect task and a user at the shell run the same code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from asn import __version__
from asn.errors import AsnError

# command name -> (module under asn.commands, one-line help). Imported only when run.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "render the embedded synthetic KINS-format world"),
    "download": ("download", "fetch (or generate) the raw dataset named by params.yaml data.*"),
    "convert": ("convert", "KINS file (2019 or 2020 release) -> normalized amodal/inmodal COCO files"),
    "stats": ("stats", "dataset statistics: Tables 1-2, Figure 4, summary, visualisations"),
    "consistency": ("consistency", "mean mask IoU between annotation sets of the same images (Table 3)"),
    "pretrain": ("pretrain", "train the shared pretrained trunk once (the smoke profile's ImageNet stand-in)"),
    "train": ("train", "train one model (variant, seed) of the params.yaml profile; resumable, DDP via torchrun"),
    "evaluate": ("evaluate", "checkpoint -> predictions on a split -> Det / Amodal / Inmodal AP (COCO)"),
    "aggregate": ("aggregate", "per-seed metrics -> Table 4 (mean ± variance, paper beside), figure, MLflow parent run"),
    "report": ("report", "reports/README.md: every table and figure with data source, profile, seeds, commit, command"),
    "runs": ("runs", "list the MLflow runs of an experiment, or find the run behind a metrics.json"),
    "predict": ("predict", "checkpoint + your own images -> predictions JSON and overlay PNGs"),
    "view": ("view", "a static browser viewer of a split's images, ground truth and predictions (HTML + JS)"),
    "sceneflow": ("sceneflow", "Table 8: scene flow without / with our models' instance masks / with ground-truth masks"),
    "sceneflow-eval": ("sceneflow_eval", "KITTI 2015 scene flow errors D1 / D2 / Fl / SF, devkit rules (Table 8)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(
        prog="asn",
        description="Amodal instance segmentation on KINS: data, statistics, models, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"asn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if name == command:
            mod = importlib.import_module(f"asn.commands.{module}")
            p = sub.add_parser(name, help=help_text, description=mod.HELP)
            mod.add_arguments(p)
            p.set_defaults(_module=mod)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `asn` command; returns the exit code (0 ok, 2 bad input or usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in COMMANDS:
        command = None
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        return int(args._module.run(args) or 0)
    except AsnError as exc:
        print(f"asn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"asn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
