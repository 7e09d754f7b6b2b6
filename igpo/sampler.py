"""Semi-autoregressive low-confidence remasking sampler with inpainting (SPEC section 2; LLaDA, Nie et al. 2025,
Appendix B; IGPO section 3.2 for inpainting).

The completion starts as L masks split into K = L / block_length blocks. Each block gets steps / K
iterations; each iteration predicts the block's masked positions (Gumbel-max at temperature T, argmax at
T = 0), scores them (probability of the chosen token, or a uniform draw for ``random`` remasking) and
commits the most confident ones, the per-iteration counts spread evenly over the block's iterations.

Inpainting: ``hint_mask`` marks completion positions pre-filled with ``hint_ids``. They are never masked,
never changed, and never counted in the transfer schedule, so they condition the rest of the completion.

Unlike the reference code, the whole batch of B*G sequences moves together (per-sample commit counts are
handled by ranking, not a Python loop), logits are computed for the current block only, in float32, and
all randomness comes from the caller's ``torch.Generator``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from igpo.config_base import StrictConfig
from igpo.models import DiffusionLM


class SamplerConfig(StrictConfig):
    """Generation settings (reference run: L = 256, block 32, steps = L / 2, T = 1.2 for rollouts)."""

    gen_length: int = Field(256, ge=1, description="Completion length L in tokens.")
    block_length: int = Field(32, ge=1, description="Semi-autoregressive block length; must divide gen_length.")
    steps: int = Field(128, ge=1, description="Total denoising iterations; a multiple of the number of blocks.")
    temperature: float = Field(0.0, ge=0.0, description="Gumbel-max sampling temperature; 0 is greedy.")
    cfg_scale: float = Field(0.0, ge=0.0, description="Classifier-free guidance scale; 0 disables it.")
    remasking: Literal["low_confidence", "random"] = Field(
        "low_confidence", description="Which masked positions to commit first: most confident, or random."
    )

    @model_validator(mode="after")
    def _check_schedule(self) -> SamplerConfig:
        if self.gen_length % self.block_length:
            raise ValueError(
                f"gen_length ({self.gen_length}) must be a multiple of block_length ({self.block_length})"
            )
        num_blocks = self.gen_length // self.block_length
        if self.steps % num_blocks:
            raise ValueError(f"steps ({self.steps}) must be a multiple of the number of blocks ({num_blocks})")
        return self

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.num_blocks


def num_transfer_tokens(mask_counts: torch.Tensor, steps: int) -> torch.Tensor:
    """Tokens to commit at each of ``steps`` iterations, spread evenly; the remainder goes to the first ones.

    mask_counts: [N] masked positions per sequence in the block. Returns [N, steps], rows summing to counts.
    """
    base = mask_counts // steps  # [N]
    remainder = mask_counts % steps  # [N]
    step_index = torch.arange(steps, device=mask_counts.device)  # [steps]
    return base[:, None] + (step_index[None, :] < remainder[:, None]).long()


def gumbel_argmax(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Sample ``softmax(logits / T)`` by the Gumbel-max trick; argmax at T = 0. logits: [..., V] float32."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    tiny = torch.finfo(logits.dtype).tiny
    gumbel = -torch.log(-torch.log(uniform.clamp(tiny, 1.0 - 1e-7)))
    return (logits / temperature + gumbel).argmax(dim=-1)


def commit_mask(confidence: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the ``counts[n]`` highest-confidence entries of each row. confidence: [N, M], counts: [N]."""
    order = torch.argsort(confidence, dim=1, descending=True, stable=True)  # [N, M]
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ranks < counts[:, None]


@torch.no_grad()
def generate(
    model: DiffusionLM,
    prompt_ids: torch.Tensor,  # [N, P] left-padded prompts, N = B*G
    config: SamplerConfig,
    generator: torch.Generator | None = None,
    prompt_mask: torch.Tensor | None = None,  # [N, P] 1 = real prompt token, 0 = left padding
    hint_ids: torch.Tensor | None = None,  # [N, L] tokens of pre-filled positions
    hint_mask: torch.Tensor | None = None,  # [N, L] bool, True = pre-filled (inpainting hint)
    trace: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Denoise L masks after each prompt; returns the completions [N, L].

    ``trace``, if given, receives the [N, L] boolean mask of positions committed at each iteration
    (for tests and diagnostics).
    """
    n, p = prompt_ids.shape
    mask_id = model.tokens.mask_id
    device = prompt_ids.device
    x = torch.cat([prompt_ids, torch.full((n, config.gen_length), mask_id, dtype=prompt_ids.dtype, device=device)], 1)
    if hint_mask is not None:
        assert hint_ids is not None, "hint_mask needs hint_ids"
        x[:, p:] = torch.where(hint_mask, hint_ids, x[:, p:])
    attention_mask = None
    if prompt_mask is not None:
        attention_mask = torch.cat([prompt_mask.long(), torch.ones(n, config.gen_length, dtype=torch.long, device=device)], 1)

    for k in range(config.num_blocks):
        lo, hi = p + k * config.block_length, p + (k + 1) * config.block_length
        positions = torch.arange(lo, hi, device=device)  # [block]
        # Hints are not masks, so they never enter the schedule.
        schedule = num_transfer_tokens((x[:, lo:hi] == mask_id).sum(1), config.steps_per_block)  # [N, S]
        for s in range(config.steps_per_block):
            masked = x[:, lo:hi] == mask_id  # [N, block]
            if not masked.any():
                break
            logits = _guided_logits(model, x, attention_mask, positions, p, config.cfg_scale)  # [N, block, V]
            x0 = gumbel_argmax(logits, config.temperature, generator)  # [N, block]
            if config.remasking == "low_confidence":
                probs = torch.softmax(logits, dim=-1)
                confidence = probs.gather(-1, x0[..., None]).squeeze(-1)  # [N, block]
            else:
                confidence = torch.rand(x0.shape, generator=generator, device=device)
            confidence = torch.where(masked, confidence, torch.full_like(confidence, -torch.inf))
            transfer = commit_mask(confidence, schedule[:, s]) & masked  # [N, block]
            x[:, lo:hi] = torch.where(transfer, x0, x[:, lo:hi])
            if trace is not None:
                step_mask = torch.zeros(n, config.gen_length, dtype=torch.bool, device=device)
                step_mask[:, lo - p : hi - p] = transfer
                trace.append(step_mask)
    return x[:, p:]


def _guided_logits(
    model: DiffusionLM,
    x: torch.Tensor,  # [N, P+L]
    attention_mask: torch.Tensor | None,
    positions: torch.Tensor,  # [block]
    prompt_length: int,
    cfg_scale: float,
) -> torch.Tensor:
    """Block logits in float32, with classifier-free guidance against a fully masked prompt if cfg_scale > 0,
    and the mask token excluded from the candidates."""
    logits = model.logits(x, attention_mask, positions).float()  # [N, block, V]
    if cfg_scale > 0:
        unconditional = x.clone()
        unconditional[:, :prompt_length] = model.tokens.mask_id
        uncond_logits = model.logits(unconditional, attention_mask, positions).float()
        logits = uncond_logits + (cfg_scale + 1) * (logits - uncond_logits)
    # A committed position must hold a real token: [MASK] itself is never a prediction.
    logits[..., model.tokens.mask_id] = -torch.inf
    return logits
