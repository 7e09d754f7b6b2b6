"""A tiny masked diffusion LM for CPU runs and tests, built offline.

The default model is a shrunk LLaDA built from the project's native class (``igpo.models.llada``), so the
demo and the tests run exactly the code that loads LLaDA-8B; ``architecture: gemma3`` builds a transformers
Gemma-3 text decoder with ``use_bidirectional_attention=True`` instead (a model outside the native families,
loaded through transformers' Auto classes). The tokenizer is character-level, trained with ``tokenizers`` on
printable ASCII. Both are saved with ``save_pretrained`` and loaded like any real model.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedModel, PreTrainedTokenizerFast

from igpo.config_base import StrictConfig
from igpo.models.llada import build_tiny_llada

MASK, EOS, EOT, PAD, BOS = "<|mdm_mask|>", "<|endoftext|>", "<|eot_id|>", "<|pad|>", "<|startoftext|>"
ROLE_USER, ROLE_ASSISTANT = "<|user|>", "<|assistant|>"
SPECIAL_TOKENS = [PAD, EOS, MASK, EOT, BOS, ROLE_USER, ROLE_ASSISTANT]

# A minimal chat template in the shape of LLaDA's: the prompt ends where the assistant turn begins.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}" + ROLE_USER + "{{ message['content'] }}" + EOT + "{% endif %}"
    "{% if message['role'] == 'assistant' %}" + ROLE_ASSISTANT + "{{ message['content'] }}" + EOT + "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + ROLE_ASSISTANT + "{% endif %}"
)


class TinyModelConfig(StrictConfig):
    """Architecture and size of the tiny bidirectional model."""

    architecture: Literal["llada", "gemma3"] = Field(
        "llada",
        description="'llada': the native LLaDA class (what loads LLaDA-8B); 'gemma3': a transformers Gemma-3 "
        "decoder with bidirectional attention (a model outside the native families).",
    )
    num_layers: int = Field(4, ge=1, description="Transformer layers.")
    hidden_size: int = Field(64, ge=8, description="Model width; a multiple of num_heads * head_dim is not required.")
    num_heads: int = Field(4, ge=1, description="Attention heads.")
    head_dim: int = Field(16, ge=4, description="Width of one attention head.")
    intermediate_size: int = Field(256, ge=8, description="MLP width.")
    max_position_embeddings: int = Field(1024, ge=16, description="Longest sequence (prompt + completion).")
    rope_theta: float = Field(
        10_000.0, gt=0,
        description="RoPE base. Gemma-3's global-attention default (1e6) leaves a 16-wide head almost no "
        "short-range position signal, which a tiny model needs to find the k-th operand of a prompt.",
    )
    seed: int = Field(0, description="Seed of the weight initialisation (a local torch.Generator state).")

    @model_validator(mode="after")
    def _llada_heads_split_the_width(self) -> TinyModelConfig:
        if self.architecture == "llada" and self.num_heads * self.head_dim != self.hidden_size:
            raise ValueError(
                f"head_dim: LLaDA's head width is hidden_size / num_heads = {self.hidden_size} / {self.num_heads}, "
                f"so num_heads * head_dim ({self.num_heads} * {self.head_dim}) must equal hidden_size"
            )
        return self


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer over printable ASCII plus the special tokens, trained in well under a second."""
    tok = Tokenizer(models.WordLevel(unk_token=PAD))
    # Every character is its own pre-token, so the word-level model is character-level.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=1)
    tok.train_from_iterator([string.printable], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        mask_token=MASK,
        bos_token=BOS,
        unk_token=PAD,
        additional_special_tokens=[EOT, ROLE_USER, ROLE_ASSISTANT],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, config: TinyModelConfig | None = None) -> PreTrainedModel:
    """A freshly initialised bidirectional model of the given architecture and size; token ids come from
    ``tokenizer``. Never moves the caller's global RNG state."""
    import torch

    config = config or TinyModelConfig()
    if config.architecture == "llada":
        return build_tiny_llada(
            tokenizer, d_model=config.hidden_size, n_heads=config.num_heads, n_layers=config.num_layers,
            mlp_hidden_size=config.intermediate_size, max_sequence_length=config.max_position_embeddings,
            rope_theta=config.rope_theta, seed=config.seed,
        )
    model_config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        head_dim=config.head_dim,
        query_pre_attn_scalar=config.head_dim,
        max_position_embeddings=config.max_position_embeddings,
        use_bidirectional_attention=True,
        layer_types=["full_attention"] * config.num_layers,
        rope_parameters={
            kind: {"rope_type": "default", "rope_theta": config.rope_theta}
            for kind in ("full_attention", "sliding_attention")
        },
        sliding_window=config.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        mask_token_id=tokenizer.mask_token_id,
    )
    # Initialise under a forked RNG so building a model never moves the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Gemma3ForCausalLM(model_config)
    return model


def save_tiny(output_dir: str | Path, config: TinyModelConfig | None = None) -> Path:
    """Build the tiny tokenizer and model and save both (safetensors) to ``output_dir``."""
    output_dir = Path(output_dir)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer, config)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
