"""Aspect-ratio grouped batches: one orientation per batch, equal shares, resumable, seeded."""

import pytest

from trainables.data import CocoDetection, ResumableDistributedSampler, load_coco
from trainables.grouping import grouped_order, orientation


def _batches(order, size):
    return [order[i : i + size] for i in range(0, len(order), size)]


def test_torchvisions_rule_on_a_hand_made_order():
    """A group's batch goes out when it is full; the short epoch's last batch is the larger
    remainder completed with its own group's first images (torchvision's GroupedBatchSampler)."""
    groups = [0, 1, 0, 0, 1, 0, 1, 0, 0]  # position -> orientation
    order = [0, 1, 2, 4, 3, 5, 6, 7, 8]
    # 0:L 1:P 2:L -> [0, 2]; 4:P -> [1, 4]; 3:L 5:L -> [3, 5]; 6:P; 7:L 8:L -> [7, 8]; P rest [6]
    assert _batches(grouped_order(order, groups, 2), 2) == [[0, 2], [1, 4], [3, 5], [7, 8]]
    # Batches of 3: L fills [0, 2, 3], P [1, 4, 6]; L rest [5, 7, 8] fills too: 9 // 3 = 3.
    assert _batches(grouped_order(order, groups, 3), 3) == [[0, 2, 3], [1, 4, 6], [5, 7, 8]]
    # Batches of 4 from 7 landscape and 3 portrait images... here 6 L, 3 P: 9 // 4 = 2
    # batches; L fills one [0, 2, 3, 5], the larger remainder (P: 1, 4, 6) is completed
    # with P's first image.
    assert _batches(grouped_order(order, groups, 4), 4) == [[0, 2, 3, 5], [1, 4, 6, 1]]
    with pytest.raises(ValueError, match="batch_size"):
        grouped_order(order, groups, 0)


def test_grouped_sampler_single_orientation_equal_shares_resumable_and_seeded():
    groups = [orientation(w, h) for w, h in [(640, 480), (480, 640), (500, 500)] * 13 + [(800, 600)]]  # 40
    assert groups[:3] == [0, 1, 1]  # a square image goes with the portraits (detectron2)

    def sampler(rank, seed=5, start=0):
        s = ResumableDistributedSampler(
            list(range(40)), 2, rank, shuffle=True, seed=seed, hflip_prob=0.5, groups=groups, batch_size=2
        )
        s.set_epoch(3)
        s.set_start(start)
        return s

    orders = {rank: list(sampler(rank)) for rank in (0, 1)}
    for rank, order in orders.items():
        assert len(order) == len(sampler(rank)) == 20  # every rank: 10 batches
        for batch in _batches(order, 2):
            assert len({groups[i] for i, _flip in batch}) == 1, (rank, batch)
    # Each rank groups its own share of the epoch; a remainder may wait for the next epoch
    # (or complete a batch twice), at most one image per group and rank here.
    for rank, order in orders.items():
        plain = ResumableDistributedSampler(list(range(40)), 2, rank, shuffle=True, seed=5)
        plain.set_epoch(3)
        assert {i for i, _ in order} <= set(plain) and len({i for i, _ in order}) >= 20 - 2
    # A restart mid-epoch (after 3 batches) yields the rest, flips included.
    assert list(sampler(0, start=6)) == orders[0][6:] and len(sampler(0, start=6)) == 14
    assert list(sampler(0)) == orders[0] and list(sampler(0, seed=6)) != orders[0]


def test_orientations_come_from_the_annotation_file(coco_fixture):
    root, ann_file, _ = coco_fixture
    ds = CocoDetection(str(root), load_coco(str(ann_file)), train=True)
    assert ds.orientations() == [0] * len(ds)  # the fixture's images are 64 x 48
