"""End to end on the core: a short SFT makes the tiny model reproduce a handful of strings with the sampler."""

from __future__ import annotations

import pytest
import torch

from igpo.prompting import decode_completions, encode_prompts
from igpo.sampler import SamplerConfig, generate
from igpo.sft import SFTConfig, train_sft


@pytest.mark.slow
def test_short_sft_then_sampler_reproduces_strings(tiny_lm, tiny_tokenizer):
    questions = ["red", "blue", "green", "cyan"]
    answers = ["apple 1", "sky 22", "grass 333", "sea 4444"]
    config = SFTConfig(steps=400, batch_size=8, learning_rate=2e-3, pad_response_to=16, max_response_tokens=16)
    result = train_sft(tiny_lm, questions, answers, config, progress=False)
    assert result.losses[-1] < result.losses[0]
    ids, mask = encode_prompts(tiny_tokenizer, questions, tiny_lm.tokens.pad_id)
    out = generate(tiny_lm, ids, SamplerConfig(gen_length=16, block_length=8, steps=16), prompt_mask=mask)
    assert decode_completions(tiny_tokenizer, out, tiny_lm.tokens.stop_ids) == answers
    # Inpainting: give the first character as a hint; the rest still comes out right.
    hint_mask = torch.zeros_like(out, dtype=torch.bool)
    hint_mask[:, 0] = True
    hinted = generate(tiny_lm, ids, SamplerConfig(gen_length=16, block_length=8, steps=16), prompt_mask=mask,
                      hint_ids=out, hint_mask=hint_mask)
    assert torch.equal(hinted, out)
