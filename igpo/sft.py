"""Length-aligned masked-diffusion SFT (SPEC section 1, "Length-aligned SFT"; section 2 for the loss).

Each (prompt, response) pair becomes ``prompt + response + eos`` with the response right-padded by eos up
to the batch width (or to ``pad_response_to``), as in LLaDA's SFT: the model learns to fill the tail of a
completion with eos. Responses over the token budget are dropped or truncated per config and counted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import torch
from pydantic import Field
from tqdm.auto import tqdm

from igpo.config_base import StrictConfig
from igpo.diffusion import sft_loss
from igpo.models import DiffusionLM
from igpo.prompting import format_prompt

log = logging.getLogger(__name__)


class SFTConfig(StrictConfig):
    """Masked-diffusion SFT settings."""

    steps: int = Field(200, ge=1, description="Optimizer steps.")
    batch_size: int = Field(16, ge=1, description="Sequences per optimizer step.")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(1.0, gt=0, description="Max global gradient norm.")
    max_response_tokens: int = Field(256, ge=1, description="Token budget of a response including its eos.")
    over_budget: Literal["drop", "truncate"] = Field(
        "drop", description="What to do with a response over the budget: drop the pair or truncate it."
    )
    pad_response_to: int | None = Field(
        None, ge=1, description="Pad every response with eos to this length (e.g. the RL gen_length); None = batch max."
    )
    instruction: str = Field("", description="Text put before each question inside the prompt.")
    eps: float = Field(1e-3, gt=0, lt=1, description="Lower bound of the masking rate (SPEC section 2).")
    seed: int = Field(0, description="Seed of the batch order and the masking draws.")


@dataclass
class EncodedPairs:
    """Token ids of SFT pairs and what happened to the ones over budget."""

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    dropped: int = 0
    truncated: int = 0


def encode_pairs(
    tokenizer: Any, eos_id: int, prompts: Sequence[str], responses: Sequence[str], config: SFTConfig
) -> EncodedPairs:
    """Tokenise (question, response) pairs; the response gets a closing eos and the budget is enforced."""
    out = EncodedPairs([], [])
    for question, response in zip(prompts, responses, strict=True):
        prompt = tokenizer(format_prompt(tokenizer, question, config.instruction), add_special_tokens=False).input_ids
        resp = tokenizer(response, add_special_tokens=False).input_ids + [eos_id]
        if len(resp) > config.max_response_tokens:
            if config.over_budget == "drop":
                out.dropped += 1
                continue
            resp = resp[: config.max_response_tokens - 1] + [eos_id]
            out.truncated += 1
        out.prompt_ids.append(prompt)
        out.response_ids.append(resp)
    if out.dropped or out.truncated:
        log.info("SFT budget %d tokens: %d pairs dropped, %d truncated", config.max_response_tokens, out.dropped, out.truncated)
    if not out.prompt_ids:
        raise ValueError(f"no SFT pair fits the budget of {config.max_response_tokens} response tokens")
    return out


def collate(
    pairs: EncodedPairs, indices: Sequence[int], eos_id: int, pad_id: int, pad_response_to: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch of pairs as (input_ids [N, T], response_mask [N, T]).

    Prompts are left-padded with ``pad_id`` to a common width so every response starts at the same column;
    responses are right-padded with eos, which counts as response (LLaDA). Left padding is masked
    neither in the input nor in the loss, matching how the sampler sees padded prompts.
    """
    prompts = [pairs.prompt_ids[i] for i in indices]
    responses = [pairs.response_ids[i] for i in indices]
    p = max(len(x) for x in prompts)
    r = max(pad_response_to or 0, max(len(x) for x in responses))
    ids = torch.full((len(indices), p + r), eos_id, dtype=torch.long)
    response_mask = torch.zeros((len(indices), p + r), dtype=torch.bool)
    for row, (prompt, response) in enumerate(zip(prompts, responses)):
        ids[row, : p - len(prompt)] = pad_id
        ids[row, p - len(prompt) : p] = torch.tensor(prompt)
        ids[row, p : p + len(response)] = torch.tensor(response)
        response_mask[row, p:] = True
    return ids, response_mask


@dataclass
class SFTResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens_per_second: float = 0.0
    dropped: int = 0
    truncated: int = 0


def train_sft(
    model: DiffusionLM, prompts: Sequence[str], responses: Sequence[str], config: SFTConfig, progress: bool = True
) -> SFTResult:
    """Fine-tune ``model`` in place with the masked-diffusion SFT loss; one process, one device."""
    tokens = model.tokens
    pairs = encode_pairs(model.tokenizer, tokens.eos_id, prompts, responses, config)
    order_generator = torch.Generator().manual_seed(config.seed)  # batch order, on CPU
    mask_generator = torch.Generator(device=model.device).manual_seed(config.seed + 1)  # masking draws
    optimizer = torch.optim.AdamW(
        [p for p in model.model.parameters() if p.requires_grad], lr=config.learning_rate, weight_decay=config.weight_decay
    )
    model.model.train()
    result = SFTResult(dropped=pairs.dropped, truncated=pairs.truncated)
    seen_tokens, start = 0, time.perf_counter()
    bar = tqdm(range(config.steps), desc="sft", disable=not progress)
    for _ in bar:
        batch = torch.randint(len(pairs.prompt_ids), (config.batch_size,), generator=order_generator).tolist()
        input_ids, response_mask = collate(pairs, batch, tokens.eos_id, tokens.pad_id, config.pad_response_to)
        input_ids, response_mask = input_ids.to(model.device), response_mask.to(model.device)
        loss = sft_loss(model, input_ids, response_mask, mask_generator, config.eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.model.parameters(), config.grad_clip)
        optimizer.step()
        seen_tokens += input_ids.numel()
        result.losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.model.eval()
    result.seconds = time.perf_counter() - start
    result.tokens_per_second = seen_tokens / max(result.seconds, 1e-9)
    return result
