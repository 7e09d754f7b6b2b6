"""Rewards go through the shared verifier; the all-wrong trigger reads correctness only."""

from __future__ import annotations

import torch

from igpo.rl.rewards import all_wrong_groups, correctness_reward, format_reward, score_completions


def test_correctness_uses_the_last_box_and_math_equivalence():
    completions = [r"first \boxed{3} then \boxed{1/2}", r"\boxed{0.5}", "#### 7", "no answer", r"\boxed{3}"]
    answers = ["0.5", r"\frac{1}{2}", "7", "7", "0.5"]
    assert correctness_reward(completions, answers) == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_format_reward_is_small_and_separate():
    texts = [r"<reasoning>x</reasoning><answer>\boxed{2}</answer>", r"\boxed{2}", "<reasoning>x</reasoning> <answer>2</answer>", "2"]
    assert format_reward(texts) == [1.0, 0.5, 0.5, 0.0]
    rewards = score_completions(texts, {"answer": ["2"] * 4}, format_weight=0.1)
    assert torch.allclose(rewards.total, torch.tensor([1.1, 1.05, 1.05, 0.0]))
    assert rewards.correctness.tolist() == [1.0, 1.0, 1.0, 0.0]


def test_all_wrong_detection_ignores_format():
    # Group 0: perfectly formatted but wrong answers -> all-wrong. Group 1: one bare correct answer -> not.
    texts = [r"<reasoning>r</reasoning><answer>\boxed{5}</answer>"] * 3 + ["#### 4", "nothing", "nothing"]
    rewards = score_completions(texts, {"answer": ["4"] * 6}, format_weight=0.5)
    assert (rewards.total[:3] > 0).all()  # the format reward is there ...
    assert all_wrong_groups(rewards.correctness, 3).tolist() == [True, False]  # ... and does not count
