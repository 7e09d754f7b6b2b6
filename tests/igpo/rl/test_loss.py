"""The policy loss: completion mask, entropy filter, zero gradient on dropped hints, and a manual computation."""

from __future__ import annotations

import math

import pytest
import torch

from igpo.logprobs import completion_logprobs
from igpo.rl.loss import completion_mask, entropy_filter, kept_counts, loss_mask, policy_loss

EOS, EOT = 1, 3


def test_completion_mask_stops_after_the_first_stop_token():
    ids = torch.tensor([[5, 6, EOS, EOS, EOS], [5, EOT, 7, EOS, 8], [5, 6, 7, 8, 9], [EOS, 5, 5, 5, 5]])
    expected = [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert completion_mask(ids, (EOS, EOT)).long().tolist() == expected


@pytest.mark.parametrize("tau", [0.0, 0.2, 0.25, 0.5, 0.99, 1.0])
def test_entropy_filter_keeps_exactly_the_top_tau(tau):
    generator = torch.Generator().manual_seed(0)
    entropy = torch.rand(6, 40, generator=generator)  # distinct values
    hint_mask = torch.rand(6, 40, generator=generator) < torch.tensor([0.0, 0.05, 0.3, 0.5, 0.8, 1.0])[:, None]
    kept = entropy_filter(entropy, hint_mask, tau)
    assert not (kept & ~hint_mask).any()
    for row in range(6):
        n = int(hint_mask[row].sum())
        k = 0 if n == 0 or tau == 0 else max(1, math.floor(tau * n + 1e-9))  # tau = 0: no hint token trains
        assert int(kept[row].sum()) == k
        if k:
            top = entropy[row][hint_mask[row]].topk(k).values
            assert torch.equal(entropy[row][kept[row]].sort().values, top.sort().values)


@pytest.mark.parametrize("tau", [0.0, 0.2, 0.5, 1.0])
def test_kept_counts_equal_the_loss_mask_for_any_entropy(tau):
    """The normalisers are counted before the entropy exists (fused gradient pass): they must equal what the
    loss mask keeps whatever the entropies turn out to be."""
    generator = torch.Generator().manual_seed(1)
    real = torch.arange(30)[None, :] < torch.tensor([30, 12, 0, 25, 5])[:, None]  # [N, L], one empty row
    hints = real & (torch.rand(5, 30, generator=generator) < 0.4)
    tokens, sequences = kept_counts(real, hints, tau)
    for _ in range(5):
        keep = loss_mask(real, hints, entropy_filter(torch.rand(5, 30, generator=generator), hints, tau))
        assert int(tokens) == int(keep.sum()) and int(sequences) == int(keep.any(dim=1).sum())


def _toy_batch():
    generator = torch.Generator().manual_seed(0)
    log_probs = -torch.rand(3, 6, generator=generator, dtype=torch.float64) * 3
    old = log_probs + 0.4 * (torch.rand(3, 6, generator=generator, dtype=torch.float64) - 0.5)
    ref = log_probs + 0.3 * (torch.rand(3, 6, generator=generator, dtype=torch.float64) - 0.5)
    advantages = torch.tensor([1.0, -0.5, 0.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 0, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    return log_probs, old, ref, advantages, mask


def _manual(log_probs, old, ref, advantages, mask, eps_low, eps_high, beta, level):
    """The SPEC formula, written out with Python loops over tokens."""
    log_probs, old, ref, advantages = log_probs.tolist(), old.tolist(), ref.tolist(), advantages.tolist()
    n_rows, n_cols = mask.shape
    mask = mask.tolist()
    kept = [(i, t) for i in range(n_rows) for t in range(n_cols) if mask[i][t]]
    kl = sum(math.exp(ref[i][t] - log_probs[i][t]) - (ref[i][t] - log_probs[i][t]) - 1 for i, t in kept) / len(kept)
    if level == "token":
        total = 0.0
        for i, t in kept:
            rho, a = math.exp(log_probs[i][t] - old[i][t]), advantages[i]
            total += -min(rho * a, min(max(rho, 1 - eps_low), 1 + eps_high) * a)
        policy = total / len(kept)
    else:
        seqs = [i for i in range(n_rows) if any(mask[i])]
        total = 0.0
        for i in seqs:
            ts = [t for t in range(n_cols) if mask[i][t]]
            s = math.exp(sum(log_probs[i][t] - old[i][t] for t in ts) / len(ts))
            a = advantages[i]
            total += -min(s * a, min(max(s, 1 - eps_low), 1 + eps_high) * a)
        policy = total / len(seqs)
    return policy + beta * kl


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_loss_equals_a_manual_computation(level, beta):
    log_probs, old, ref, advantages, mask = _toy_batch()
    out = policy_loss(log_probs, old, advantages, mask, 0.1, 0.15, beta, ref if beta else None, level)
    expected = _manual(log_probs, old, ref, advantages, mask, 0.1, 0.15, beta, level)
    assert out.loss.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert out.tokens == int(mask.sum())


def test_clip_fraction_counts_clipped_tokens_that_matter():
    log_probs = torch.log(torch.tensor([[1.5, 0.5, 1.0, 1.1]]))
    out = policy_loss(log_probs, torch.zeros(1, 4), torch.tensor([1.0]), torch.ones(1, 4, dtype=torch.bool), 0.2, 0.2)
    assert out.clipped == 1 and out.clip_units == 4  # 1.5 with A > 0 is clipped; 0.5 with A > 0 is not


def test_micro_batch_normalisers_add_up_to_the_full_batch_loss():
    log_probs, old, ref, advantages, mask = _toy_batch()
    for level in ("token", "sequence"):
        full = policy_loss(log_probs, old, advantages, mask, 0.2, 0.2, 0.1, ref, level).loss
        n_tok, n_seq = mask.sum(), mask.any(1).sum()
        parts = sum(
            policy_loss(log_probs[r], old[r], advantages[r], mask[r], 0.2, 0.2, 0.1, ref[r], level, n_tok, n_seq).loss
            for r in (slice(0, 2), slice(2, 3))
        )
        assert parts.item() == pytest.approx(full.item(), rel=1e-12)


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_filtered_hint_tokens_get_exactly_zero_gradient(level):
    generator = torch.Generator().manual_seed(0)
    real = torch.ones(4, 12, dtype=torch.bool)
    real[1, 9:] = False
    hint_mask = torch.zeros(4, 12, dtype=torch.bool)
    hint_mask[:2, 2:8] = True
    hint_mask[3, :] = True
    entropy = torch.rand(4, 12, generator=generator)
    kept = entropy_filter(entropy, hint_mask & real, tau=0.2)
    mask = loss_mask(real, hint_mask, kept)
    dropped = hint_mask & ~kept
    assert dropped.any() and kept.any()
    log_probs = (-torch.rand(4, 12, generator=generator) * 2).requires_grad_(True)
    old = (log_probs + 0.1 * torch.randn(4, 12, generator=generator)).detach()
    ref = (log_probs + 0.1 * torch.randn(4, 12, generator=generator)).detach()
    # Dropped positions may hold extreme values: they must still not leak into the loss or its gradient.
    old[dropped] = -80.0
    out = policy_loss(log_probs, old, torch.tensor([1.0, -1.0, 0.5, 2.0]), mask, 0.2, 0.2, 0.1, ref, level)
    out.loss.backward()
    grad = log_probs.grad
    assert torch.isfinite(out.loss)
    assert (grad[dropped] == 0).all() and (grad[~real] == 0).all()
    assert (grad[mask] != 0).all()


def test_filtered_hint_positions_get_zero_gradient_through_the_model(tiny_lm):
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(10, 90, (2, 5), generator=generator)
    completion = torch.randint(10, 90, (2, 10), generator=generator)
    hint_mask = torch.zeros(2, 10, dtype=torch.bool)
    hint_mask[:, 3:9] = True
    log_probs, entropy = completion_logprobs(tiny_lm, prompt, completion, with_entropy=True)
    log_probs.retain_grad()
    kept = entropy_filter(entropy.detach(), hint_mask, tau=0.34)
    mask = loss_mask(torch.ones_like(hint_mask), hint_mask, kept)
    policy_loss(log_probs, log_probs.detach() - 0.05, torch.tensor([1.0, -1.0]), mask, 0.2, 0.2).loss.backward()
    assert int(kept.sum()) == 4  # floor(0.34 * 6) = 2 per sequence
    assert (log_probs.grad[hint_mask & ~kept] == 0).all()
    assert (log_probs.grad[mask] != 0).all()
