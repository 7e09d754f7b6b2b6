"""Rewards (SPEC section 2): correctness through the one shared verifier, plus a small format reward.

A reward function takes the decoded completions and the dataset columns of their rows (one value per
completion, passed as keyword arguments, TRL-style) and returns one float per completion. IGPO's
all-wrong trigger reads the correctness reward alone; the format reward never decides it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from igpo.verify import is_correct

RewardFunction = Callable[..., list[float]]

_TAGS_RE = re.compile(r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>", re.DOTALL)
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\{")


def correctness_reward(completions: Sequence[str], answer: Sequence[str], **_: Any) -> list[float]:
    """1.0 when the completion's final answer equals the ground truth (``igpo.verify.is_correct``), else 0.0."""
    return [1.0 if is_correct(text, str(gold)) else 0.0 for text, gold in zip(completions, answer, strict=True)]


def format_reward(completions: Sequence[str], **_: Any) -> list[float]:
    """In [0, 1]: half for ``<reasoning>...</reasoning><answer>...</answer>``, half for a ``\\boxed{}``.
    The trainer scales it by ``format_reward_weight`` (0.1 by default), so it never outweighs correctness."""
    return [0.5 * bool(_TAGS_RE.search(text)) + 0.5 * bool(_BOXED_RE.search(text)) for text in completions]


@dataclass
class Rewards:
    """Per-completion rewards [N]: correctness alone (the all-wrong trigger) and the total (advantages)."""

    correctness: torch.Tensor
    total: torch.Tensor

    @property
    def correct(self) -> torch.Tensor:
        """[N] bool: a completion counts as correct when its correctness reward is positive."""
        return self.correctness > 0


def score_completions(
    completions: Sequence[str],
    columns: dict[str, Sequence[Any]],
    correctness_fn: RewardFunction = correctness_reward,
    format_weight: float = 0.1,
) -> Rewards:
    """Total reward = correctness + format_weight * format. ``columns`` hold one value per completion."""
    correctness = torch.tensor(correctness_fn(completions, **columns), dtype=torch.float32)  # [N]
    total = correctness.clone()
    if format_weight > 0:
        total += format_weight * torch.tensor(format_reward(completions, **columns), dtype=torch.float32)
    return Rewards(correctness=correctness, total=total)


def all_wrong_groups(correctness: torch.Tensor, group_size: int) -> torch.Tensor:
    """[B] bool: groups in which every completion's correctness reward is 0 (IGPO's trigger)."""
    return (correctness.view(-1, group_size) <= 0).all(dim=1)
