"""Length-aligned masked-diffusion SFT (SPEC section 1, "Length-aligned SFT"; section 2 for the loss).

Each (prompt, response) pair becomes ``prompt + response + eos`` with the response right-padded by eos up
to the batch width (or to ``pad_response_to``), as in LLaDA's SFT: the model learns to fill the tail of a
completion with eos. Responses over the token budget are dropped or truncated per config and counted.

Batches are consecutive slices of a fresh random permutation of the pairs per epoch (a pure function of
seed and step, so a resumed run sees the same batches); under DeepSpeed each rank trains on its share
of every batch. LoRA (peft), checkpoints with exact resume and DeepSpeed ZeRO-2/3 come from
``igpo.distributed`` and ``igpo.checkpoint``, shared with the RL trainer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from igpo.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from igpo.diffusion import sft_loss
from igpo.distributed import (
    TrainEngine,
    all_reduce_sum,
    apply_lora,
    batch_indices,
    is_main_process,
    rank,
    rank_shard,
    stream_seed,
    world_size,
)
from igpo.models import DiffusionLM
from igpo.models.recompute import enable_recompute
from igpo.progress import ProgressReporter
from igpo.prompting import format_prompt
from igpo.train_config import TrainingRunConfig

log = logging.getLogger(__name__)


class SFTConfig(TrainingRunConfig):
    """Masked-diffusion SFT settings."""

    steps: int = Field(200, ge=1, description="Optimizer steps.")
    batch_size: int = Field(16, ge=1, description="Sequences per optimizer step, over all ranks.")
    micro_batch_size: int | None = Field(
        None, ge=1, description="Sequences per forward/backward on one rank (gradient accumulation); None = all at once."
    )
    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(1.0, gt=0, description="Max global gradient norm.")
    warmup_steps: int = Field(0, ge=0, description="Linear learning-rate warm-up over this many steps, then constant.")
    max_response_tokens: int = Field(256, ge=1, description="Token budget of a response including its eos.")
    over_budget: Literal["drop", "truncate"] = Field(
        "drop", description="What to do with a response over the budget: drop the pair or truncate it."
    )
    pad_response_to: int | None = Field(
        None, ge=1, description="Pad every response with eos to this length (e.g. the RL gen_length); None = batch max."
    )
    instruction: str = Field("", description="Text put before each question inside the prompt.")
    eps: float = Field(1e-3, gt=0, lt=1, description="Lower bound of the masking rate (SPEC section 2).")
    seed: int = Field(0, description="Seed of the batch order and the masking draws (offset per rank).")
    log_every_steps: int = Field(
        100, ge=1, description="Steps between two progress log lines (progress 'log', or 'auto' without a terminal)."
    )


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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch of pairs as (input_ids [N, T], response_mask [N, T], attention_mask [N, T]).

    Prompts are left-padded with ``pad_id`` to a common width so every response starts at the same column;
    responses are right-padded with eos, which counts as response (LLaDA). The left padding is masked out of
    attention (``attention_mask`` 0), as the sampler and the RL log-probs mask it, and is never in the loss.
    """
    prompts = [pairs.prompt_ids[i] for i in indices]
    responses = [pairs.response_ids[i] for i in indices]
    p = max(len(x) for x in prompts)
    r = max(pad_response_to or 0, max(len(x) for x in responses))
    ids = torch.full((len(indices), p + r), eos_id, dtype=torch.long)
    response_mask = torch.zeros((len(indices), p + r), dtype=torch.bool)
    attention_mask = torch.ones((len(indices), p + r), dtype=torch.long)
    for row, (prompt, response) in enumerate(zip(prompts, responses)):
        ids[row, : p - len(prompt)] = pad_id
        attention_mask[row, : p - len(prompt)] = 0
        ids[row, p - len(prompt) : p] = torch.tensor(prompt)
        ids[row, p : p + len(response)] = torch.tensor(response)
        response_mask[row, p:] = True
    return ids, response_mask, attention_mask


class SFTStepMetrics(BaseModel):
    """What one SFT step did (loss averaged over ranks)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int = Field(description="Optimizer steps done so far.")
    loss: float = Field(description="Masked-diffusion loss of the step's batch.")
    grad_norm: float = Field(description="Global gradient norm before clipping.")
    learning_rate: float = Field(description="Learning rate after the step.")
    tokens: int = Field(description="Tokens (prompt + response + padding) in the step's batch, over ranks.")
    seconds: float = Field(description="Wall-clock seconds of the step.")
    skipped_updates: int = Field(0, description="Updates skipped so far for a non-finite loss or gradient.")


@dataclass
class SFTResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens_per_second: float = 0.0
    dropped: int = 0
    truncated: int = 0
    resumed_from: int | None = None
    skipped_updates: int = 0


def train_sft(
    model: DiffusionLM,
    prompts: Sequence[str],
    responses: Sequence[str],
    config: SFTConfig,
    progress: bool = True,
    *,
    checkpoint_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    on_step: Callable[[int, SFTStepMetrics], None] | None = None,
) -> SFTResult:
    """Fine-tune ``model`` in place with the masked-diffusion SFT loss, in one process or, under
    ``torchrun`` with ``deepspeed_config``, on every rank (each rank takes its share of every batch).

    With ``checkpoint_dir`` a checkpoint is written every ``config.checkpoint.every_steps`` steps and the
    run resumes from the latest complete one. With LoRA and ``lora.merge_on_save`` (the default) the
    adapters are merged at the end, so ``model.model`` is a plain model again; otherwise it is the peft
    model. ``output_dir`` receives the final model (save_pretrained). ``on_step`` runs on rank 0.
    Progress is reported on rank 0 as ``config.progress`` says (``igpo.progress``); ``progress=False`` silences it.
    """
    tokens = model.tokens
    pairs = encode_pairs(model.tokenizer, tokens.eos_id, prompts, responses, config)
    world = world_size()
    if config.batch_size % world:
        raise ValueError(f"batch_size ({config.batch_size}) must be a multiple of the number of ranks ({world})")
    local = config.batch_size // world
    micro = config.micro_batch_size or local
    if local % micro:
        raise ValueError(f"micro_batch_size ({micro}) must divide the {local} sequences each rank trains on per step")
    if config.gradient_checkpointing:
        enable_recompute(model.model)
    if config.lora is not None:
        model.model = apply_lora(model.model, config.lora)
    engine = TrainEngine.from_config(model.model, config, local // micro, micro)
    policy = dataclasses.replace(model, model=engine.forward_model)
    device = policy.device
    generators = {"mask": torch.Generator(device=device).manual_seed(stream_seed(config.seed, 1))}
    result = SFTResult(dropped=pairs.dropped, truncated=pairs.truncated)
    start = 0
    if checkpoint_dir and config.checkpoint.resume and (latest := latest_checkpoint(checkpoint_dir)) is not None:
        state = load_checkpoint(latest, engine, generators)
        start = result.resumed_from = state["step"]
        engine.restore_nonfinite_state(state)
    engine.module.train()
    seen_tokens, began = 0, time.perf_counter()
    reporter = ProgressReporter(
        config.steps, "sft", mode=config.progress if progress and is_main_process() else "off",
        every=config.log_every_steps, initial=start, logger=log,
    )
    for step in range(start, config.steps):
        step_start = time.perf_counter()
        batch = rank_shard(batch_indices(len(pairs.prompt_ids), config.batch_size, step, config.seed), rank(), world)
        step_loss, step_tokens = 0.0, 0
        for lo in range(0, local, micro):
            rows = batch[lo : lo + micro]
            input_ids, response_mask, attention_mask = (
                t.to(device) for t in collate(pairs, rows, tokens.eos_id, tokens.pad_id, config.pad_response_to)
            )
            # sft_loss is a mean over its micro-batch; weight it so the update sees the rank-batch mean.
            loss = sft_loss(policy, input_ids, response_mask, generators["mask"], config.eps, attention_mask)
            loss = loss * (micro / local)
            engine.backward(loss, boundary=lo + micro >= local)
            step_loss += float(loss.detach())
            step_tokens += input_ids.numel()
        totals = all_reduce_sum(torch.tensor([step_loss, step_tokens], dtype=torch.float64, device=device)).tolist()
        metrics = SFTStepMetrics(
            step=step + 1, loss=totals[0] / world, grad_norm=engine.last_grad_norm, learning_rate=engine.learning_rate,
            tokens=int(totals[1]), seconds=time.perf_counter() - step_start, skipped_updates=engine.skipped_updates,
        )
        seen_tokens += int(totals[1])
        result.losses.append(metrics.loss)
        reporter.update(loss=metrics.loss)
        if checkpoint_dir and config.checkpoint.due(step + 1, config.steps):
            save_checkpoint(
                checkpoint_dir, step + 1, engine, generators, {"stage": "sft", **engine.nonfinite_state()},
                config.checkpoint.keep_last, model.tokenizer,
            )
        if on_step is not None and is_main_process():
            on_step(step + 1, metrics)
    reporter.close()
    model.model = engine.finish(output_dir, model.tokenizer)
    result.skipped_updates = engine.skipped_updates
    result.seconds = time.perf_counter() - began
    result.tokens_per_second = seen_tokens / max(result.seconds, 1e-9)
    return result
