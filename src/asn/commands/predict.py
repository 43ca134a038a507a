"""`asn predict`: a checkpoint + one's own images -> predictions JSON + overlay PNGs."""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

from asn.errors import InputError

HELP = """Run a trained model on your own images: a file, a folder (its *.png / *.jpg / *.jpeg) or
a glob pattern (quote it), any size. The model is rebuilt from the checkpoint alone (variant,
backbone, class mapping). Writes OUT/predictions.json (the DESIGN.md format: image_id,
file_name, category_id, bbox = amodal xywh, score, segmentation = amodal RLE,
inmodal_segmentation, occlusion_score, and oco_id / ico_id: the scene's occlusion order rebuilt
from the masks as KINS 2020 numbers it, see asn.eval.order), OUT/overlays/<name>.png (amodal
outline, inmodal fill, class, score, occlusion score and each detection's order digit, as the
paper's Figure 3) and OUT/layers/<name>.png (the layered view of Figure 1(c): amodal masks near to
far, darker the farther). An image that can't be read is reported by name and
skipped; the exit code is then 1."""

SUFFIXES = {".png", ".jpg", ".jpeg"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt written by asn train")
    parser.add_argument("--images", required=True, metavar="PATH",
                        help="an image file, a folder of images, or a glob pattern such as 'shots/*.jpg'")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--score-threshold", type=float, default=0.5,
                        help="keep detections scoring at least this (default: %(default)s)")
    parser.add_argument("--mask-threshold", type=float, default=0.5, help="mask probability cut (default: %(default)s)")
    parser.add_argument("--order-min-pixels", type=int, default=10,
                        help="pixel floor of a front relation in the scene order (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    parser.add_argument("--no-overlays", action="store_true", help="write only predictions.json (no overlays, no layered views)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def find_images(spec: str) -> list[Path]:
    """The images named by a file, a folder or a glob, sorted; an error when there are none."""
    path = Path(spec)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file()]
    elif path.is_file():
        found = [path]
    else:
        found = [Path(p) for p in glob.glob(spec, recursive=True)
                 if Path(p).suffix.lower() in SUFFIXES and Path(p).is_file()]
    if not found:
        raise InputError(spec, "no PNG or JPEG image found (a file, a folder or a glob pattern)")
    return sorted(found)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from asn.data.categories import KINS_CATEGORIES
    from asn.engine.checkpoint import build_model_from_checkpoint
    from asn.engine.distributed import resolve_device
    from asn.eval.predictions import detections_to_results
    from asn.eval.inference import output_to_cpu
    from asn.eval.order import add_scene_order
    from asn.eval.overlay import draw_layers, draw_predictions, save_png
    from asn.io import write_json_atomic

    if not 0.0 <= args.score_threshold <= 1.0:
        raise InputError("--score-threshold", f"must be in [0, 1], got {args.score_threshold}")
    if args.order_min_pixels < 1:
        raise InputError("--order-min-pixels", f"must be >= 1, got {args.order_min_pixels}")
    paths = find_images(args.images)
    device = resolve_device(args.device)
    model, checkpoint = build_model_from_checkpoint(args.checkpoint, device)
    category_ids = [int(c) for c in checkpoint["label_map"]["category_ids"]]
    label_to_category = {i + 1: c for i, c in enumerate(category_ids)}
    results, failed = [], []
    iterator = paths
    if not args.no_progress and sys.stderr.isatty():
        from tqdm import tqdm

        iterator = tqdm(paths, desc="predict", unit="img", dynamic_ncols=True)
    names_seen: dict[str, int] = {}
    with torch.inference_mode():
        for image_id, path in enumerate(iterator, start=1):
            try:
                with Image.open(path) as image:
                    rgb = np.asarray(image.convert("RGB"))
            except (OSError, UnidentifiedImageError, ValueError) as error:
                print(f"asn predict: {path}: cannot read image ({error}); skipped", file=sys.stderr)
                failed.append(str(path))
                continue
            tensor = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255).to(device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                output = model([tensor])[0]
            output = output_to_cpu(output)
            keep = output["scores"] >= args.score_threshold
            output = {k: v[keep] for k, v in output.items()}
            entries = detections_to_results(output, image_id, label_to_category, mask_threshold=args.mask_threshold)
            # every kept detection takes part in the order (they passed --score-threshold)
            add_scene_order(entries, score_threshold=0.0, min_pixels=args.order_min_pixels)
            for entry in entries:
                entry["file_name"] = str(path)
            results.extend(entries)
            if not args.no_overlays:
                amodal = (output["amodal_masks"][:, 0] >= args.mask_threshold).numpy()
                inmodal = (output["inmodal_masks"][:, 0] >= args.mask_threshold).numpy()
                names = [KINS_CATEGORIES[label_to_category[int(l)]][0] for l in output["labels"]]
                orders = [int(entry["ico_id"]) for entry in entries]
                overlay = draw_predictions(rgb, amodal, inmodal, names, output["scores"].tolist(),
                                           output["occlusion_scores"].tolist(), orders=orders)
                # two inputs with the same stem (from different folders) get distinct overlays
                count = names_seen.get(path.stem, 0)
                names_seen[path.stem] = count + 1
                stem = path.stem if count == 0 else f"{path.stem}-{count}"
                save_png(overlay, args.out / "overlays" / f"{stem}.png")
                save_png(draw_layers(rgb, amodal, orders), args.out / "layers" / f"{stem}.png")
    write_json_atomic(args.out / "predictions.json", results)
    print(f"predict: {len(results)} detections on {len(paths) - len(failed)} images; wrote {args.out}"
          + (f"; {len(failed)} unreadable image(s) skipped" if failed else ""), file=sys.stderr)
    return 1 if failed else 0
