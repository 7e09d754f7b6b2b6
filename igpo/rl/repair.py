"""Repairing zero-advantage groups before the advantages are taken (SPEC section 1, steps 1-4).

A repair strategy edits a scored ``RolloutBatch`` in place and returns what it did. ``"igpo"``
inpaints the all-wrong groups; ``"grpo"`` leaves every group as sampled; ``"dynamic"`` (DAPO's dynamic
sampling) replaces zero-variance groups by groups of fresh prompts that have reward variance, drawn
through the trainer's ``resample`` callable. The trainer looks the strategy up by ``config.algorithm`` in
``REPAIR_STRATEGIES``; every strategy has the same signature (``resample`` is keyword-only and optional:
only dynamic sampling uses it). A strategy keeps the batch shape (B*G rows): the update's gradient
accumulation is fixed at start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from igpo.models import DiffusionLM
from igpo.prompting import decode_completions
from igpo.rl.advantages import zero_advantage_groups
from igpo.rl.config import RLConfig
from igpo.rl.hints import plan_hints, sample_hints
from igpo.rl.rewards import Rewards, all_wrong_groups
from igpo.rl.rollout import RolloutBatch, replace_groups
from igpo.sampler import generate

Scorer = Callable[[Sequence[str], dict[str, list]], Rewards]
Resampler = Callable[[int], RolloutBatch]  # num_prompts -> a scored batch of fresh prompts x G completions


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
    # Dynamic sampling.
    resample_rounds: int = 0  # re-sampling rounds run
    prompts_resampled: int = 0  # fresh prompts drawn and rolled out (G completions each)
    groups_resampled: int = 0  # zero-variance groups replaced by a fresh group with variance
    resampled_completions: int = 0  # completions of those fresh prompts
    groups_unfilled: int = 0  # zero-variance groups still in the batch after the last round (kept as they are)

    @property
    def completions_generated(self) -> int:
        """Completions this phase sampled: inpainting attempts plus re-sampled rollouts."""
        return self.attempts + self.resampled_completions


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


def no_repair(
    policy: DiffusionLM, batch: RolloutBatch, config: RLConfig, scorer: Scorer, generators, *, resample: Resampler | None = None
) -> RepairStats:
    """GRPO: groups stay as sampled (all-wrong groups are still counted)."""
    return RepairStats(all_wrong_groups=int(all_wrong_groups(batch.rewards.correctness, batch.group_size).sum()))


def inpaint_all_wrong_groups(
    policy: DiffusionLM,
    batch: RolloutBatch,
    config: RLConfig,
    scorer: Scorer,
    generators: dict[str, torch.Generator],
    *,
    resample: Resampler | None = None,
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


def resample_zero_variance_groups(
    policy: DiffusionLM,
    batch: RolloutBatch,
    config: RLConfig,
    scorer: Scorer,
    generators: dict[str, torch.Generator],
    *,
    resample: Resampler | None = None,
) -> RepairStats:
    """Dynamic sampling (DAPO, Yu et al. 2025, section 3.2): a group whose total rewards are all equal has
    zero advantages (no gradient). Each round draws ``oversample_factor`` fresh prompts per such group
    (``resample``: G completions each, scored) and copies fresh groups that have variance over the flat ones,
    in index order; surplus fresh groups are dropped. After ``max_resample_rounds`` rounds the groups still
    flat are kept, so the batch keeps its B*G rows."""
    if resample is None:
        raise ValueError("dynamic sampling needs a resample callable (the trainer builds one)")
    G = batch.group_size
    stats = RepairStats(all_wrong_groups=int(all_wrong_groups(batch.rewards.correctness, G).sum()))
    flat = zero_advantage_groups(batch.rewards.total, G).nonzero().flatten().tolist()  # [<= B] group indices
    for _ in range(config.max_resample_rounds):
        if not flat:
            break
        fresh = resample(len(flat) * config.oversample_factor)  # [B'*G] scored
        varied = (~zero_advantage_groups(fresh.rewards.total, G)).nonzero().flatten().tolist()
        count = min(len(flat), len(varied))
        if count:
            replace_groups(batch, flat[:count], fresh, varied[:count], policy.tokens.pad_id)
        flat = flat[count:]
        stats.resample_rounds += 1
        stats.prompts_resampled += fresh.num_groups
        stats.resampled_completions += len(fresh.texts)
        stats.groups_resampled += count
    stats.groups_unfilled = len(flat)
    return stats


RepairStrategy = Callable[..., RepairStats]  # (policy, batch, config, scorer, generators, *, resample=None)
REPAIR_STRATEGIES: dict[str, RepairStrategy] = {
    "igpo": inpaint_all_wrong_groups,
    "grpo": no_repair,
    "dynamic": resample_zero_variance_groups,
}
