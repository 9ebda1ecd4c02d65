"""Packing ragged rows and drawing switch points."""

import pytest
import torch

from rlgf_pl.rollout.packing import pack
from rlgf_pl.rollout.plan import Plan, sample_switch_index


def test_pack_left_and_right_by_hand():
    tokens = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    keep = torch.tensor([[1, 0, 1, 0], [1, 1, 1, 0]])
    left, left_mask = pack(tokens, keep, pad_value=0, align="left")
    assert left.tolist() == [[1, 3, 0], [5, 6, 7]]
    assert left_mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    right, right_mask = pack(tokens, keep, pad_value=0, align="right")
    assert right.tolist() == [[0, 1, 3], [5, 6, 7]]
    assert right_mask.tolist() == [[0, 1, 1], [1, 1, 1]]


def test_pack_nothing_kept_gives_one_pad_column():
    packed, mask = pack(torch.tensor([[4, 5]]), torch.zeros(1, 2), pad_value=9, align="left")
    assert packed.tolist() == [[9]] and mask.tolist() == [[0]]


def test_switch_index_range_and_zero_cases():
    generator = torch.Generator().manual_seed(0)
    n = 20_000
    lengths = torch.full((n,), 5)
    h = sample_switch_index(torch.ones(n, dtype=torch.bool), lengths, torch.rand(n, generator=generator))
    assert set(h.tolist()) == {1, 2, 3, 4}  # uniform on {1, ..., L-1}
    counts = torch.bincount(h, minlength=5)[1:].float() / n
    assert counts == pytest.approx(torch.full((4,), 0.25), abs=0.02)
    # no mixing, or a roll-in shorter than 2 tokens: h = 0
    h = sample_switch_index(torch.tensor([False, True, True]), torch.tensor([5, 1, 0]), torch.tensor([0.5, 0.5, 0.5]))
    assert h.tolist() == [0, 0, 0]


def test_plan_validates():
    with pytest.raises(ValueError, match="beta"):
        Plan("guide", "learner", 1.5)
    with pytest.raises(ValueError, match="rollin"):
        Plan("teacher", "learner", 0.5)
    assert not Plan("guide", "learner", 0.0).mixes and Plan("guide", "learner", 0.6).mixes
