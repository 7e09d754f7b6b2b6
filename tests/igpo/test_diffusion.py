"""Forward process and SFT loss against hand computations (SPEC section 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from igpo.diffusion import forward_process, sft_loss


def test_forward_process_never_masks_prompt_and_uses_eps_floor():
    ids = torch.arange(2, 202).repeat(400, 1)  # [400, 200]
    response_mask = torch.zeros_like(ids, dtype=torch.bool)
    response_mask[:, 50:] = True
    noisy, masked, p_mask = forward_process(ids, response_mask, mask_id=0, generator=torch.Generator().manual_seed(0))
    assert not masked[:, :50].any()
    assert torch.equal(noisy[masked], torch.zeros(int(masked.sum()), dtype=torch.long))
    assert torch.equal(noisy[~masked], ids[~masked])
    assert (p_mask >= 1e-3).all() and (p_mask <= 1).all()
    # Per-row masking rate tracks that row's p_mask.
    rate = masked[:, 50:].float().mean(1)
    assert (rate - p_mask).abs().max() < 0.15


def test_sft_loss_matches_hand_computation(tiny_lm):
    ids = torch.tensor([[10, 11, 12, 13, 14, 1], [20, 21, 22, 23, 1, 1]])
    response_mask = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    loss = sft_loss(tiny_lm, ids, response_mask, torch.Generator().manual_seed(0))

    # Same draws, by hand: weighted CE over masked tokens, per-sample / response length, mean over batch.
    noisy, masked, p_mask = forward_process(ids, response_mask, tiny_lm.tokens.mask_id, torch.Generator().manual_seed(0))
    logits = tiny_lm.model(input_ids=noisy).logits.float()
    expected = 0.0
    for row in range(2):
        row_sum = 0.0
        for col in range(6):
            if masked[row, col]:
                ce = F.cross_entropy(logits[row, col][None], ids[row, col][None])
                row_sum += ce / p_mask[row]
        expected += row_sum / response_mask[row].sum()
    expected /= 2
    assert masked[0].any() and masked[1].any()
    torch.testing.assert_close(loss, torch.as_tensor(expected, dtype=loss.dtype))


def test_sft_loss_has_gradient(tiny_lm):
    ids = torch.tensor([[10, 11, 12, 13, 14, 1]])
    response_mask = torch.tensor([[0, 0, 1, 1, 1, 1]], dtype=torch.bool)
    tiny_lm.model.train()
    loss = sft_loss(tiny_lm, ids, response_mask, torch.Generator().manual_seed(0), eps=0.999)
    loss.backward()
    grads = [p.grad for p in tiny_lm.model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
