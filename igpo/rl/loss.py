"""The policy-gradient loss of one group batch (SPEC section 2 "Loss"; IGPO section 3.3 for the entropy filter).

Per token ``rho = exp(logp - logp_old)`` and the clipped surrogate ``-min(rho*A, clip(rho, 1-eps_low,
1+eps_high)*A)``, plus ``beta`` times the k3 estimator ``exp(ref-lp) - (ref-lp) - 1`` of KL to the frozen
reference, averaged over the tokens the ``loss_mask`` keeps: real completion tokens (``completion_mask``:
up to and including the first EOS/EOT; the padding after it never counts) minus the hint positions the
entropy filter drops. With ``ratio_level="sequence"`` (GSPO, Zheng et al. 2025) the ratio is
``exp(mean_t(logp - logp_old))`` over the kept tokens of a sequence, the clipped surrogate is taken per
sequence and averaged over sequences; the KL term stays a token average. Dropped hint tokens enter
neither the token average nor the sequence ratio, so they get exactly zero gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch


def completion_mask(completion_ids: torch.Tensor, stop_ids: Sequence[int]) -> torch.Tensor:
    """[N, L] bool: True up to and including the first stop token (all True if there is none)."""
    is_stop = torch.isin(completion_ids, torch.tensor(list(stop_ids), device=completion_ids.device))  # [N, L]
    stops_before = is_stop.long().cumsum(dim=1) - is_stop.long()  # stop tokens strictly before each position
    return stops_before == 0


def entropy_filter(entropy: torch.Tensor, hint_mask: torch.Tensor, tau: float) -> torch.Tensor:
    """[N, L] bool: the hint positions that keep their gradient.

    In each sequence with n > 0 hint positions the ``k = max(1, floor(tau * n))`` of highest policy
    entropy are kept (ties broken by position); the other hint positions are dropped. The at-least-one rule
    holds only for ``tau > 0`` (a short hint still teaches its most uncertain token); ``tau = 0`` keeps no hint
    position at all. entropy, hint_mask: [N, L].
    """
    k = kept_hint_counts(hint_mask, tau)  # [N]
    scores = torch.where(hint_mask, entropy.float(), torch.full_like(entropy, -math.inf, dtype=torch.float))
    order = torch.argsort(scores, dim=1, descending=True, stable=True)  # [N, L]
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return (ranks < k[:, None]) & hint_mask


def kept_hint_counts(hint_mask: torch.Tensor, tau: float) -> torch.Tensor:
    """[N]: how many hint positions of each sequence the entropy filter keeps, ``max(1, floor(tau * n))`` for
    n > 0 hint positions (``floor(tau * n)`` when tau = 0, i.e. none). A count that needs no entropy, so the
    normalisers of an update are known before the pass that computes the entropy. hint_mask: [N, L]."""
    counts = hint_mask.sum(dim=1)  # [N]
    least = 1 if tau > 0 else 0
    return torch.where(counts > 0, torch.clamp(torch.floor(tau * counts.double() + 1e-9).long(), min=least), 0)


def kept_counts(completion_mask: torch.Tensor, hint_mask: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, sequences) the ``loss_mask`` of these sequences keeps, whatever the entropies: the loss
    normalisers of an update. ``hint_mask`` must lie inside ``completion_mask``. Both [N, L]."""
    per_row = (completion_mask & ~hint_mask).sum(dim=1) + kept_hint_counts(hint_mask, tau)  # [N]
    return per_row.sum(), (per_row > 0).sum()


def loss_mask(completion_mask: torch.Tensor, hint_mask: torch.Tensor, kept_hints: torch.Tensor) -> torch.Tensor:
    """[N, L] bool: completion tokens that enter the loss (self-generated ones, and kept hint positions)."""
    return completion_mask & (~hint_mask | kept_hints)


@dataclass
class LossOutput:
    """The loss to backpropagate and sums for the step metrics (over this call's sequences)."""

    loss: torch.Tensor  # scalar
    tokens: int  # kept tokens
    kl_sum: float  # sum of k3 over kept tokens (0 without a reference)
    clipped: float  # clipped tokens (token ratio) or clipped sequences (sequence ratio)
    clip_units: int  # tokens or sequences the clip fraction is over


def policy_loss(
    log_probs: torch.Tensor,  # [N, L] current policy, with grad
    old_log_probs: torch.Tensor,  # [N, L] rollout policy, no grad
    advantages: torch.Tensor,  # [N]
    mask: torch.Tensor,  # [N, L] bool, tokens kept (loss_mask)
    eps_low: float,
    eps_high: float,
    beta: float = 0.0,
    ref_log_probs: torch.Tensor | None = None,  # [N, L] frozen reference, no grad; needed when beta > 0
    ratio_level: Literal["token", "sequence"] = "token",
    num_tokens: int | torch.Tensor | None = None,
    num_sequences: int | torch.Tensor | None = None,
) -> LossOutput:
    """Clipped surrogate + beta * k3 KL. ``num_tokens``/``num_sequences`` are the normalisers of the
    whole update (all micro-batches of this rank); by default this batch's own counts."""
    if beta > 0 and ref_log_probs is None:
        raise ValueError("beta > 0 needs ref_log_probs")
    tokens = int(mask.sum())
    num_tokens = max(int(num_tokens if num_tokens is not None else tokens), 1)
    # where(), not multiplication: dropped positions get a zero gradient even if their log-probs overflow.
    log_ratio = torch.where(mask, log_probs - old_log_probs, torch.zeros_like(log_probs))  # [N, L]
    adv = advantages[:, None].to(log_probs.dtype)  # [N, 1]
    if ratio_level == "token":
        ratio = torch.exp(log_ratio)  # [N, L]
        surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv)
        policy = -torch.where(mask, surrogate, torch.zeros_like(surrogate)).sum() / num_tokens
        clipped_units = (((ratio < 1 - eps_low) & (adv < 0)) | ((ratio > 1 + eps_high) & (adv > 0))) & mask
        clipped, clip_units = float(clipped_units.sum()), tokens
    else:
        lengths = mask.sum(dim=1)  # [N]
        has_tokens = lengths > 0
        num_sequences = max(int(num_sequences if num_sequences is not None else has_tokens.sum()), 1)
        seq_ratio = torch.exp(log_ratio.sum(dim=1) / lengths.clamp_min(1))  # [N]
        surrogate = torch.minimum(seq_ratio * adv[:, 0], torch.clamp(seq_ratio, 1 - eps_low, 1 + eps_high) * adv[:, 0])
        policy = -torch.where(has_tokens, surrogate, torch.zeros_like(surrogate)).sum() / num_sequences
        clipped_seq = ((seq_ratio < 1 - eps_low) & (adv[:, 0] < 0)) | ((seq_ratio > 1 + eps_high) & (adv[:, 0] > 0))
        clipped, clip_units = float((clipped_seq & has_tokens).sum()), int(has_tokens.sum())
    loss, kl_sum = policy, 0.0
    if ref_log_probs is not None:
        diff = torch.where(mask, ref_log_probs - log_probs, torch.zeros_like(log_probs))  # 0 -> k3 = 0 where dropped
        k3 = torch.exp(diff) - diff - 1  # [N, L]
        kl_sum = float(k3.detach().sum())
        if beta > 0:
            loss = loss + beta * k3.sum() / num_tokens
    return LossOutput(loss=loss, tokens=tokens, kl_sum=kl_sum, clipped=clipped, clip_units=clip_units)
