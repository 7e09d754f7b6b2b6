"""Repairing zero-advantage groups before the advantages are taken (SPEC section 1, steps 1-4).

A repair strategy edits a scored ``RolloutBatch`` in place and returns what it did. ``"igpo"``
inpaints the all-wrong groups; ``"grpo"`` leaves every group as sampled. The trainer looks the strategy
up by ``config.algorithm`` in ``REPAIR_STRATEGIES``; another mode (e.g. dynamic sampling, which
re-samples zero-variance groups until the batch is full) is one more entry with the same signature.
A strategy keeps the batch shape (B*G rows): the update's gradient accumulation is fixed at start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from igpo.models import DiffusionLM
from igpo.prompting import decode_completions
from igpo.rl.config import RLConfig
from igpo.rl.hints import plan_hints, sample_hints
from igpo.rl.rewards import Rewards, all_wrong_groups
from igpo.rl.rollout import RolloutBatch
from igpo.sampler import generate

Scorer = Callable[[Sequence[str], dict[str, list]], Rewards]


@dataclass
class RepairStats:
    """Counts of one repair phase on one rank."""

    all_wrong_groups: int = 0  # groups that triggered inpainting (all correctness rewards 0)
    groups_without_hints: int = 0  # all-wrong groups whose y* has no eligible chunk (left unchanged)
    attempts: int = 0  # inpainted completions generated
    successes: int = 0  # inpainted completions that are correct
    groups_repaired: int = 0  # groups where at least one completion was replaced
    replaced: int = 0  # completions replaced
    revealed_tokens: int = 0  # hint tokens over all attempts
    trace_tokens: int = 0  # tokens of the (truncated) traces over all attempts


def select_replacements(
    original_correct: Sequence[bool], inpainted_correct: Sequence[bool], lambda_: float
) -> list[tuple[int, int]]:
    """Pairs (original index, inpainted index): wrong originals, in order, replaced by correct inpainted
    completions, at most ``floor(lambda * G)`` of them; none if no inpainted completion is correct."""
    limit = math.floor(lambda_ * len(original_correct) + 1e-9)
    wrong = [i for i, ok in enumerate(original_correct) if not ok]
    right = [j for j, ok in enumerate(inpainted_correct) if ok]
    count = min(limit, len(wrong), len(right))
    return list(zip(wrong[:count], right[:count]))


def no_repair(policy: DiffusionLM, batch: RolloutBatch, config: RLConfig, scorer: Scorer, generators) -> RepairStats:
    """GRPO: groups stay as sampled (all-wrong groups are still counted)."""
    return RepairStats(all_wrong_groups=int(all_wrong_groups(batch.rewards.correctness, batch.group_size).sum()))


def inpaint_all_wrong_groups(
    policy: DiffusionLM,
    batch: RolloutBatch,
    config: RLConfig,
    scorer: Scorer,
    generators: dict[str, torch.Generator],
) -> RepairStats:
    """IGPO: for every all-wrong group draw G hint patterns from its y* (``reasoning`` column), inpaint G
    completions in one batched sampler call, and replace up to floor(lambda*G) wrong originals by correct
    inpainted ones. Replaced rows carry their ``hint_mask`` for the entropy filter."""
    G, L = batch.group_size, config.rollout.gen_length
    wrong = all_wrong_groups(batch.rewards.correctness, G)  # [B]
    stats = RepairStats(all_wrong_groups=int(wrong.sum()))
    groups, hint_ids, hint_mask = [], [], []
    for group in wrong.nonzero().flatten().tolist():
        trace = str(batch.columns["reasoning"][group * G])
        plan = plan_hints(policy.tokenizer, trace, L, config.s_min, config.s_max, generators["hint"])
        if plan is None:
            stats.groups_without_hints += 1
            continue
        draw = sample_hints(plan, G, config.eta_low, config.eta_high, L, policy.tokens.mask_id, generators["hint"])
        groups.append(group)
        hint_ids.append(draw.hint_ids)
        hint_mask.append(draw.hint_mask)
        stats.revealed_tokens += int(draw.hint_mask.sum())
        stats.trace_tokens += G * plan.trace_ids.shape[0]
    if not groups:
        return stats
    rows = torch.cat([torch.arange(g * G, (g + 1) * G) for g in groups])  # [R*G] batch rows of those groups
    device = batch.completion_ids.device
    hint_ids_t, hint_mask_t = torch.cat(hint_ids).to(device), torch.cat(hint_mask).to(device)  # [R*G, L]
    inpainted = generate(
        policy, batch.prompt_ids[rows], config.rollout, generators["sample"],
        prompt_mask=batch.prompt_mask[rows], hint_ids=hint_ids_t, hint_mask=hint_mask_t,
    )  # [R*G, L]
    texts = decode_completions(policy.tokenizer, inpainted, policy.tokens.stop_ids)
    rewards = scorer(texts, {key: [values[r] for r in rows.tolist()] for key, values in batch.columns.items()})
    stats.attempts, stats.successes = len(texts), int(rewards.correct.sum())
    for index, group in enumerate(groups):
        local = slice(index * G, (index + 1) * G)
        originals_correct = batch.rewards.correct[batch.group_rows(group)].tolist()
        pairs = select_replacements(originals_correct, rewards.correct[local].tolist(), config.lambda_)
        for original, new in pairs:
            row, src = group * G + original, index * G + new
            batch.completion_ids[row] = inpainted[src]
            batch.hint_mask[row] = hint_mask_t[src]
            batch.texts[row] = texts[src]
            batch.rewards.correctness[row] = rewards.correctness[src]
            batch.rewards.total[row] = rewards.total[src]
        stats.replaced += len(pairs)
        stats.groups_repaired += bool(pairs)
    return stats


RepairStrategy = Callable[[DiffusionLM, RolloutBatch, RLConfig, Scorer, dict[str, torch.Generator]], RepairStats]
REPAIR_STRATEGIES: dict[str, RepairStrategy] = {"igpo": inpaint_all_wrong_groups, "grpo": no_repair}
