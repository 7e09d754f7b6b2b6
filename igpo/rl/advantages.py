"""Group-relative advantages (SPEC section 1; GRPO, Shao et al. 2024, eq. 3 without std by default)."""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, scale_std: bool = False, eps: float = 1e-4) -> torch.Tensor:
    """``A_i = r_i - mean(r)`` over each group of ``group_size`` consecutive completions; with ``scale_std``
    divided by the group's (unbiased) reward std + eps. rewards: [B*G] -> advantages [B*G]."""
    grouped = rewards.view(-1, group_size).float()  # [B, G]
    advantages = grouped - grouped.mean(dim=1, keepdim=True)
    if scale_std:
        advantages = advantages / (grouped.std(dim=1, keepdim=True) + eps)
    return advantages.reshape(-1)


def zero_advantage_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """[B] bool: groups whose rewards are all equal, so every advantage is zero (no policy gradient)."""
    grouped = rewards.view(-1, group_size)
    return (grouped == grouped[:, :1]).all(dim=1)
