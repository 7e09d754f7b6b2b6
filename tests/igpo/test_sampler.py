"""The sampler against a plain per-sample reference loop, and its schedule, seeding and inpainting invariants."""

from __future__ import annotations

import pytest
import torch

from igpo.sampler import SamplerConfig, commit_mask, generate, num_transfer_tokens


@torch.no_grad()
def reference_generate(lm, prompt: torch.Tensor, config: SamplerConfig) -> torch.Tensor:
    """LLaDA's low-confidence remasking written plainly, one sequence at a time, greedy, full-sequence logits."""
    mask_id = lm.tokens.mask_id
    p = prompt.shape[0]
    x = torch.cat([prompt, torch.full((config.gen_length,), mask_id)])
    for k in range(config.num_blocks):
        lo, hi = p + k * config.block_length, p + (k + 1) * config.block_length
        n_masked = int((x[lo:hi] == mask_id).sum())
        per_step = [n_masked // config.steps_per_block + (1 if s < n_masked % config.steps_per_block else 0)
                    for s in range(config.steps_per_block)]
        for s in range(config.steps_per_block):
            logits = lm.model(input_ids=x[None]).logits[0].float()  # [P+L, V]
            logits[:, mask_id] = -torch.inf
            for _ in range(per_step[s]):
                best, best_conf, best_tok = None, -1.0, None
                for i in range(lo, hi):
                    if x[i] != mask_id:
                        continue
                    probs = torch.softmax(logits[i], dim=-1)
                    tok = int(probs.argmax())
                    if probs[tok] > best_conf:
                        best, best_conf, best_tok = i, float(probs[tok]), tok
                x[best] = best_tok
    return x[p:]


def _prompts(tokenizer, texts):
    ids = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    assert len({len(i) for i in ids}) == 1
    return torch.tensor(ids)


@pytest.mark.parametrize(
    "gen_length,block_length,steps", [(8, 8, 8), (8, 4, 4), (12, 4, 6), (16, 8, 4), (8, 2, 8)]
)
def test_batched_greedy_matches_per_sample_reference(tiny_lm, tiny_tokenizer, gen_length, block_length, steps):
    config = SamplerConfig(gen_length=gen_length, block_length=block_length, steps=steps)
    prompts = _prompts(tiny_tokenizer, ["1+2=", "3-1=", "abcd"])
    batched = generate(tiny_lm, prompts, config)
    for row in range(prompts.shape[0]):
        expected = reference_generate(tiny_lm, prompts[row], config)
        assert torch.equal(batched[row], expected), f"row {row}: {batched[row]} != {expected}"


def test_single_block_equals_non_semi_autoregressive_reference(tiny_lm, tiny_tokenizer):
    prompts = _prompts(tiny_tokenizer, ["x=1;", "y=2;"])
    config = SamplerConfig(gen_length=10, block_length=10, steps=5)
    assert config.num_blocks == 1
    out = generate(tiny_lm, prompts, config)
    for row in range(2):
        assert torch.equal(out[row], reference_generate(tiny_lm, prompts[row], config))


def test_seeded_runs_reproduce_and_seeds_differ(tiny_lm, tiny_tokenizer):
    prompts = _prompts(tiny_tokenizer, ["1+2=", "3-1="]).repeat(4, 1)
    config = SamplerConfig(gen_length=16, block_length=8, steps=8, temperature=1.0)
    a = generate(tiny_lm, prompts, config, torch.Generator().manual_seed(1))
    b = generate(tiny_lm, prompts, config, torch.Generator().manual_seed(1))
    c = generate(tiny_lm, prompts, config, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sampler_does_not_touch_global_rng(tiny_lm, tiny_tokenizer):
    prompts = _prompts(tiny_tokenizer, ["1+2="])
    before = torch.random.get_rng_state()
    generate(tiny_lm, prompts, SamplerConfig(gen_length=8, block_length=4, steps=4, temperature=1.0),
             torch.Generator().manual_seed(0))
    assert torch.equal(before, torch.random.get_rng_state())


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
def test_hints_unchanged_and_all_masks_filled(tiny_lm, tiny_tokenizer, remasking):
    prompts = _prompts(tiny_tokenizer, ["1+2=", "3-1=", "abcd"])
    config = SamplerConfig(gen_length=16, block_length=4, steps=8, temperature=0.7, remasking=remasking)
    g = torch.Generator().manual_seed(0)
    hint_mask = torch.rand(3, 16, generator=g) < 0.4
    hint_mask[0, :4] = True  # a fully hinted block has nothing to do
    hint_ids = torch.randint(10, 40, (3, 16), generator=g)
    out = generate(tiny_lm, prompts, config, g, hint_ids=hint_ids, hint_mask=hint_mask)
    assert torch.equal(out[hint_mask], hint_ids[hint_mask])
    assert not (out == tiny_lm.tokens.mask_id).any()


def test_commit_counts_follow_schedule_and_skip_hints(tiny_lm, tiny_tokenizer):
    prompts = _prompts(tiny_tokenizer, ["1+2=", "3-1="])
    config = SamplerConfig(gen_length=12, block_length=6, steps=8)  # 4 iterations per block
    hint_mask = torch.zeros(2, 12, dtype=torch.bool)
    hint_mask[1, [0, 2, 7]] = True  # row 1: block 0 has 4 masks, block 1 has 5
    hint_ids = torch.full((2, 12), 20)
    trace: list[torch.Tensor] = []
    generate(tiny_lm, prompts, config, hint_ids=hint_ids, hint_mask=hint_mask, trace=trace)
    assert len(trace) == 8
    per_step = torch.stack([t.sum(1) for t in trace], 1)  # [N, steps]
    assert per_step[0].tolist() == [2, 2, 1, 1, 2, 2, 1, 1]  # 6 masks over 4 iterations, remainder first
    assert per_step[1].tolist() == [1, 1, 1, 1, 2, 1, 1, 1]
    committed = torch.stack(trace).any(0)
    assert not (committed & hint_mask).any()
    assert committed[~hint_mask].all()


def test_num_transfer_tokens_spreads_evenly():
    counts = torch.tensor([0, 3, 7, 8])
    out = num_transfer_tokens(counts, 4)
    assert out.tolist() == [[0, 0, 0, 0], [1, 1, 1, 0], [2, 2, 2, 1], [2, 2, 2, 2]]
    assert torch.equal(out.sum(1), counts)


def test_commit_mask_matches_topk():
    g = torch.Generator().manual_seed(0)
    confidence = torch.rand(5, 9, generator=g)
    counts = torch.tensor([0, 1, 3, 9, 4])
    mask = commit_mask(confidence, counts)
    for row in range(5):
        expected = torch.zeros(9, dtype=torch.bool)
        expected[confidence[row].topk(int(counts[row])).indices] = True
        assert torch.equal(mask[row], expected)


def test_left_padded_prompts_and_cfg_run(tiny_lm, tiny_tokenizer):
    from igpo.prompting import encode_prompts

    ids, mask = encode_prompts(tiny_tokenizer, ["1+2=", "a much longer prompt"], tiny_lm.tokens.pad_id)
    assert mask[0, 0] == 0 and mask[1].all()
    config = SamplerConfig(gen_length=8, block_length=4, steps=4, cfg_scale=1.5)
    out = generate(tiny_lm, ids, config, prompt_mask=mask)
    assert out.shape == (2, 8) and not (out == tiny_lm.tokens.mask_id).any()
    plain = generate(tiny_lm, ids, config.model_copy(update={"cfg_scale": 0.0}), prompt_mask=mask)
    assert not torch.equal(out, plain)  # guidance changes the logits of an untrained model


@pytest.mark.parametrize(
    "kwargs,field",
    [({"gen_length": 10, "block_length": 4}, "block_length"), ({"gen_length": 8, "block_length": 4, "steps": 3}, "steps")],
)
def test_invalid_schedules_are_rejected(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SamplerConfig(**kwargs)
