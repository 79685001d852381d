"""``inference/chunks.py``: the chunk plan covers every frame with chunks of one length, never padded, overlapping by
at least the overlap, and the cross-fade weights sum to exactly 1 wherever a ramp meets its complement."""

from __future__ import annotations

import pytest
import torch

from audiodiff.inference import chunks


@pytest.mark.parametrize("frames,size,overlap", [(10, 16, 4), (16, 16, 4), (17, 16, 4), (150, 40, 8), (1000, 64, 0)])
def test_the_plan_covers_every_frame_with_equal_chunks(frames, size, overlap):
    plan = chunks.plan(frames, size, overlap)
    assert plan[0][0] == 0 and plan[-1][1] == frames
    assert {e - a for a, e in plan} == {min(size, frames)}
    for (a0, e0), (a1, e1) in zip(plan, plan[1:]):
        assert a0 < a1 and e0 - a1 >= overlap  # overlapping by at least the overlap, in order
    jobs = [job for group in chunks.groups(2, len(plan), 3) for job in group]
    assert jobs == [(b, i) for i in range(len(plan)) for b in range(2)]
    assert all(len(g) <= 3 for g in chunks.groups(2, len(plan), 3))


def test_cross_fades_sum_to_one_where_two_chunks_meet():
    hop, ramp = 4, 8
    plan = [(0, 10), (8, 18)]  # overlap of 2 frames = one ramp of 8 samples
    total = chunks.weight_sum(plan, hop, ramp, "cpu")
    assert total.shape == (18 * hop,) and torch.equal(total, torch.ones(18 * hop))
    # A last chunk that overlaps more than one ramp: the sum is not 1 there, so the output is divided by it.
    uneven = chunks.weight_sum([(0, 10), (5, 15), (6, 16)], hop, ramp, "cpu")
    assert (uneven > 0).all() and not torch.equal(uneven, torch.ones(16 * hop))
    out = torch.zeros(1, 18 * hop)
    for i in range(2):
        chunks.overlap_add(out, 0, i, torch.ones(10 * hop), plan, hop, ramp)
    assert torch.equal(out[0] / total, torch.ones(18 * hop))  # a constant signal stays constant
