"""Activation recomputation ("gradient checkpointing"): each transformer block's activations are recomputed in
the backward pass instead of being stored, trading about one extra forward of compute for activation memory
(on LLaDA-8B at micro-batch 8 and 512 tokens, ~17 GiB -> ~1.5 GiB per GPU: ``benchmarks/llada_memory.py``).

Non-reentrant torch checkpointing, so it needs no input that requires grad (a frozen embedding under LoRA
works as is). It acts only in train mode: the RL loop's no-grad passes run in eval mode and pay nothing.
"""

from __future__ import annotations

import torch


def enable_recompute(model: torch.nn.Module) -> None:
    """Turn on non-reentrant activation checkpointing of every block of a transformers model (the native
    LLaDA and Dream classes, transformers' own models). Call before LoRA wraps the model."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ValueError(
            f"gradient_checkpointing: {type(model).__name__} does not support gradient checkpointing "
            "(supports_gradient_checkpointing is not set); turn it off for this model"
        )
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.24 (the old name is deprecated)
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def recomputed_blocks(model: torch.nn.Module) -> int:
    """How many submodules of ``model`` have activation checkpointing on."""
    return sum(bool(getattr(module, "gradient_checkpointing", False)) for module in model.modules()
               if module is not model)
