"""The d1 log-probability estimator against a manual log-softmax gather; prompt masking rate."""

from __future__ import annotations

import torch

from igpo.logprobs import completion_logprobs, mask_prompt


def test_logprobs_match_manual_log_softmax(tiny_lm):
    mask_id = tiny_lm.tokens.mask_id
    prompt = torch.tensor([[10, 11, 12], [13, 14, 15]])
    completion = torch.tensor([[20, 21, 22, 23], [24, 25, 26, 27]])
    log_probs, entropy = completion_logprobs(tiny_lm, prompt, completion, with_entropy=True)

    x = torch.cat([prompt, torch.full_like(completion, mask_id)], 1)
    logits = tiny_lm.model(input_ids=x).logits.float()
    for row in range(2):
        for j in range(4):
            dist = torch.log_softmax(logits[row, 3 + j], -1)
            torch.testing.assert_close(log_probs[row, j], dist[completion[row, j]])
            torch.testing.assert_close(entropy[row, j], -(dist.exp() * dist).sum())


def test_logprobs_depend_only_on_prompt_not_completion_tokens(tiny_lm):
    # The completion is fully masked, so the distribution at each position ignores the completion's tokens.
    prompt = torch.tensor([[10, 11, 12]])
    a, ent_a = completion_logprobs(tiny_lm, prompt, torch.tensor([[20, 21, 22]]), with_entropy=True)
    b, ent_b = completion_logprobs(tiny_lm, prompt, torch.tensor([[30, 21, 40]]), with_entropy=True)
    torch.testing.assert_close(a[0, 1], b[0, 1])
    torch.testing.assert_close(ent_a, ent_b)


def test_prompt_masking_rate_close_to_p_and_padding_kept():
    prompt = torch.full((200, 50), 7)
    prompt_mask = torch.ones_like(prompt)
    prompt_mask[:, :10] = 0
    out = mask_prompt(prompt, 0.15, mask_id=2, generator=torch.Generator().manual_seed(0), prompt_mask=prompt_mask)
    assert not (out[:, :10] == 2).any()
    rate = (out[:, 10:] == 2).float().mean().item()
    assert abs(rate - 0.15) < 0.01
    assert torch.equal(mask_prompt(prompt, 0.0, 2, None), prompt)


def test_prompt_masking_is_reproducible_from_generator():
    prompt = torch.full((4, 30), 7)
    a = mask_prompt(prompt, 0.3, 2, torch.Generator().manual_seed(5))
    b = mask_prompt(prompt, 0.3, 2, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_entropy_only_when_asked_and_log_prob_gradients_are_the_manual_ones(tiny_lm):
    """The gradient and reference passes get no entropy (no full-vocabulary float32 temporary they discard);
    the fused cross-entropy gives the same log-probs and gradients as a log-softmax gather."""
    prompt = torch.tensor([[10, 11, 12], [13, 14, 15]])
    completion = torch.tensor([[20, 21, 22, 23], [24, 25, 26, 27]])
    log_probs, entropy = completion_logprobs(tiny_lm, prompt, completion)
    assert entropy is None and log_probs.requires_grad
    params = [p for p in tiny_lm.model.parameters() if p.requires_grad]
    fused = torch.autograd.grad(log_probs.sum(), params)
    x = torch.cat([prompt, torch.full_like(completion, tiny_lm.tokens.mask_id)], 1)
    logits = tiny_lm.model(input_ids=x).logits.float()[:, 3:]
    manual = torch.log_softmax(logits, -1).gather(-1, completion[..., None]).squeeze(-1)
    for a, b in zip(fused, torch.autograd.grad(manual.sum(), params), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
