"""Group advantages by hand on small groups."""

from __future__ import annotations

import torch

from igpo.rl.advantages import group_advantages, zero_advantage_groups


def test_advantages_are_reward_minus_group_mean():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.5, 0.5, 0.5, 2.0, 0.0, 1.0])
    expected = [2 / 3, -1 / 3, -1 / 3, 0.0, 0.0, 0.0, 1.0, -1.0, 0.0]
    assert torch.allclose(group_advantages(rewards, 3), torch.tensor(expected))


def test_std_scaling_divides_by_the_unbiased_group_std():
    rewards = torch.tensor([1.0, 0.0, 0.0, 3.0, 3.0, 3.0])
    std = (((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2) ** 0.5  # unbiased std of (1, 0, 0)
    out = group_advantages(rewards, 3, scale_std=True, eps=1e-4)
    assert torch.allclose(out[:3], torch.tensor([2 / 3, -1 / 3, -1 / 3]) / (std + 1e-4))
    assert torch.equal(out[3:], torch.zeros(3))  # equal rewards: zero, not nan


def test_zero_advantage_groups():
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.3, 0.3])
    assert zero_advantage_groups(rewards, 2).tolist() == [True, True, True]
    assert zero_advantage_groups(rewards, 3).tolist() == [False, False]
