"""Rollouts: G completions per prompt of this rank's shard, decoded and scored (SPEC section 1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from igpo.models import DiffusionLM
from igpo.prompting import decode_completions, encode_prompts
from igpo.rl.rewards import Rewards
from igpo.sampler import SamplerConfig, generate


@dataclass
class RolloutBatch:
    """B prompts x G completions of one rank, grouped consecutively (rows b*G .. b*G+G-1 share prompt b)."""

    prompt_ids: torch.Tensor  # [B*G, P] left-padded
    prompt_mask: torch.Tensor  # [B*G, P] 1 = real token
    completion_ids: torch.Tensor  # [B*G, L]
    hint_mask: torch.Tensor  # [B*G, L] bool, True = token came from y* (inpainting), not from the policy
    texts: list[str]  # B*G decoded completions (up to the first stop token)
    columns: dict[str, list[Any]]  # dataset columns, one value per completion
    group_size: int
    rewards: Rewards | None = field(default=None)

    @property
    def num_groups(self) -> int:
        return self.completion_ids.shape[0] // self.group_size

    def group_rows(self, group: int) -> slice:
        return slice(group * self.group_size, (group + 1) * self.group_size)


def generate_rollouts(
    policy: DiffusionLM,
    rows: Sequence[Mapping[str, Any]],
    group_size: int,
    sampler: SamplerConfig,
    generator: torch.Generator,
    instruction: str = "",
) -> RolloutBatch:
    """Generate ``group_size`` completions for each row's ``question`` in one batched sampler call."""
    questions = [str(row["question"]) for row in rows]
    prompt_ids, prompt_mask = encode_prompts(
        policy.tokenizer, questions, policy.tokens.pad_id, instruction, device=policy.device
    )  # [B, P]
    prompt_ids = prompt_ids.repeat_interleave(group_size, dim=0)  # [B*G, P]
    prompt_mask = prompt_mask.repeat_interleave(group_size, dim=0)
    completion_ids = generate(policy, prompt_ids, sampler, generator, prompt_mask=prompt_mask)  # [B*G, L]
    columns = {key: [row[key] for row in rows for _ in range(group_size)] for key in rows[0]}
    return RolloutBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completion_ids,
        hint_mask=torch.zeros_like(completion_ids, dtype=torch.bool),
        texts=decode_completions(policy.tokenizer, completion_ids, policy.tokens.stop_ids),
        columns=columns,
        group_size=group_size,
    )

