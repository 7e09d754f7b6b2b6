"""Helpers of the RL tests (imported as ``rl_helpers``): fresh tiny models, small RL settings, a toy reward."""

from __future__ import annotations

import torch

from igpo.models import DiffusionLM, wrap_model
from igpo.models.tiny import TinyModelConfig, build_tiny_model
from igpo.sampler import SamplerConfig

TINY = TinyModelConfig(num_layers=2, hidden_size=32, head_dim=8, intermediate_size=64)
ROLLOUT = SamplerConfig(gen_length=16, block_length=8, steps=8, temperature=1.0)


def fresh_lm(tokenizer, seed: int = 0) -> DiffusionLM:
    """The conftest ``tiny_lm`` architecture, rebuilt on demand (tests that need two identical models)."""
    return wrap_model(build_tiny_model(tokenizer, TINY.model_copy(update={"seed": seed})).eval(), tokenizer)


def has_letter_e(completions, **_):
    """A toy correctness reward that an untrained model sometimes earns and hints containing 'e' make likely:
    it exercises all-wrong groups, inpainting and repairs without a trained model."""
    return [1.0 if "e" in text else 0.0 for text in completions]


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def varied_on(questions):
    """A scripted correctness reward: completions of the given questions alternate right/wrong by row (so
    each group of an even size G has reward variance), every other completion is wrong (a flat group).
    It ignores the text, so which groups are flat is known in advance whatever the model samples."""
    chosen = set(questions)

    def correctness(completions, question, **_):
        return [1.0 if q in chosen and row % 2 == 0 else 0.0 for row, q in enumerate(question)]

    return correctness
