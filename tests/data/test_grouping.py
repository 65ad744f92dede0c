"""Aspect-ratio grouped batches: one group per batch, equal shares, resumable, seeded."""

import numpy as np
import pytest

from trainables.data.dataset import CocoDetection, ResumableDistributedSampler, load_coco
from trainables.data.grouping import aspect_group, grouped_order


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


def test_aspect_groups_are_torchvisions_bins():
    """torchvision's references: bisect_right over 2 ** linspace(-1, 1, 2k + 1), k = factor;
    factor 0: the one edge 1.0 (portrait; landscape or square)."""
    ratios = [0.4, 0.5, 0.75, 1.0, 4 / 3, 1.5, 1.6, 2.0, 3.0]
    edges = 2 ** np.linspace(-1, 1, 7)
    assert [aspect_group(round(r * 600), 600, 3) for r in ratios] == [0, 1, 2, 4, 5, 5, 6, 7, 7]
    assert [aspect_group(round(r * 600), 600, 3) for r in ratios] == list(np.searchsorted(edges, ratios, "right"))
    assert [aspect_group(round(r * 600), 600, 0) for r in ratios] == [0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert aspect_group(480, 640, 1) == 1 and aspect_group(640, 480, 1) == 2  # edges 0.5, 1, 2
    with pytest.raises(ValueError, match="factor"):
        aspect_group(640, 480, -1)


def test_grouped_sampler_single_group_equal_shares_resumable_and_seeded():
    groups = [aspect_group(w, h, 0) for w, h in [(640, 480), (480, 640), (500, 500)] * 13 + [(800, 600)]]  # 40
    assert groups[:3] == [1, 0, 1]  # a square image goes with the landscapes (torchvision)

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


def test_aspect_groups_come_from_the_annotation_file(coco_fixture):
    root, ann_file, _ = coco_fixture
    ds = CocoDetection(str(root), load_coco(str(ann_file)), train=True)
    # The fixture's images are 64 x 48: ratio 1.33, between the edges 1.26 and 1.59.
    assert ds.aspect_groups(3) == [5] * len(ds) and ds.aspect_groups(0) == [1] * len(ds)
