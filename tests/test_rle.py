"""RLE helpers: decoding the compressed counts string, complement and difference are exact."""

from __future__ import annotations

import numpy as np
import pytest

from asn.data import rle as rle_ops


@pytest.mark.parametrize("shape", [(37, 53), (375, 1242)])
def test_decode_and_set_operations_match_dense(shape):
    rng = np.random.default_rng(0)
    for _ in range(20):
        masks = []
        for k in range(3):
            m = np.zeros(shape, bool)
            y, x = rng.integers(0, shape[0] // 2), rng.integers(0, shape[1] // 2)
            m[y:y + rng.integers(1, shape[0]), x:x + rng.integers(1, shape[1])] = True
            masks.append(m & (rng.random(shape) < rng.choice([0.3, 1.0])))
        rles = [rle_ops.encode(m) for m in masks]
        for r, m in zip(rles, masks):
            counts = rle_ops.string_to_counts(r["counts"])
            assert counts.sum() == m.size
            assert rle_ops.counts_to_rle(counts, *shape)["counts"] == r["counts"]
            assert np.array_equal(rle_ops.decode(rle_ops.complement(r)), ~m)
        got = rle_ops.difference(rles[0], rles[1:])
        assert np.array_equal(rle_ops.decode(got), masks[0] & ~masks[1] & ~masks[2])
        assert rle_ops.area([got])[0] == (masks[0] & ~masks[1] & ~masks[2]).sum()


def test_empty_and_full_masks():
    empty, full = rle_ops.encode(np.zeros((4, 5), bool)), rle_ops.encode(np.ones((4, 5), bool))
    assert not rle_ops.decode(rle_ops.difference(empty, [full])).any()
    assert rle_ops.decode(rle_ops.difference(full, [empty])).all()
    assert not rle_ops.decode(rle_ops.difference(full, [full])).any()
    assert rle_ops.decode(rle_ops.difference(full, [])).all()
    assert len(rle_ops.area([])) == 0 and rle_ops.bbox([]).shape == (0, 4)


def test_batched_rasterization_equals_one_by_one():
    from pycocotools import mask as mask_utils

    objects = [[[1.0, 1.0, 9.0, 1.0, 5.0, 7.0]], [], [[0, 0, 4, 0, 4, 4], [6, 6, 9, 6, 9, 9]]]
    rles = rle_ops.polygons_to_rles(objects, 10, 12)
    assert not rle_ops.decode(rles[1]).any()
    for polys, rle in zip(objects, rles):
        if polys:
            dense = mask_utils.decode(mask_utils.frPyObjects(polys, 10, 12)).any(axis=2)
            assert np.array_equal(rle_ops.decode(rle), dense)


def test_pairwise_iou():
    a = np.zeros((6, 8), bool)
    a[:, :4] = True
    b = np.zeros((6, 8), bool)
    b[:, 2:6] = True
    rles = [rle_ops.encode(a), rle_ops.encode(b)]
    assert rle_ops.pairwise_iou(rles, rles) == [1.0, 1.0]
    assert rle_ops.pairwise_iou(rles[:1], rles[1:]) == [pytest.approx(12 / 36)]
    assert rle_ops.pairwise_iou([], []) == []
    with pytest.raises(ValueError, match="one length"):
        rle_ops.pairwise_iou(rles, rles[:1])
