"""Benchmark of the scene-order scores (asn.eval.order) on the default test split's scale.

Goal: scoring the 50-image test split in under 5 s. The set: the default synthetic world's test
split (50 images at 640x192, params.yaml synth: seed 0) made by ``asn.data.synthetic`` +
``asn.data.convert`` (annotations only), and ``--per-image`` detections per image (default 100,
the models' box_detections_per_img) from ``asn.eval.perturb.perturbed_predictions``. Timed, each
``--repeat`` times (best and all kept): ``order_scores`` as ``asn evaluate`` runs it (score
threshold 0.5, so about the detections a model is confident of), the same with threshold 0 (every
detection ordered and matched: the worst case), and ``add_scene_order`` writing oco_id / ico_id
into every detection.

    python bench/order.py                      # writes reports/bench/order.json
    python bench/order.py --per-image 20 --repeat 1 --out /tmp/order.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from asn.io import read_json, write_json_atomic  # noqa: E402

GOAL_SECONDS = 5.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50, help="test images (default: %(default)s)")
    parser.add_argument("--per-image", type=int, default=100, help="detections per image (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each step (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "order.json")
    args = parser.parse_args(argv)

    from asn.data.convert import convert
    from asn.data.synthetic import synthesize
    from asn.eval import order, perturb

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        synthesize(work / "raw", n_train=0, n_test=args.images, seed=0, width=640, height=192,
                   annotations_only=True, workers=1, progress=False)
        convert(work / "raw" / "update_test_2020.json", work / "gt", "test", images_dir=None, workers=1)
        amodal, inmodal = read_json(work / "gt" / "test_amodal.json"), read_json(work / "gt" / "test_inmodal.json")
    predictions = perturb.perturbed_predictions(amodal, inmodal, per_image=args.per_image, seed=11)

    def timed(step) -> tuple[list[float], object]:
        seconds, result = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = step()
            seconds.append(time.perf_counter() - t0)
        return seconds, result

    steps = {}
    for name, threshold in (("order_scores", 0.5), ("order_scores_every_detection", 0.0)):
        seconds, result = timed(lambda: order.order_scores(predictions, amodal, inmodal, score_threshold=threshold))
        steps[name] = {"best_s": min(seconds), "runs_s": seconds, "score_threshold": threshold,
                       **{k: v for k, v in result.items() if k != "order_definition"}}
    seconds, _ = timed(lambda: order.add_scene_order([dict(p) for p in predictions], score_threshold=0.5))
    steps["add_scene_order"] = {"best_s": min(seconds), "runs_s": seconds, "score_threshold": 0.5}
    best = steps["order_scores"]["best_s"]
    report = {
        "what": "scene-order scores of the default test split (asn.eval.order)",
        "command": "python bench/order.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "images": len(amodal["images"]), "ground_truths": len(amodal["annotations"]),
        "detections": len(predictions), "steps": steps,
        "goal_seconds": GOAL_SECONDS, "goal_met": best < GOAL_SECONDS,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0]},
    }
    write_json_atomic(args.out, report, indent=True)
    print(f"order: {best:.2f} s for {report['images']} images, {report['detections']} detections "
          f"(goal < {GOAL_SECONDS:.0f} s: {'met' if report['goal_met'] else 'NOT met'}); "
          f"every detection: {steps['order_scores_every_detection']['best_s']:.2f} s; "
          f"add_scene_order {steps['add_scene_order']['best_s']:.2f} s; wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
