"""Dynamic sampling (DAPO) as the third repair strategy of the one RL loop, and the equal-budget stop.

Rewards are scripted (``rl_helpers.varied_on``, or fixed reward patterns in the unit tests), so which
groups are flat is known whatever the tiny model samples."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from rl_helpers import ROLLOUT, fresh_lm, params, varied_on

import igpo.rl.trainer as trainer_module
from igpo.checkpoint import CheckpointConfig, latest_checkpoint
from igpo.rl import RLConfig, train_rl
from igpo.rl.advantages import zero_advantage_groups
from igpo.rl.repair import resample_zero_variance_groups
from igpo.rl.rewards import Rewards
from igpo.rl.rollout import fresh_prompt_order, generate_rollouts

G = 4
PATTERNS = {"wrong": [0.0] * G, "right": [1.0] * G, "mixed": [1.0, 0.0, 1.0, 0.0]}


def _scored(lm, questions, patterns, seed=0):
    """A real rollout batch of ``questions`` whose rewards follow ``patterns`` (one per group)."""
    rows = [{"question": q, "answer": "1"} for q in questions]
    batch = generate_rollouts(lm, rows, G, ROLLOUT, torch.Generator().manual_seed(seed))
    correctness = torch.tensor([v for p in patterns for v in PATTERNS[p]])
    batch.rewards = Rewards(correctness=correctness, total=correctness.clone())
    return batch


class ScriptedResample:
    """A stand-in for the trainer's ``resample``: call k returns fresh prompts (longer than the batch's, so
    the prompt padding must be reconciled) scored with ``script[k]``."""

    def __init__(self, lm, script):
        self.lm, self.script, self.requests, self.batches = lm, script, [], []

    def __call__(self, num_prompts):
        patterns = self.script[len(self.requests)]
        assert len(patterns) == num_prompts
        self.requests.append(num_prompts)
        questions = [f"a much longer fresh question {len(self.requests)}.{k}?" for k in range(num_prompts)]
        self.batches.append(_scored(self.lm, questions, patterns, seed=len(self.requests)))
        return self.batches[-1]


def _config(**overrides) -> RLConfig:
    values = {
        "algorithm": "dynamic", "steps": 1, "batch_size": 3, "group_size": G, "mu": 1, "rollout": ROLLOUT,
        "learning_rate": 1e-2, "beta": 0.0, "weight_decay": 0.0, "grad_clip": 1.0, "format_reward_weight": 0.0,
    }
    return RLConfig(**(values | overrides))


def _real_prompt(batch, rows):
    return batch.prompt_ids[rows][batch.prompt_mask[rows].bool()]


def test_flat_groups_are_replaced_by_fresh_groups_with_variance(tiny_lm):
    batch = _scored(tiny_lm, ["1+1?", "2+2?", "3+3?"], ["wrong", "mixed", "right"])
    before = copy.deepcopy(batch)
    # Round 1: 2 flat groups x oversample 1 -> 2 prompts, one with variance; round 2: 1 prompt, with variance.
    resample = ScriptedResample(tiny_lm, [["mixed", "wrong"], ["mixed"]])
    stats = resample_zero_variance_groups(
        tiny_lm, batch, _config(oversample_factor=1), None, {}, resample=resample
    )
    assert resample.requests == [2, 1]
    assert (stats.resample_rounds, stats.prompts_resampled, stats.resampled_completions) == (2, 3, 12)
    assert stats.groups_resampled == 2 and stats.groups_unfilled == 0 and stats.all_wrong_groups == 1
    assert stats.completions_generated == 12 and stats.attempts == 0
    assert batch.completion_ids.shape == before.completion_ids.shape and len(batch.texts) == 3 * G
    assert not zero_advantage_groups(batch.rewards.total, G).any()
    assert batch.prompt_ids.shape[1] == resample.batches[0].prompt_ids.shape[1] > before.prompt_ids.shape[1]
    # Group 1 (it had variance) is untouched; groups 0 and 2 are the fresh groups with variance, in order.
    for target, (fresh, source) in {1: (before, 1), 0: (resample.batches[0], 0), 2: (resample.batches[1], 0)}.items():
        dst, src = batch.group_rows(target), fresh.group_rows(source)
        assert torch.equal(batch.completion_ids[dst], fresh.completion_ids[src])
        assert torch.equal(_real_prompt(batch, dst), _real_prompt(fresh, src))
        assert batch.texts[dst] == fresh.texts[src] and batch.columns["question"][dst] == fresh.columns["question"][src]
        assert torch.equal(batch.rewards.total[dst], fresh.rewards.total[src])
    assert not batch.hint_mask.any()


def test_groups_that_never_get_variance_are_kept_and_counted(tiny_lm):
    batch = _scored(tiny_lm, ["1+1?", "2+2?", "3+3?"], ["wrong", "mixed", "right"])
    before = copy.deepcopy(batch)
    resample = ScriptedResample(tiny_lm, [["wrong", "right", "wrong", "wrong"]] * 3)
    stats = resample_zero_variance_groups(
        tiny_lm, batch, _config(oversample_factor=2, max_resample_rounds=3), None, {}, resample=resample
    )
    assert resample.requests == [4, 4, 4]  # every round asks again for the 2 groups still flat
    assert stats.resample_rounds == 3 and stats.prompts_resampled == 12 and stats.resampled_completions == 48
    assert stats.groups_resampled == 0 and stats.groups_unfilled == 2
    assert torch.equal(batch.prompt_ids, before.prompt_ids) and torch.equal(batch.completion_ids, before.completion_ids)
    assert batch.texts == before.texts and torch.equal(batch.rewards.total, before.rewards.total)


def test_nothing_is_resampled_when_every_group_has_variance(tiny_lm):
    batch = _scored(tiny_lm, ["1+1?", "2+2?"], ["mixed", "mixed"])
    resample = ScriptedResample(tiny_lm, [])
    stats = resample_zero_variance_groups(tiny_lm, batch, _config(batch_size=2), None, {}, resample=resample)
    assert resample.requests == [] and stats.resample_rounds == 0 and stats.completions_generated == 0


def test_fresh_prompt_order_is_a_pure_function_without_the_batch_and_disjoint_over_ranks():
    batch = [3, 7, 8, 0]
    one = fresh_prompt_order(20, batch, seed=5, step=2, rank_index=0, world=1)
    assert one == fresh_prompt_order(20, batch, seed=5, step=2, rank_index=0, world=1)
    assert sorted(one) == sorted(set(range(20)) - set(batch))
    assert one != fresh_prompt_order(20, batch, seed=5, step=3, rank_index=0, world=1)
    assert one != fresh_prompt_order(20, batch, seed=6, step=2, rank_index=0, world=1)
    shares = [fresh_prompt_order(20, batch, seed=5, step=2, rank_index=r, world=3) for r in range(3)]
    assert sorted(i for share in shares for i in share) == sorted(one) and all(shares)  # dealt over ranks, once each
    # The batch is the whole dataset: fall back to every example rather than draw nothing.
    assert sorted(fresh_prompt_order(4, range(4), seed=0, step=0, rank_index=0, world=1)) == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------------------
# Through the trainer.

EXAMPLES = [{"question": f"{i}+{i}?", "answer": str(2 * i)} for i in range(12)]
VARIED = [row["question"] for row in EXAMPLES[6:]]  # half the prompts give groups with variance


def _record_repairs(monkeypatch):
    """Wrap the dynamic strategy: per call, the questions of the batch before and after, and its shape."""
    seen = []

    def recording(policy, batch, config, scorer, generators, *, resample=None):
        questions = list(batch.columns["question"][:: batch.group_size])
        stats = resample_zero_variance_groups(policy, batch, config, scorer, generators, resample=resample)
        seen.append((questions, list(batch.columns["question"][:: batch.group_size]), tuple(batch.completion_ids.shape)))
        return stats

    monkeypatch.setitem(trainer_module.REPAIR_STRATEGIES, "dynamic", recording)
    return seen


def _trainer_config(**overrides) -> RLConfig:
    return _config(**({"batch_size": 4, "steps": 2, "oversample_factor": 2, "max_resample_rounds": 3} | overrides))


def test_trainer_trains_on_groups_with_variance_from_fresh_prompts(tiny_lm, monkeypatch):
    seen = _record_repairs(monkeypatch)
    result = train_rl(tiny_lm, EXAMPLES, _trainer_config(), correctness_fn=varied_on(VARIED), progress=False)
    assert sum(m.groups_resampled for m in result.metrics) > 0  # some first batch had flat groups
    for (before, after, shape), m in zip(seen, result.metrics, strict=True):
        flat = [q for q in before if q not in VARIED]
        assert shape == (4 * G, ROLLOUT.gen_length)  # B*G fixed
        assert all(q in VARIED for q in after)  # 3 rounds always suffice here (see the counts below)
        assert [a for a, b in zip(after, before) if b in VARIED] == [b for b in before if b in VARIED]  # kept in place
        assert len(set(after) - set(before)) == len(flat)  # distinct fresh prompts, none from the step's batch
        assert m.groups_resampled == len(flat) and m.groups_unfilled == 0 and m.zero_advantage_fraction == 0
        assert m.all_wrong_fraction == len(flat) / 4 and m.all_wrong_fraction_after_repair == 0  # first batch, then trained
        assert m.completions_generated == 4 * G + m.prompts_resampled * G
        assert m.prompts_resampled >= 2 * len(flat) and m.resample_rounds >= bool(flat)
    assert result.metrics[-1].completions_generated_total == sum(m.completions_generated for m in result.metrics)


def test_same_seed_draws_the_same_fresh_prompts(tiny_tokenizer, monkeypatch):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("other", 1)):
        seen = _record_repairs(monkeypatch)
        lm = fresh_lm(tiny_tokenizer)
        result = train_rl(lm, EXAMPLES, _trainer_config(seed=seed), correctness_fn=varied_on(VARIED), progress=False)
        runs[name] = (seen, [m.prompts_resampled for m in result.metrics], params(lm.model))
    assert runs["a"][0] == runs["b"][0] and runs["a"][1] == runs["b"][1]
    assert all(torch.equal(runs["a"][2][k], runs["b"][2][k]) for k in runs["a"][2])
    assert runs["a"][0] != runs["other"][0]


class Crash(Exception):
    pass


def _crash_at(crash_step):
    def on_step(step, metrics):
        if step == crash_step:
            raise Crash

    return on_step


def _same_params(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_dynamic_sampling_resumes_bit_identically(tiny_tokenizer, tmp_path):
    config = _trainer_config(batch_size=2, steps=4, p_mask_prompt=0.2, checkpoint=CheckpointConfig(every_steps=2, keep_last=None))
    correctness = varied_on(VARIED)
    full_lm = fresh_lm(tiny_tokenizer)
    full = train_rl(full_lm, EXAMPLES, config, correctness_fn=correctness, progress=False, checkpoint_dir=str(tmp_path / "full"))
    assert sum(m.groups_resampled for m in full.metrics[2:]) > 0  # re-sampling is part of what resumes
    with pytest.raises(Crash):
        train_rl(fresh_lm(tiny_tokenizer), EXAMPLES, config, correctness_fn=correctness, progress=False,
                 checkpoint_dir=str(tmp_path / "run"), on_step=_crash_at(3))
    resumed_lm = fresh_lm(tiny_tokenizer)
    resumed = train_rl(resumed_lm, EXAMPLES, config, correctness_fn=correctness, progress=False,
                       checkpoint_dir=str(tmp_path / "run"))
    assert resumed.resumed_from == 2 and [m.step for m in resumed.metrics] == [3, 4]
    assert _same_params(params(resumed_lm.model), params(full_lm.model))
    strip = {"seconds"}
    assert [m.model_dump(exclude=strip) for m in resumed.metrics] == [m.model_dump(exclude=strip) for m in full.metrics[2:]]


def test_budget_stops_after_the_step_that_reaches_it_and_survives_resume(tiny_tokenizer, tmp_path):
    # GRPO: exactly B*G = 8 completions per step, so a budget of 20 is reached at step 3 (24 >= 20).
    config = _config(algorithm="grpo", batch_size=2, steps=10, max_generated_completions=20,
                     checkpoint=CheckpointConfig(every_steps=2, keep_last=None))
    correctness = varied_on(VARIED)
    full_lm = fresh_lm(tiny_tokenizer)
    full = train_rl(full_lm, EXAMPLES, config, correctness_fn=correctness, progress=False, checkpoint_dir=str(tmp_path / "full"))
    assert full.budget_reached and [m.step for m in full.metrics] == [1, 2, 3]
    assert [m.completions_generated_total for m in full.metrics] == [8, 16, 24]
    final = latest_checkpoint(tmp_path / "full")
    assert final.name == "step-00000003"  # the stop step is checkpointed even off the every-2 cadence
    assert json.loads((final / "trainer_state.json").read_text())["completions_generated"] == 24

    with pytest.raises(Crash):  # crash after step 2's checkpoint: 16 of the 20 spent
        train_rl(fresh_lm(tiny_tokenizer), EXAMPLES, config, correctness_fn=correctness, progress=False,
                 checkpoint_dir=str(tmp_path / "run"), on_step=_crash_at(2))
    resumed_lm = fresh_lm(tiny_tokenizer)
    resumed = train_rl(resumed_lm, EXAMPLES, config, correctness_fn=correctness, progress=False,
                       checkpoint_dir=str(tmp_path / "run"))
    assert resumed.budget_reached and [m.step for m in resumed.metrics] == [3]
    assert resumed.metrics[0].completions_generated_total == 24
    assert _same_params(params(resumed_lm.model), params(full_lm.model))
    # Starting again from the finished run's checkpoint runs nothing more.
    again = train_rl(fresh_lm(tiny_tokenizer), EXAMPLES, config, correctness_fn=correctness, progress=False,
                     checkpoint_dir=str(tmp_path / "full"))
    assert again.resumed_from == 3 and again.budget_reached and again.metrics == []


def test_without_a_budget_every_step_runs(tiny_lm):
    result = train_rl(tiny_lm, EXAMPLES, _config(algorithm="grpo", batch_size=2, steps=3), correctness_fn=varied_on(VARIED),
                      progress=False)
    assert not result.budget_reached and len(result.metrics) == 3
