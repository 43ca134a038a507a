"""The scene's occlusion order from the predictions (asn.eval.order): the front relation, clusters
and KINS-style orders on hand-made scenes (two instances with mutual overlap and a tie, a chain
of three, a hidden intersection, a cycle), the one-to-one matching, the scores against the ground
truth (accuracy beside coverage), the ground truth fed back scoring 100 %, and the order written
into predictions."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from asn.errors import InputError
from asn.eval import order
from asn.io import read_json, write_json_atomic

H, W = 20, 60


def box(x0, x1, y0=0, y1=10):
    """A (H, W) bool mask of columns x0..x1-1 and rows y0..y1-1."""
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def rle(mask):
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(encoded["size"][0]), int(encoded["size"][1])], "counts": encoded["counts"].decode("ascii")}


def ground_truth(instances, image_id=1):
    """Normalized amodal / inmodal dicts from (amodal mask, inmodal mask, oco_id, ico_id) rows."""
    images = [{"id": image_id, "file_name": "000001.png", "height": H, "width": W}]
    cats = [{"id": 4, "name": "car"}]
    amodal, inmodal = [], []
    for k, (a, i, oco, ico) in enumerate(instances, 1):
        base = {"id": k, "image_id": image_id, "category_id": 4, "iscrowd": 0, "oco_id": oco, "ico_id": ico,
                "occlusion_ratio": 1 - i.sum() / a.sum()}
        amodal.append({**base, "segmentation": rle(a), "bbox": [0, 0, 1, 1], "area": float(a.sum())})
        inmodal.append({**base, "segmentation": rle(i), "bbox": [0, 0, 1, 1], "area": float(i.sum())})
    return ({"images": images, "annotations": amodal, "categories": cats},
            {"images": images, "annotations": inmodal, "categories": cats})


def detections(masks, image_id=1, scores=None):
    """Prediction entries from (amodal mask, inmodal mask) pairs."""
    scores = scores or [0.9] * len(masks)
    return [{"image_id": image_id, "category_id": 4, "bbox": [0, 0, 1, 1], "score": s, "segmentation": rle(a),
             "inmodal_segmentation": rle(i), "occlusion_score": 0.0} for (a, i), s in zip(masks, scores)]


def two_cars(front_visible_columns):
    """Cars A (columns 0-19) and B (10-29) sharing columns 10-19. Of the shared 10 columns, A sees
    the first ``front_visible_columns`` and B the rest: A's visible part covers that much of B's
    invisible part and B's the remaining of A's."""
    a, b = box(0, 20), box(10, 30)
    split = 10 + front_visible_columns
    return (a, a & ~box(split, 20)), (b, b & ~box(10, split))


# ------------------------------------------------------------------------------------------
# Front relation, clusters, order
# ------------------------------------------------------------------------------------------

def test_a_plain_occlusion_puts_the_occluder_first():
    (a, ia), (b, ib) = two_cars(10)  # A sees the whole shared part: A in front of B
    cover, overlap = order.cover_counts(np.stack([a, b]).reshape(2, -1).T, np.stack([ia, ib]).reshape(2, -1).T)
    assert cover.tolist() == [[0, 100], [0, 0]] and overlap.tolist() == [[0, 100], [100, 0]]
    oco, ico = order.scene_order(np.stack([a, b]), np.stack([ia, ib]))
    assert oco.tolist() == [1, 1] and ico.tolist() == [1, 2]
    oco, ico = order.scene_order(np.stack([b, a]), np.stack([ib, ia]))  # the index does not matter
    assert oco.tolist() == [1, 1] and ico.tolist() == [2, 1]


@pytest.mark.parametrize("columns, expected", [(6, [1, 2]), (4, [2, 1]), (5, [1, 1])])
def test_mutual_overlap_the_larger_cover_wins_and_equal_covers_tie(columns, expected):
    """Both masks claim part of the shared region: 60 vs 40 px -> A first; 40 vs 60 -> B first;
    50 vs 50 -> a tie, both first in one cluster."""
    (a, ia), (b, ib) = two_cars(columns)
    oco, ico = order.scene_order(np.stack([a, b]), np.stack([ia, ib]))
    assert oco.tolist() == [1, 1] and ico.tolist() == expected


def test_the_pixel_floor():
    (a, ia), (b, ib) = two_cars(10)
    assert order.scene_order(np.stack([a, b]), np.stack([ia, ib]), min_pixels=100)[1].tolist() == [1, 2]
    # below the floor: no relation and (the overlap being below it too) no cluster
    oco, ico = order.scene_order(np.stack([a, b]), np.stack([ia, ib]), min_pixels=101)
    assert oco.tolist() == [0, 0] and ico.tolist() == [1, 1]


def test_a_chain_of_three_and_a_lone_instance():
    a, b, c, lone = box(0, 20), box(15, 35), box(30, 50), box(55, 60, 12, 20)
    ia, ib, ic = a, b & ~a, c & ~b
    oco, ico = order.scene_order(np.stack([c, lone, b, a]), np.stack([ic, lone, ib, ia]))
    assert oco.tolist() == [1, 0, 1, 1] and ico.tolist() == [3, 1, 2, 1]


def test_a_cycle_drops_its_weakest_relation():
    front = np.zeros((3, 3), bool)
    front[0, 1] = front[1, 2] = front[2, 0] = True  # 0 before 1 before 2 before 0
    margin = np.zeros((3, 3))
    margin[0, 1], margin[1, 2], margin[2, 0] = 5, 3, 1
    assert order.order_from_front(front, margin=margin)[1].tolist() == [1, 2, 3]
    margin[2, 0] = 9  # now 1 -> 2 is the weakest: 2 before 0 before 1
    assert order.order_from_front(front, margin=margin)[1].tolist() == [2, 3, 1]
    assert [x.tolist() for x in order.order_from_front(np.zeros((0, 0), bool))] == [[], []]


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\[K, H, W\]"):
        order.scene_order(np.zeros((4, 4), bool), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="square"):
        order.front_relation(np.zeros((2, 3)))
    assert [x.tolist() for x in order.scene_order(np.zeros((0, H, W), bool), np.zeros((0, H, W), bool))] == [[], []]


# ------------------------------------------------------------------------------------------
# Matching and scoring
# ------------------------------------------------------------------------------------------

def test_matching_is_one_to_one_best_iou_first():
    gt = [rle(box(0, 20)), rle(box(30, 50))]
    dets = [rle(box(0, 16)), rle(box(0, 19)), rle(box(31, 50)), rle(box(40, 60))]
    # det 1 (IoU .95) beats det 0 (.8) for gt 0; det 2 takes gt 1; det 3 (IoU .33) matches nothing
    assert order.match_by_mask_iou(dets, gt).tolist() == [1, 2]
    assert order.match_by_mask_iou(dets[:1], gt).tolist() == [0, -1]
    assert order.match_by_mask_iou([], gt).tolist() == [-1, -1]


def _scores(gt_rows, det_masks, **kwargs):
    amodal, inmodal = ground_truth(gt_rows)
    per_image = {}
    out = order.order_scores(detections(det_masks), amodal, inmodal, per_image=per_image, **kwargs)
    return out, per_image


def test_two_cars_right_wrong_tied_and_unmatched():
    (a, ia), (b, ib) = two_cars(10)
    gt = [(a, ia, 1, 1), (b, ib, 1, 2)]
    right, per_image = _scores(gt, [(a, ia), (b, ib)])
    assert (right["order_pairs"], right["order_pairs_matched"], right["order_pairs_correct"]) == (1, 1, 1)
    assert right["order_pair_accuracy"] == 100.0 and right["order_pair_coverage"] == 100.0
    assert right["order_cluster_accuracy"] == 100.0 and right["order_cluster_coverage"] == 100.0
    assert per_image[1]["pairs_correct"] == 1 and "order_definition" in right

    reverse = two_cars(0)  # B's visible part over A's invisible part: B in front, wrong
    wrong, _ = _scores(gt, list(reverse))
    assert wrong["order_pair_accuracy"] == 0.0 and wrong["order_pair_coverage"] == 100.0
    assert wrong["order_cluster_accuracy"] == 0.0

    tied, _ = _scores(gt, list(two_cars(5)))  # a tie is no answer: wrong
    assert tied["order_pair_accuracy"] == 0.0 and tied["order_pairs_matched"] == 1

    alone, _ = _scores(gt, [(a, ia)])  # B not detected: the pair is not covered, accuracy undefined
    assert alone["order_pair_accuracy"] is None and alone["order_pair_coverage"] == 0.0
    assert alone["order_cluster_accuracy"] is None and alone["order_cluster_coverage"] == 0.0

    low, _ = _scores(gt, [(a, ia), (b, ib)], score_threshold=0.95)  # both below the order threshold
    assert low["order_pairs_matched"] == 0 and low["order_detections"] == 0


def test_chain_with_a_hidden_intersection_ground_truth_scores_100():
    """K (in front) hides the whole intersection of I and J: I and J overlap, but neither is seen
    there, so that pair has no observable order and is left out (scored, it could only be a tie).
    Fed back as predictions, the ground truth scores 100 %."""
    k, i, j = box(10, 30, 0, 10), box(0, 25, 2, 8), box(15, 45, 3, 7)
    assert (i & j & ~k).sum() == 0 and (i & j).sum() > 0
    ik, ii, ij = k, i & ~k, j & ~k & ~i
    gt = [(k, ik, 1, 1), (i, ii, 1, 2), (j, ij, 1, 3)]
    out, _ = _scores(gt, [(k, ik), (i, ii), (j, ij)])
    assert out["order_pairs"] == 2  # K-I and K-J; I-J is hidden behind K
    assert out["order_pair_accuracy"] == 100.0 and out["order_cluster_accuracy"] == 100.0


def test_equal_ground_truth_orders_are_left_out_and_counted():
    (a, ia), (b, ib) = two_cars(10)
    out, _ = _scores([(a, ia, 1, 1), (b, ib, 1, 1)], [(a, ia), (b, ib)])
    assert out["order_pairs"] == 0 and out["order_pairs_tied_in_ground_truth"] == 1
    assert out["order_pair_accuracy"] is None and out["order_pair_coverage"] is None


def test_bad_settings_are_refused():
    amodal, inmodal = ground_truth([(box(0, 5), box(0, 5), 0, 1)])
    with pytest.raises(InputError, match="min_pixels"):
        order.order_scores([], amodal, inmodal, min_pixels=0)
    with pytest.raises(InputError, match="score threshold"):
        order.order_scores([], amodal, inmodal, score_threshold=2)


# ------------------------------------------------------------------------------------------
# The ground truth fed back, through evaluate
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_gt(tmp_path_factory):
    from asn.data.convert import convert
    from asn.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("order_gt")
    synthesize(root / "raw", n_train=0, n_test=10, seed=5, width=320, height=120,
               annotations_only=True, workers=1, progress=False)
    convert(root / "raw" / "update_test_2020.json", root / "gt", "test", images_dir=None, workers=1)
    return root / "gt" / "test_amodal.json", root / "gt" / "test_inmodal.json"


def ground_truth_as_predictions(amodal, inmodal):
    sizes = {img["id"]: (img["height"], img["width"]) for img in amodal["images"]}
    inmodal_by_id = {a["id"]: a for a in inmodal["annotations"]}
    preds = []
    for ann in amodal["annotations"]:
        h, w = sizes[ann["image_id"]]
        amodal_rle = order.segmentation_rle(ann["segmentation"], h, w)
        preds.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": ann["bbox"],
                      "score": 1.0, "segmentation": {"size": [h, w], "counts": amodal_rle["counts"].decode("ascii")},
                      "inmodal_segmentation": inmodal_by_id[ann["id"]]["segmentation"],
                      "occlusion_score": float(ann["occlusion_ratio"] > 0.05)})
    return preds


def test_ground_truth_fed_back_scores_100_in_the_metrics_json(synthetic_gt, tmp_path):
    from asn.eval.coco import evaluate

    amodal_path, inmodal_path = synthetic_gt
    amodal, inmodal = read_json(amodal_path), read_json(inmodal_path)
    path = tmp_path / "predictions.json"
    write_json_atomic(path, ground_truth_as_predictions(amodal, inmodal))
    metrics = evaluate(path, amodal_path, inmodal_path, engine="faster")
    assert metrics["order_pairs"] >= 10 and metrics["order_clusters"] >= 3  # a scene with real layering
    assert metrics["order_pairs_matched"] == metrics["order_pairs"]
    for key in ("order_pair_accuracy", "order_pair_coverage", "order_cluster_accuracy", "order_cluster_coverage"):
        assert metrics[key] == 100.0, key
    assert set(order.ORDER_METRIC_KEYS) <= set(metrics)
    assert "ico_id" in metrics["order_definition"]

    # a degraded copy (every inmodal mask replaced by its amodal one: nobody hidden) scores lower
    flat = [{**p, "inmodal_segmentation": p["segmentation"]} for p in read_json(path)]
    write_json_atomic(path, flat)
    assert evaluate(path, amodal_path, inmodal_path)["order_pair_accuracy"] == 0.0


def test_add_scene_order_matches_kins_numbering(synthetic_gt):
    """Written into the ground truth as predictions, the rebuilt clusters are KINS' own (same
    groups), and inside every cluster each observable front relation agrees with KINS' order."""
    amodal_path, inmodal_path = synthetic_gt
    amodal, inmodal = read_json(amodal_path), read_json(inmodal_path)
    preds = ground_truth_as_predictions(amodal, inmodal)
    preds[0]["score"] = 0.2
    order.add_scene_order(preds, score_threshold=0.5, min_pixels=1)
    assert (preds[0]["oco_id"], preds[0]["ico_id"]) == (0, 0)  # below the threshold: not ordered
    assert all(isinstance(p["oco_id"], int) and p["ico_id"] >= 1 for p in preds[1:])
    by_image = {}
    for p, ann in zip(preds[1:], amodal["annotations"][1:]):
        by_image.setdefault(ann["image_id"], []).append((p, ann))
    for rows in by_image.values():
        predicted, kins = {}, {}
        for p, ann in rows:
            predicted.setdefault(p["oco_id"], set()).add(ann["id"])
            kins.setdefault(ann["oco_id"], set()).add(ann["id"])
        # every rebuilt cluster lies inside one KINS cluster (a hidden overlap may split one)
        for cluster, members in predicted.items():
            if cluster:
                assert any(members <= group for oco, group in kins.items() if oco), (members, kins)
    empty = order.add_scene_order([], score_threshold=0.5)
    assert empty == []


# ------------------------------------------------------------------------------------------
# Pictures: order digits (Figure 3) and the layered view (Figure 1(c))
# ------------------------------------------------------------------------------------------

def test_order_digits_are_drawn_on_the_visible_part():
    from asn.eval.overlay import draw_predictions

    (a, ia), (b, ib) = two_cars(10)
    image = np.full((H, W, 3), 60, np.uint8)
    amodal, inmodal = np.stack([a, b]), np.stack([ia, ib])
    plain = np.asarray(draw_predictions(image, amodal, inmodal, ["", ""], [0.9, 0.8], None))
    digits = np.asarray(draw_predictions(image, amodal, inmodal, ["", ""], [0.9, 0.8], None, orders=[1, 2]))
    changed = np.any(plain != digits, axis=2)
    assert changed.sum() > 10
    ys, xs = np.nonzero(changed)
    # B's digit sits around B's visible part (columns 20-29), A's around A's (0-19)
    assert xs.min() < 15 and xs.max() > 20
    with pytest.raises(ValueError, match="orders"):
        draw_predictions(image, amodal, inmodal, ["", ""], [0.9, 0.8], None, orders=[1])


def test_layered_view_near_covers_far_and_far_is_darker():
    from asn.eval.overlay import PALETTE, draw_layers, layer_shades

    (a, ia), (b, ib) = two_cars(10)
    image = np.full((H, W, 3), 60, np.uint8)
    picture = np.asarray(draw_layers(image, np.stack([a, b]), [1, 2], digits=False)).astype(int)
    assert layer_shades([1, 2]).tolist() == pytest.approx([1.0, 0.3])
    assert layer_shades([1, 1]).tolist() == [1.0, 1.0] and layer_shades([]).size == 0
    shared, far_only = (5, 15), (5, 25)  # (row, column) inside both masks; inside B only
    assert picture[shared].tolist() == PALETTE[0].astype(int).tolist()  # A, the near one, on top
    assert picture[far_only].tolist() == (PALETTE[1] * np.float32(0.3)).astype(int).tolist()
    assert picture[far_only].sum() < PALETTE[1].sum()
    assert picture[15, 55].tolist() == [21, 21, 21]  # the background, dimmed grey
    swapped = np.asarray(draw_layers(image, np.stack([a, b]), [2, 1], digits=False)).astype(int)
    assert swapped[shared].tolist() == PALETTE[1].astype(int).tolist()  # now B is in front


def test_scene_figure_puts_ground_truth_beside_predictions():
    from asn.eval.overlay import scene_figure

    (a, ia), (b, ib) = two_cars(10)
    image = np.full((H, W, 3), 60, np.uint8)
    panel = ("truth", np.stack([a, b]), np.stack([ia, ib]), ["car", "car"], [1.0, 1.0], [1, 2])
    sheet = scene_figure(image, [panel, ("model", *panel[1:])])
    assert sheet.size == (2 * W + 4, 16 + 2 * H + 4)
