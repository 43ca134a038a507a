"""`asn evaluate`: checkpoint -> predictions on a split -> COCO metrics (Det, Amodal, Inmodal AP)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asn.errors import InputError

HELP = """Score a model on a split of the normalized ground truth. With --checkpoint the model is
rebuilt from the checkpoint alone and run over every image of the split (predictions written to
OUT/predictions.json in the DESIGN.md format); with --predictions an existing predictions file is
scored as it is. Writes OUT/metrics.json: det_ap / amodal_ap / inmodal_ap with their _50 / _75
forms in percent (COCO AP by pycocotools' rules; eval.engine=faster gives identical numbers),
occlusion accuracy, ap_occ_<bucket> with its definition, the scene's occlusion order from the
predictions scored against KINS' oco_id / ico_id (order_pair_accuracy beside order_pair_coverage,
order_cluster_accuracy beside order_cluster_coverage, with order_definition; eval.order_*), and a
`files` block naming the
predictions and the two ground-truth files scored, so anyone can re-score them; and
OUT/per_class.csv (AP per class); with --checkpoint also OUT/timing.json (model ms per image:
machine-dependent, so git- and DVC-ignored). Each detection of a predictions.json written here
carries oco_id / ico_id, the scene order rebuilt from the masks (0 / 0: score below
eval.order_score_threshold, not ordered). Options come from params.yaml `eval:`
(eval.inference_order: released | paper, the order of the two box passes)."""

EVAL_KEYS = {"engine", "mask_threshold", "batch_size", "workers", "iou_match", "occlusion_buckets", "inference_order",
             "order_score_threshold", "order_min_pixels", "order_iou_match"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameters file (default: %(default)s)")
    parser.add_argument("--gt", type=Path, required=True, help="folder with <split>_amodal.json / <split>_inmodal.json")
    parser.add_argument("--split", default="test", help="split name (default: %(default)s)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="checkpoint.pt written by asn train (needs --images)")
    source.add_argument("--predictions", type=Path, help="an existing predictions JSON to score")
    parser.add_argument("--images", type=Path, help="folder with the split's images (with --checkpoint)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (metrics.json, per_class.csv, predictions.json)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set eval.engine=pycocotools (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from asn.commands.train import add_tracking_arguments

    add_tracking_arguments(parser)


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def eval_options(params, source: str) -> dict:
    from asn.config import section, thaw

    options = thaw(section(params, "eval", source))
    unknown = sorted(set(options) - EVAL_KEYS)
    missing = sorted(EVAL_KEYS - set(options))
    if unknown or missing:
        raise InputError(source, f"eval: unknown keys {unknown}, missing keys {missing}")
    if options["engine"] not in ("faster", "pycocotools"):
        raise InputError(source, f"eval.engine: expected faster or pycocotools, got {options['engine']!r}")
    from asn.model.roi_heads import INFERENCE_ORDERS

    if options["inference_order"] not in INFERENCE_ORDERS:
        raise InputError(source, f"eval.inference_order: expected one of {list(INFERENCE_ORDERS)}, "
                                 f"got {options['inference_order']!r}")
    for key in ("order_score_threshold", "order_iou_match"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InputError(source, f"eval.{key}: expected a number in [0, 1], got {value!r}")
    value = options["order_min_pixels"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(source, f"eval.order_min_pixels: expected an integer >= 1, got {value!r}")
    return options


def run(args: argparse.Namespace) -> int:
    from asn.config import load_params
    from asn.eval.coco import evaluate, write_per_class_csv
    from asn.io import write_json_atomic

    params = load_params(args.params, args.overrides)
    options = eval_options(params, str(args.params))
    amodal_gt = args.gt / f"{args.split}_amodal.json"
    inmodal_gt = args.gt / f"{args.split}_inmodal.json"
    run_info: dict = {}
    occlusion_threshold = 0.05
    if args.checkpoint is not None:
        if args.images is None:
            raise InputError(args.checkpoint, "--images is required with --checkpoint")
        predictions_path = args.out / "predictions.json"
        run_info, occlusion_threshold = _predict(args, options, predictions_path)
    else:
        predictions_path = args.predictions
    metrics = evaluate(predictions_path, amodal_gt, inmodal_gt, engine=options["engine"],
                       occlusion_buckets=options["occlusion_buckets"],
                       occlusion_threshold=occlusion_threshold, iou_match=float(options["iou_match"]),
                       order_score_threshold=float(options["order_score_threshold"]),
                       order_min_pixels=int(options["order_min_pixels"]),
                       order_iou_match=float(options["order_iou_match"]))
    per_class = metrics.pop("per_class", [])
    metrics["run"] = run_info
    metrics["files"]["per_class"] = str(args.out / "per_class.csv")
    if run_info.get("params_hash") and run_info.get("data_hash"):
        from asn.tracking import run_key, run_reference

        key = run_key(args.experiment, run_info["variant"], run_info["seed"], run_info["params_hash"],
                      run_info["data_hash"])
        if run_info.get("inference_order", "released") != "released":
            # the same checkpoint scored in another inference order is a run of its own
            key = run_key(args.experiment, run_info["variant"], run_info["seed"], key,
                          f"inference_order={run_info['inference_order']}")
        metrics["mlflow"] = run_reference(args.experiment, key)
    write_per_class_csv(per_class, args.out / "per_class.csv")
    write_json_atomic(args.out / "metrics.json", metrics, indent=True)
    if "mlflow" in metrics and not args.no_tracking:
        log_evaluation(metrics, args.out)
    order = metrics.get("order_pair_accuracy")
    coverage = metrics.get("order_pair_coverage")
    print(f"evaluate: det AP {metrics['det_ap']:.1f}, amodal AP {metrics['amodal_ap']:.1f}, "
          f"inmodal AP {metrics['inmodal_ap']:.1f} (AP50 {metrics['amodal_ap_50']:.1f} amodal); order "
          f"{'n/a' if order is None else f'{order:.1f} %'} of {metrics.get('order_pairs_matched', 0)} matched pairs "
          f"(coverage {'n/a' if coverage is None else f'{coverage:.1f} %'}); "
          f"wrote {args.out / 'metrics.json'}", file=sys.stderr)
    return 0


def _predict(args, options: dict, predictions_path: Path) -> tuple[dict, float]:
    import time

    from asn.data.dataset import AmodalDataset
    from asn.engine.checkpoint import build_model_from_checkpoint
    from asn.engine.distributed import resolve_device
    from asn.eval.inference import predict_dataset
    from asn.eval.order import add_scene_order
    from asn.io import write_json_atomic

    device = resolve_device(args.device)
    model, checkpoint = build_model_from_checkpoint(args.checkpoint, device)
    model.roi_heads.inference_order = options["inference_order"]  # an evaluation choice, same weights
    label_map = checkpoint["label_map"]
    dataset = AmodalDataset(args.gt, args.split, args.images, category_ids=label_map["category_ids"])
    dataset.check_images()
    label_to_category = {i + 1: int(c) for i, c in enumerate(label_map["category_ids"])}
    t0 = time.perf_counter()
    results, model_seconds = predict_dataset(
        model, dataset, device=device, batch_size=int(options["batch_size"]), workers=int(options["workers"]),
        mask_threshold=float(options["mask_threshold"]), label_to_category=label_to_category,
        progress=not args.no_progress)
    add_scene_order(results, score_threshold=float(options["order_score_threshold"]),
                    min_pixels=int(options["order_min_pixels"]))
    write_json_atomic(predictions_path, results)
    # timings go to the log, not to metrics.json (a tracked output is a function of its inputs)
    ms_per_image = model_seconds / max(1, len(dataset)) * 1000
    print(f"evaluate: {len(results)} detections on {len(dataset)} images in {time.perf_counter() - t0:.1f} s "
          f"({ms_per_image:.0f} ms/image in the model, inference order {options['inference_order']}) on {device}",
          file=sys.stderr)
    # an untracked side file (git-ignored, no stage depends on it) for the sweeps that compare speed
    write_json_atomic(args.out / "timing.json", {
        "model_ms_per_image": ms_per_image, "images": len(dataset), "device": str(device),
        "torch_threads": torch_threads(), "inference_order": options["inference_order"]}, indent=True)
    run_info = {"checkpoint": str(args.checkpoint), "variant": checkpoint["variant"],
                "seed": checkpoint["run"]["train"]["seed"], "profile": checkpoint["run"]["profile"],
                "iteration": int(checkpoint["iteration"]), "params_hash": checkpoint.get("params_hash"),
                "data_hash": checkpoint.get("data_hash")}
    if options["inference_order"] != "released":
        run_info["inference_order"] = options["inference_order"]
    return run_info, float(checkpoint["run"]["model"].get("occlusion_threshold", 0.05))


def log_evaluation(metrics: dict, out_dir: Path) -> None:
    """Complete the (variant, seed) run opened by `asn train` with the final metrics and files.

    When training was restored from DVC's run-cache (so it never logged here), the run is
    created now with the same deterministic key.
    """
    from asn.tracking import Tracker, git_commit

    tracker = Tracker()
    run = metrics["run"]
    reference = metrics["mlflow"]
    run_id = tracker.start_run(
        reference["experiment"], reference["run_key"], name=f"{run['variant']}-seed{run['seed']}",
        kind="train+evaluate", replace=False,
        tags={"variant": run["variant"], "seed": run["seed"], "profile": run["profile"],
              "params_hash": run["params_hash"], "data_hash": run["data_hash"]})
    values = {k: float(v) for k, v in metrics.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
    tracker.log_metrics(run_id, values, step=int(run.get("iteration", 0)))
    tracker.set_tags(run_id, {"eval_commit": git_commit(), "eval_dir": str(out_dir)})
    tracker.log_artifacts(run_id, [out_dir / name for name in ("metrics.json", "per_class.csv", "predictions.json")],
                          "eval")
    tracker.end_run(run_id)
    if run_id:
        print(f"mlflow: logged the metrics to experiment {reference['experiment']!r} ({tracker.uri}), "
              f"run {run_id}", file=sys.stderr)
