"""Activation recomputation: the same training step with less stored activation, on both trainers."""

from __future__ import annotations

import copy

import pytest
import torch

from igpo.distributed import LoRAConfig
from igpo.models.recompute import enable_recompute, recomputed_blocks
from igpo.rl import RLConfig, train_rl
from igpo.sampler import SamplerConfig
from igpo.sft import SFTConfig, train_sft

QUESTIONS, ANSWERS = ["1+1?", "2+2?", "3+3?", "4+4?"], ["2", "4", "6", "8"]


def _params(lm):
    return {name: p.detach().clone() for name, p in lm.model.named_parameters()}


def test_an_sft_step_with_recompute_equals_one_without(tiny_lm):
    twin = copy.deepcopy(tiny_lm)
    config = SFTConfig(steps=2, batch_size=4, learning_rate=1e-2, pad_response_to=8, max_response_tokens=8, seed=0)
    train_sft(tiny_lm, QUESTIONS, ANSWERS, config, progress=False)
    train_sft(twin, QUESTIONS, ANSWERS, config.model_copy(update={"gradient_checkpointing": True}), progress=False)
    assert recomputed_blocks(twin.model) == 2 and recomputed_blocks(tiny_lm.model) == 0
    plain, recomputed = _params(tiny_lm), _params(twin)
    for name, value in plain.items():
        torch.testing.assert_close(recomputed[name], value, rtol=0, atol=1e-6)


def test_an_rl_step_with_lora_and_recompute_trains_the_adapters(tiny_lm):
    examples = [{"question": q, "answer": a, "reasoning": f"so {a}"} for q, a in zip(QUESTIONS, ANSWERS)]
    config = RLConfig(
        steps=1, batch_size=2, group_size=2, mu=1, beta=0.1, learning_rate=1e-2, s_min=1, s_max=2,
        rollout=SamplerConfig(gen_length=8, block_length=8, steps=4, temperature=1.0),
        lora=LoRAConfig(r=4, alpha=8), gradient_checkpointing=True,
    )
    before = _params(tiny_lm)
    train_rl(tiny_lm, examples, config, correctness_fn=lambda completions, **_: [1.0, 0.0] * 2, progress=False)
    assert recomputed_blocks(tiny_lm.model) == 2
    after = _params(tiny_lm)  # the adapters are merged at the end: the targeted weights moved
    assert any(not torch.equal(after[name], value) for name, value in before.items())


def test_a_model_without_support_is_named():
    with pytest.raises(ValueError, match="gradient_checkpointing: Linear does not support"):
        enable_recompute(torch.nn.Linear(2, 2))
