"""`asn convert`: one KINS file (2019 or 2020 release) -> normalized amodal/inmodal COCO files."""

from __future__ import annotations

import argparse
import sys

from asn.data.categories import EXPERIMENT_CATEGORY_IDS, KINS_CATEGORIES
from asn.errors import InputError

HELP = """Validate a KINS annotation file (release auto-detected) and write
OUT/<split>_amodal.json, OUT/<split>_inmodal.json (loadable by pycocotools, identical ids) and
OUT/<split>_report.json (counts of what was read, kept, repaired and dropped, per reason).
Lenient by default: bad records are dropped or repaired and counted; --strict refuses the
file at the first bad record. Exit code 2 on bad input, and no output file is written."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kins", required=True, metavar="PATH",
                        help="KINS file (update_{train,test}_2020.json or "
                             "instances_{train,val}.json), or a folder holding one for --split")
    images = parser.add_mutually_exclusive_group(required=True)
    images.add_argument("--images", metavar="DIR",
                        help="folder with the split's images (e.g. training/image_2); each "
                             "file_name must exist there with the annotated size")
    images.add_argument("--no-image-check", action="store_true",
                        help="skip the image check (annotation-only data, benchmarks)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--split", required=True, metavar="NAME",
                        help="split name used in the output file names, e.g. train or test")
    parser.add_argument("--params", metavar="FILE",
                        help="read the defaults of the options below from this params.yaml's "
                             "`convert:` section (explicit options still win)")
    parser.add_argument("--strict", action="store_true", default=None,
                        help="refuse the file at the first bad record instead of dropping it")
    parser.add_argument("--categories", type=int, nargs="+", metavar="ID",
                        choices=sorted(KINS_CATEGORIES),
                        help="KINS category ids to keep (default: the paper's 7 classes, "
                             "person-sitting/rider excluded)")
    parser.add_argument("--inmodal-source", choices=("order", "polygons"),
                        help="2020 release: inmodal masks from the occlusion order (paper 3.2, "
                             "default) or from the i_segm polygons")
    parser.add_argument("--workers", type=int, help="processes (default 2)")


DEFAULTS = {"strict": False, "categories": list(EXPERIMENT_CATEGORY_IDS),
            "inmodal_source": "order", "workers": 2}


def _options(args: argparse.Namespace) -> dict:
    """Explicit options, else params.yaml `convert:`, else the built-in defaults."""
    options = dict(DEFAULTS)
    if args.params:
        from asn.config import load_params, section, thaw

        conf = thaw(section(load_params(args.params), "convert", args.params))
        unknown = sorted(set(conf) - set(DEFAULTS))
        if unknown:
            raise InputError(args.params, f"convert: unknown keys {unknown}; known: "
                             f"{sorted(DEFAULTS)}")
        options.update(conf)
    for key in DEFAULTS:
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    bad = sorted(set(options["categories"]) - set(KINS_CATEGORIES))
    if bad:
        raise InputError(args.params, f"convert.categories: {bad} are not KINS category ids")
    return options


def run(args: argparse.Namespace) -> int:
    from asn.data.convert import convert, find_kins_file

    opts = _options(args)
    report = convert(
        find_kins_file(args.kins, args.split), args.out, args.split,
        images_dir=None if args.no_image_check else args.images,
        strict=bool(opts["strict"]), category_ids=opts["categories"],
        inmodal_source=opts["inmodal_source"], workers=int(opts["workers"]),
    )
    dropped = sum(report["dropped"].values())
    repaired = sum(report["repaired"].values())
    print(
        f"{args.split}: release {report['release']}, kept {report['kept']['images']} images / "
        f"{report['kept']['annotations']} instances of {report['read']['annotations']}; "
        f"dropped {dropped}, repaired {repaired} (see {args.out}/{args.split}_report.json); "
        f"{report['seconds']['total']:.1f} s",
        file=sys.stderr,
    )
    return 0
