"""IGPO's repair: at most floor(lambda*G) replacements, hints kept verbatim, groups left alone when no
inpainted completion is correct or when the group is not all-wrong."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from rl_helpers import ROLLOUT

from igpo.rl.config import RLConfig
from igpo.rl.hints import tokenize_trace
from igpo.rl.repair import inpaint_all_wrong_groups, no_repair, select_replacements
from igpo.rl.rewards import Rewards
from igpo.rl.rollout import generate_rollouts


@pytest.mark.parametrize("group_size", [2, 3, 4, 5])
@pytest.mark.parametrize("lambda_", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_replacements_never_exceed_floor_lambda_g(group_size, lambda_):
    limit = math.floor(lambda_ * group_size)
    for original in itertools.product([False, True], repeat=group_size):
        for inpainted in itertools.product([False, True], repeat=group_size):
            pairs = select_replacements(original, inpainted, lambda_)
            assert len(pairs) == min(limit, original.count(False), inpainted.count(True))
            assert all(not original[i] and inpainted[j] for i, j in pairs)
            assert len({i for i, _ in pairs}) == len({j for _, j in pairs}) == len(pairs)


def _constant_scorer(value: float):
    def scorer(texts, columns):
        scores = torch.full((len(texts),), value)
        return Rewards(correctness=scores, total=scores.clone())

    return scorer


def _batch(lm, rows, group_size, correct_groups=()):
    generators = {"sample": torch.Generator().manual_seed(0), "hint": torch.Generator().manual_seed(1)}
    batch = generate_rollouts(lm, rows, group_size, ROLLOUT, generators["sample"])
    correctness = torch.zeros(len(batch.texts))
    for group in correct_groups:
        correctness[group * group_size] = 1.0  # one correct completion: not all-wrong
    batch.rewards = Rewards(correctness=correctness, total=correctness.clone())
    return batch, generators


def _config(**overrides):
    values = {"rollout": ROLLOUT, "group_size": 4, "batch_size": 3, "s_min": 2, "s_max": 4, "eta_low": 0.3, "eta_high": 0.7, "lambda_": 0.5}
    return RLConfig(**(values | overrides))


def test_hints_survive_inpainting_and_replacements_are_capped(tiny_lm, toy_examples):
    rows = toy_examples[:3]
    batch, generators = _batch(tiny_lm, rows, 4, correct_groups=[1])
    before = copy.deepcopy(batch)
    stats = inpaint_all_wrong_groups(tiny_lm, batch, _config(lambda_=0.5), _constant_scorer(1.0), generators)
    assert stats.all_wrong_groups == 2 and stats.attempts == 8 and stats.successes == 8
    assert stats.groups_repaired == 2 and stats.replaced == 4  # floor(0.5 * 4) = 2 per group
    # The group with a correct completion is untouched; in the others exactly 2 rows changed.
    assert torch.equal(batch.completion_ids[4:8], before.completion_ids[4:8]) and not batch.hint_mask[4:8].any()
    for group, row in enumerate(rows):
        if group == 1:
            continue
        changed = batch.hint_mask[group * 4 : group * 4 + 4].any(dim=1)
        assert int(changed.sum()) == 2
        trace_ids, answer = tokenize_trace(tiny_lm.tokenizer, row["reasoning"], ROLLOUT.gen_length)
        for r in range(group * 4, group * 4 + 4):
            hints = batch.hint_mask[r]
            positions = hints.nonzero().flatten()
            assert torch.equal(batch.completion_ids[r, positions], trace_ids[positions])  # hints verbatim
            assert not (hints[: answer.shape[0]] & answer).any()
            if hints.any():
                assert batch.rewards.correctness[r] == 1.0
            else:
                assert torch.equal(batch.completion_ids[r], before.completion_ids[r])


def test_every_inpainted_output_keeps_its_hints(tiny_lm, toy_examples):
    rows = toy_examples[:2]
    batch, generators = _batch(tiny_lm, rows, 4)
    inpaint_all_wrong_groups(tiny_lm, batch, _config(lambda_=1.0, batch_size=2), _constant_scorer(1.0), generators)
    assert batch.hint_mask.any(dim=1).all()  # lambda = 1: every row replaced, so every inpainted output is visible
    for group, row in enumerate(rows):
        trace_ids, _ = tokenize_trace(tiny_lm.tokenizer, row["reasoning"], ROLLOUT.gen_length)
        padded = torch.cat([trace_ids, torch.zeros(ROLLOUT.gen_length - trace_ids.shape[0], dtype=torch.long)])
        for r in range(group * 4, group * 4 + 4):
            hints = batch.hint_mask[r]
            assert torch.equal(batch.completion_ids[r][hints], padded[hints])


def test_group_unchanged_when_no_inpainted_completion_is_correct(tiny_lm, toy_examples):
    batch, generators = _batch(tiny_lm, toy_examples[:3], 4)
    before = copy.deepcopy(batch)
    stats = inpaint_all_wrong_groups(tiny_lm, batch, _config(), _constant_scorer(0.0), generators)
    assert stats.attempts == 12 and stats.successes == 0 and stats.replaced == 0 and stats.groups_repaired == 0
    assert torch.equal(batch.completion_ids, before.completion_ids) and not batch.hint_mask.any()
    assert batch.texts == before.texts and torch.equal(batch.rewards.total, before.rewards.total)


def test_trace_without_hints_is_counted_and_left_alone(tiny_lm):
    rows = [{"question": "q", "answer": "1", "reasoning": r"\boxed{1}"}, {"question": "r", "answer": "2", "reasoning": "so 2\n#### 2"}]
    batch, generators = _batch(tiny_lm, rows, 2)
    stats = inpaint_all_wrong_groups(tiny_lm, batch, _config(group_size=2, batch_size=2), _constant_scorer(1.0), generators)
    assert stats.groups_without_hints == 1 and stats.attempts == 2 and stats.replaced == 1
    assert not batch.hint_mask[:2].any()


def test_grpo_repairs_nothing(tiny_lm, toy_examples):
    batch, generators = _batch(tiny_lm, toy_examples[:2], 4)
    before = copy.deepcopy(batch)
    stats = no_repair(tiny_lm, batch, _config(algorithm="grpo", batch_size=2), _constant_scorer(1.0), generators)
    assert stats.all_wrong_groups == 2 and stats.attempts == 0
    assert torch.equal(batch.completion_ids, before.completion_ids)
