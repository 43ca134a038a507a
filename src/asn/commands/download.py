"""`asn download`: the raw dataset (synthetic or KINS + KITTI) in the layout `convert` reads.

Reads ``data.*`` (and ``synth.*`` for the synthetic source) from params.yaml and publishes
``--out`` atomically: a failure leaves a previous good folder untouched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Mapping

from asn.errors import InputError

HELP = (
    "Fetch or generate the raw dataset named by params.yaml data.source. 'synthetic' renders "
    "the embedded KINS-format world (synth.* parameters); 'kins' downloads the KINS annotation "
    "files and the KITTI object images (data.kins.*: a url with an optional sha256, or a local "
    "path to a file, an archive or an extracted folder). Downloads are cached in --cache, resumed "
    "after an interruption (HTTP Range), verified by sha256 and retried with backoff. The output "
    "folder gets training/image_2, testing/image_2, optionally training/label_2, the annotation "
    "files under their original names and manifest.json (every file's sha256 and size); it is "
    "replaced only when everything succeeded."
)

SYNTH_KEYS = {  # params.yaml synth.* key -> synthesize() keyword
    "train": "n_train",
    "test": "n_test",
    "seed": "seed",
    "width": "width",
    "height": "height",
    "annotators": "annotators",
    "annotator_images": "annotator_images",
    "workers": "workers",
}


WHERE_TO_GET = {
    "annotations.train": "KINS annotations: https://github.com/qqlu/Amodal-Instance-Segmentation-through-KINS-Dataset",
    "annotations.test": "KINS annotations: https://github.com/qqlu/Amodal-Instance-Segmentation-through-KINS-Dataset",
    "images": "KITTI data_object_image_2.zip: https://www.cvlibs.net/datasets/kitti/eval_object.php?obj_benchmark=2d",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameters file (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="output folder, e.g. data/raw (replaced atomically)")
    parser.add_argument("--cache", type=Path, default=Path("data/cache"), help="download cache folder (default: %(default)s)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a parameter, e.g. --set data.source=kins (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def _get(mapping: Mapping[str, Any], key: str, *, params_path: Path, prefix: str, kind: tuple = ()) -> Any:
    """``mapping[key]``, with an error naming ``prefix.key`` when missing or of the wrong type."""
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise InputError(params_path, f"missing parameter {prefix}.{key}")
    value = mapping[key]
    # YAML booleans are ints to Python; a count of `true` is a typo, not 1.
    if kind and (not isinstance(value, kind) or (isinstance(value, bool) and bool not in kind)):
        names = " or ".join(k.__name__ for k in kind)
        raise InputError(params_path, f"{prefix}.{key}: expected {names}, got {value!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from asn.config import load_params, section
    from asn.data import download

    params = load_params(args.params, args.overrides)
    data = section(params, "data", args.params)
    source = _get(data, "source", params_path=args.params, prefix="data", kind=(str,))
    progress = not args.no_progress
    retries = _get(data, "retries", params_path=args.params, prefix="data", kind=(int,)) if "retries" in data else 5
    backoff_s = (
        float(_get(data, "backoff_s", params_path=args.params, prefix="data", kind=(int, float)))
        if "backoff_s" in data else 1.0
    )
    if retries < 0 or backoff_s < 0:
        raise InputError(args.params, "data.retries and data.backoff_s must be >= 0")

    if source == "synthetic":
        synth = section(params, "synth", args.params)
        kwargs = {
            kw: _get(synth, key, params_path=args.params, prefix="synth", kind=(int,)) for key, kw in SYNTH_KEYS.items()
        }
        manifest = download.prepare_synthetic(args.out, progress=progress, **kwargs)
    elif source == "kins":
        kins = _get(data, "kins", params_path=args.params, prefix="data")
        if not isinstance(kins, Mapping):
            raise InputError(args.params, "data.kins: expected a mapping")
        release = str(_get(kins, "release", params_path=args.params, prefix="data.kins", kind=(str, int)))
        annotations = _get(kins, "annotations", params_path=args.params, prefix="data.kins")
        if not isinstance(annotations, Mapping):
            raise InputError(args.params, "data.kins.annotations: expected a mapping with train and test")

        def spec(value: Any, key: str, *, required: bool) -> download.FileSpec:
            result = download.FileSpec.from_mapping(value, key=f"data.kins.{key}", source=args.params)
            if required and result.empty:
                raise InputError(
                    args.params, f"data.kins.{key}: set url or path (required for data.source: kins; "
                    f"{WHERE_TO_GET[key]})"
                )
            return result

        manifest = download.prepare_kins(
            args.out,
            release=release,
            train_annotations=spec(annotations.get("train"), "annotations.train", required=True),
            test_annotations=spec(annotations.get("test"), "annotations.test", required=True),
            images=spec(kins.get("images"), "images", required=True),
            labels=spec(kins.get("labels"), "labels", required=False),
            cache_dir=args.cache,
            retries=retries,
            backoff_s=backoff_s,
            progress=progress,
        )
    else:
        raise InputError(args.params, f"data.source: expected 'synthetic' or 'kins', got {source!r}")

    counts = manifest["counts"]
    print(
        f"asn download: {args.out}: source {manifest['source']}, KINS {manifest['release']} release, "
        f"{counts['train_images']} train / {counts['test_images']} test images, "
        f"{counts['train_labels']} label files, {len(manifest['files'])} files",
        file=sys.stderr,
    )
    return 0
