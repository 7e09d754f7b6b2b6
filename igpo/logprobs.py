"""Per-token log-probabilities and entropies of a completion (SPEC section 2; d1 / diffu-GRPO estimator,
Zhao et al. 2025, section 3.2).

One forward pass with the whole completion masked and each real prompt token masked with probability
``p_mask_prompt`` (d1: 0.15, reference IGPO run: 0); the log-softmax at each completion position gives
``log pi(o^k | q)``. The same distribution gives the policy's predictive entropy per position, which the
IGPO entropy filter reads at hint positions (those positions are masked here, as the paper asks).

Memory: at V = 126k a [N, L, V] float32 tensor is about 1 GB (N = 8, L = 256). The log-probs come from the
fused cross-entropy (no separate log-softmax copy), and the entropy is computed only when asked for (the
old-policy pass; not the gradient or reference passes), without gradient, one row at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from igpo.models import DiffusionLM


def mask_prompt(
    prompt_ids: torch.Tensor,  # [N, P]
    p_mask_prompt: float,
    mask_id: int,
    generator: torch.Generator | None,
    prompt_mask: torch.Tensor | None = None,  # [N, P] 1 = real token
) -> torch.Tensor:
    """Replace each real prompt token by ``mask_id`` with probability ``p_mask_prompt`` (padding never)."""
    if p_mask_prompt == 0:
        return prompt_ids
    draws = torch.rand(prompt_ids.shape, generator=generator, device=prompt_ids.device)  # [N, P]
    masked = draws < p_mask_prompt
    if prompt_mask is not None:
        masked &= prompt_mask.bool()
    return torch.where(masked, torch.full_like(prompt_ids, mask_id), prompt_ids)


def completion_logprobs(
    model: DiffusionLM,
    prompt_ids: torch.Tensor,  # [N, P]
    completion_ids: torch.Tensor,  # [N, L]
    prompt_mask: torch.Tensor | None = None,  # [N, P]
    p_mask_prompt: float = 0.0,
    generator: torch.Generator | None = None,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Returns (log_probs [N, L], entropy [N, L] or None) of ``completion_ids`` under the model, completion fully
    masked; the entropy only ``with_entropy`` (and never with gradient).

    Gradients flow into the log-probs when called outside ``torch.no_grad``. Pass ``p_mask_prompt=0`` with an
    already masked prompt (``mask_prompt``) to reuse one prompt mask for old, reference and current policy.
    """
    p = prompt_ids.shape[1]
    n, length = completion_ids.shape
    noisy_prompt = mask_prompt(prompt_ids, p_mask_prompt, model.tokens.mask_id, generator, prompt_mask)
    masked_completion = torch.full_like(completion_ids, model.tokens.mask_id)
    x = torch.cat([noisy_prompt, masked_completion], dim=1)  # [N, P+L]
    attention_mask = None
    if prompt_mask is not None:
        attention_mask = torch.cat([prompt_mask.long(), torch.ones_like(completion_ids)], dim=1)
    positions = torch.arange(p, p + length, device=prompt_ids.device)
    logits = model.logits(x, attention_mask, positions)  # [N, L, V]
    vocab = logits.shape[-1]
    # log pi(o^k | q) = -CE: the fused kernel keeps no log-softmax copy of [N, L, V] for the backward.
    log_probs = -F.cross_entropy(
        logits.reshape(n * length, vocab).float(), completion_ids.reshape(-1), reduction="none"
    ).view(n, length)  # [N, L]
    return log_probs, (entropy_of(logits) if with_entropy else None)


@torch.no_grad()
def entropy_of(logits: torch.Tensor) -> torch.Tensor:
    """Predictive entropy [N, L] of logits [N, L, V], in float32, one row at a time (a [L, V] temporary)."""
    out = torch.empty(logits.shape[:2], dtype=torch.float32, device=logits.device)
    for row in range(logits.shape[0]):
        log_p = torch.log_softmax(logits[row].float(), dim=-1)  # [L, V]
        out[row] = -(log_p.exp() * log_p).sum(-1)
    return out
