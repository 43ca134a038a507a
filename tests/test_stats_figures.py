"""Figure 4(b) box consistency and Figure 4(c) cluster statistics on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from asn.errors import InputError
from asn.stats.boxes import box_iou_xyxy, image_box_consistency, match_boxes, read_kitti_label_boxes, share_above
from asn.stats.clusters import bucket_counts, image_overlap_stats, max_order_per_cluster


def _square(x: float, y: float, s: float) -> list[list[float]]:
    return [[x, y, x + s, y, x + s, y + s, x, y + s]]


def test_box_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(box_iou_xyxy(a, b), [[50 / 150, 1.0, 0.0]])


def test_hungarian_matching_prefers_the_global_optimum_and_counts_unmatched():
    masks = np.array([[0, 0, 10, 10], [100, 0, 110, 10], [300, 300, 310, 310]])
    # labels listed in another order, one shifted by 5 px (IoU 1/3), one far away (unmatched)
    labels = np.array([[105, 0, 115, 10], [0, 0, 10, 10], [500, 500, 510, 510]])
    result = match_boxes(masks, labels)
    assert result["n_matched"] == 2
    assert result["mean_iou"] == pytest.approx((1.0 + 50 / 150) / 2)
    assert result["n_unmatched_a"] == 1 and result["n_unmatched_b"] == 1
    empty = match_boxes(masks, np.zeros((0, 4)))
    assert np.isnan(empty["mean_iou"]) and empty["n_unmatched_a"] == 3


def test_label_file_parsing_and_per_image_consistency(tmp_path):
    label = tmp_path / "000000.txt"
    label.write_text(
        "Car 0.00 0 -1.58 0.00 0.00 10.00 10.00 1.6 1.6 3.9 0 0 10 0\n"
        "DontCare -1 -1 -10 50.00 50.00 60.00 60.00 -1 -1 -1 -1000 -1000 -1000 -10\n"
        "Pedestrian 0.00 0 0.2 20.00 0.00 30.00 10.00 1.7 0.6 0.8 1 1 9 0\n"
    )
    np.testing.assert_allclose(read_kitti_label_boxes(label), [[0, 0, 10, 10], [20, 0, 30, 10]])
    inmodal_xywh = np.array([[0, 0, 10, 10], [25, 0, 10, 10]])  # second: IoU 5*10/(150) = 1/3
    result = image_box_consistency([inmodal_xywh], [label])
    assert result["mean_iou"][0] == pytest.approx((1 + 1 / 3) / 2)
    assert share_above(np.array([0.9, 0.5, np.nan, 0.7])) == pytest.approx(2 / 3)
    bad = tmp_path / "000001.txt"
    bad.write_text("Car 0 0\n")
    with pytest.raises(InputError, match="line 1"):
        read_kitti_label_boxes(bad)


def test_max_order_counts_occluded_instances_per_cluster():
    """The paper's definition: the number of occluded instances in a cluster (a pair counts 1)."""
    # image 0: cluster 1 is a chain 1 -> 2 -> 3; an isolated instance (oco 0)
    # image 1: cluster 1 has 6 members with orders 1..6; a null order is skipped;
    #          cluster 2 is a pair (1 occludes 2)
    # image 2: cluster 1 has two front instances (ico 1, 1) over one behind (ico 2)
    image = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2])
    oco = np.array([1, 1, 1, 0, 1, 1, 1, 1, 1, 1, -1, 2, 2, 1, 1, 1])
    ico = np.array([1, 2, 3, 1, 1, 2, 3, 4, 5, 6, -1, 1, 2, 1, 1, 2])
    orders = max_order_per_cluster(image, oco, ico)
    assert orders.tolist() == [2, 5, 1, 1]  # clusters sorted by (image, oco_id)
    counts = bucket_counts(orders)
    assert counts["1"] == 2 and counts["2"] == 1 and counts["5"] == 1 and counts[">5"] == 0


def test_match_numbers_and_coverage_of_hand_made_squares():
    # A overlaps B, B overlaps C, D touches nobody; E has no valid polygon
    segmentations = [_square(0, 0, 10), _square(5, 0, 10), _square(12, 0, 10), _square(50, 50, 10), [[1, 1, 2, 2]]]
    numbers, covered = image_overlap_stats(segmentations, height=100, width=100)
    assert numbers.tolist() == [1, 2, 1, 0, 0]
    # union of the first three squares spans x 0..22, y 0..10; pycocotools rasterises the
    # 10-unit squares as 10x10 pixels, so covered pixels = 22*10 + 10*10
    assert covered == pytest.approx((22 * 10 + 100) / 10000)
    counts = bucket_counts(numbers)
    assert counts["0"] == 2 and counts["1"] == 2 and counts["2"] == 1
