"""Forward (masking) process and the masked-diffusion SFT loss (SPEC section 2; LLaDA, Nie et al. 2025, eq. 5).

Per sample ``t ~ U(0, 1)`` is squashed to ``p = (1 - eps) * t + eps``; every response token is replaced by
``[MASK]`` with probability p; prompt tokens are never masked. The loss is the cross-entropy on masked
positions weighted by ``1 / p``, summed per sample and divided by that sample's response length (EOS
padding is part of the response, as in LLaDA's SFT), then averaged over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from igpo.models import DiffusionLM


def forward_process(
    input_ids: torch.Tensor,  # [N, T]
    response_mask: torch.Tensor,  # [N, T] bool, True on response tokens (eos padding included)
    mask_id: int,
    generator: torch.Generator,
    eps: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask response tokens at a per-sample rate. Returns (noisy_ids, masked [N, T] bool, p_mask [N])."""
    n = input_ids.shape[0]
    t = torch.rand(n, generator=generator, device=input_ids.device)  # [N]
    p_mask = (1 - eps) * t + eps  # [N]
    draws = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)  # [N, T]
    masked = (draws < p_mask[:, None]) & response_mask
    noisy = torch.where(masked, torch.full_like(input_ids, mask_id), input_ids)
    return noisy, masked, p_mask


def sft_loss(
    model: DiffusionLM,
    input_ids: torch.Tensor,  # [N, T] prompt + response (+ eos padding), right-padded with eos
    response_mask: torch.Tensor,  # [N, T] bool
    generator: torch.Generator,
    eps: float = 1e-3,
    attention_mask: torch.Tensor | None = None,  # [N, T], 0 = left padding of the prompt (not attended to)
) -> torch.Tensor:
    """Masked-diffusion SFT loss of one batch (scalar), as in LLaDA's SFT recipe."""
    noisy, masked, p_mask = forward_process(input_ids, response_mask, model.tokens.mask_id, generator, eps)
    logits = model.logits(noisy, attention_mask)  # [N, T, V]
    token_ce = F.cross_entropy(logits[masked].float(), input_ids[masked], reduction="none")  # [M]
    response_lengths = response_mask.sum(dim=1).clamp_min(1)  # [N]
    weights = 1.0 / (p_mask[:, None] * response_lengths[:, None]).expand_as(masked)[masked]  # [M]
    return (token_ce * weights).sum() / input_ids.shape[0]
