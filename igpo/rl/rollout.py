"""Rollouts: G completions per prompt of this rank's shard, decoded and scored (SPEC section 1), and the
group surgery of dynamic sampling (which prompts to draw next, and copying a fresh group over a flat one)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from igpo.distributed import stream_seed
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



RESAMPLE_STREAM = 4  # stream id of the replacement-prompt order (igpo.distributed.stream_seed); 1-3 are the trainer's


def fresh_prompt_order(
    num_examples: int, exclude: Collection[int], seed: int, step: int, rank_index: int, world: int
) -> list[int]:
    """The example indices this rank draws, in order, when dynamic sampling needs fresh prompts at ``step``.

    A random permutation of the dataset that is a pure function of (seed, step) (no generator state to
    checkpoint, the same on every rank), without the step's global batch ``exclude``, dealt round-robin over
    the ranks so that no two ranks draw the same prompt. When the exclusion leaves fewer prompts than ranks
    the whole permutation is used (and, with fewer examples than ranks, shared). A caller that needs more than
    the list holds cycles through it.
    """
    generator = torch.Generator().manual_seed(stream_seed(seed, RESAMPLE_STREAM, 0) * 100_003 + step)
    permutation = torch.randperm(num_examples, generator=generator).tolist()
    excluded = set(exclude)
    candidates = [i for i in permutation if i not in excluded]
    if len(candidates) < world:
        candidates = permutation
    return candidates[rank_index::world] or permutation


def _left_pad(x: torch.Tensor, width: int, value: int) -> torch.Tensor:
    """[N, P] -> [N, width] with ``value`` added on the left (prompts are left-padded)."""
    return torch.nn.functional.pad(x, (width - x.shape[1], 0), value=value)


def replace_groups(
    batch: RolloutBatch, targets: Sequence[int], fresh: RolloutBatch, sources: Sequence[int], pad_id: int
) -> None:
    """Copy group ``sources[k]`` of ``fresh`` over group ``targets[k]`` of ``batch``, in place: prompts,
    completions, hint masks, texts, dataset columns and rewards. Both batches' prompts are left-padded to the
    wider of the two first (padding is masked, so it does not change what the model sees)."""
    assert len(targets) == len(sources) and fresh.group_size == batch.group_size
    assert batch.rewards is not None and fresh.rewards is not None
    width = max(batch.prompt_ids.shape[1], fresh.prompt_ids.shape[1])
    batch.prompt_ids, batch.prompt_mask = _left_pad(batch.prompt_ids, width, pad_id), _left_pad(batch.prompt_mask, width, 0)
    fresh_ids, fresh_mask = _left_pad(fresh.prompt_ids, width, pad_id), _left_pad(fresh.prompt_mask, width, 0)  # [B'*G, P]
    for target, source in zip(targets, sources):
        dst, src = batch.group_rows(target), fresh.group_rows(source)
        batch.prompt_ids[dst], batch.prompt_mask[dst] = fresh_ids[src], fresh_mask[src]
        batch.completion_ids[dst], batch.hint_mask[dst] = fresh.completion_ids[src], fresh.hint_mask[src]
        batch.texts[dst] = fresh.texts[src]
        for key, values in batch.columns.items():
            values[dst] = fresh.columns[key][src]
        batch.rewards.correctness[dst] = fresh.rewards.correctness[src]
        batch.rewards.total[dst] = fresh.rewards.total[src]
