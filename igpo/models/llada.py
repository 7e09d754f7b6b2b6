"""LLaDA (Nie et al. 2025, "Large Language Diffusion Models"), written natively for transformers 5.

Reads the hub checkpoints of GSAI-ML/LLaDA-8B-Base, LLaDA-8B-Instruct and LLaDA-1.5 as they are
(``config.json`` keys and ``model.safetensors`` weight names), without executing their remote code.

The architecture is that of the hub's ``modeling_llada.py`` (an OLMo-derived code base) for the settings
the released checkpoints use (``block_type='llama'``, ``layer_norm_type='rms'``, RoPE, no ALiBi, no q/k
norm, ``block_group_size=1``); any other setting is refused with a ValueError naming the config key:

- a LLaMA-style pre-norm block, ``x + attn(attn_norm(x))`` then ``x + ff_out(act(ff_proj(h)) * up_proj(h))``
  with ``h = ff_norm(x)``: the activation goes on ``ff_proj`` (the gate), ``up_proj`` is the linear branch;
- RMSNorm computed in float32 (``x * rsqrt(mean(x^2) + rms_norm_eps)``), cast back to the input dtype,
  *then* scaled by its weight;
- rotary embeddings of the rotate-half kind (``cat(-x2, x1)`` over the two halves of a head, frequencies
  ``cat(f, f)``), applied to q and k in float32 when ``rope_full_precision`` (else in their dtype), at the given
  ``position_ids``;
- bidirectional attention (no causal mask), scaled by ``1/sqrt(D)``, grouped k/v heads when ``n_kv_heads <
  n_heads``;
- logits over ``embedding_size`` rows (>= ``vocab_size``) through ``model.transformer.ff_out`` (or the
  embedding when ``weight_tying``), multiplied by ``1/sqrt(d_model)`` when ``scale_logits``.

Deviations from the hub code, all additions: the attention honours a 2-D padding ``attention_mask`` (the hub
code ignores it, so a left-padded row attends to its pads); the forward takes ``position_ids``, a
transformers ``Cache`` (keys stored after RoPE) and ``logits_to_keep``; gradient checkpointing is the
transformers one (``GradientCheckpointingLayer``). Rotary frequencies are computed in every forward, so there
is no buffer for ``from_pretrained`` to leave uninitialised.

Shapes: N rows, T length (queries), S keys (T, or more with a cache), H heads, D head dim, V = embedding_size.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerFast
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep

ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu}


class LLaDAConfig(PreTrainedConfig):
    """The hub ``config.json`` of LLaDA, keys as they are (defaults: LLaDA-8B).

    Standard names map onto them: ``hidden_size`` = d_model, ``num_attention_heads`` = n_heads,
    ``num_hidden_layers`` = n_layers, ``tie_word_embeddings`` = weight_tying, ``max_position_embeddings`` =
    max_sequence_length; ``num_key_value_heads``, ``head_dim`` and ``intermediate_size`` are derived. Keys of
    the hub config that only steered the original training code (``init_device``, ``precision``,
    ``flash_attention``, ...) are kept and ignored. ``auto_map`` (the hub's pointer at its remote code) is
    dropped: a directory saved from this class holds no code to point at.
    """

    model_type = "llada"
    attribute_map: ClassVar[dict[str, str]] = {
        "hidden_size": "d_model",
        "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers",
        "tie_word_embeddings": "weight_tying",
        "max_position_embeddings": "max_sequence_length",
    }

    d_model: int = 4096
    n_heads: int = 32
    n_kv_heads: int | None = None
    multi_query_attention: bool | None = None
    n_layers: int = 32
    mlp_ratio: int = 4
    mlp_hidden_size: int | None = 12288
    activation_type: str = "silu"
    block_type: str = "llama"
    block_group_size: int = 1
    alibi: bool = False
    alibi_bias_max: float = 8.0
    rope: bool = True
    rope_full_precision: bool = True
    rope_theta: float = 500000.0
    flash_attention: bool = False
    attention_dropout: float = 0.0
    attention_layer_norm: bool = False
    attention_layer_norm_with_affine: bool = True
    residual_dropout: float = 0.0
    embedding_dropout: float = 0.0
    input_emb_norm: bool = False
    layer_norm_type: str = "rms"
    layer_norm_with_affine: bool = True
    rms_norm_eps: float = 1e-5
    bias_for_layer_norm: bool | None = None
    include_bias: bool = False
    include_qkv_bias: bool | None = False
    scale_logits: bool = False
    vocab_size: int = 126464
    embedding_size: int | None = 126464
    weight_tying: bool = False
    max_sequence_length: int = 4096
    init_device: str | None = None
    init_fn: str = "mitchell"
    init_std: float = 0.02
    init_cutoff_factor: float | None = None
    precision: str | None = None
    mask_token_id: int | None = 126336
    eos_token_id: int | None = 126081
    pad_token_id: int | None = 126081
    bos_token_id: int | None = None
    use_cache: bool = False

    def __post_init__(self, **kwargs: Any):
        kwargs.pop("auto_map", None)
        super().__post_init__(**kwargs)
        problems = self.unsupported_settings()
        if problems:
            raise ValueError(
                "LLaDAConfig: settings this native LLaDA does not implement (the released LLaDA checkpoints use "
                "none of them): " + "; ".join(problems)
            )

    def unsupported_settings(self) -> list[str]:
        """Each config setting the model would not compute as the hub code does, as 'key=value: why'."""
        problems = []
        if self.block_type != "llama":
            problems.append(f"block_type={self.block_type!r}: only 'llama' (q/k/v_proj, ff_proj + up_proj)")
        if self.layer_norm_type != "rms":
            problems.append(f"layer_norm_type={self.layer_norm_type!r}: only 'rms'")
        if self.activation_type not in ACTIVATIONS:
            problems.append(f"activation_type={self.activation_type!r}: only {sorted(ACTIVATIONS)}")
        if self.alibi:
            problems.append("alibi=True: ALiBi is not implemented (LLaDA uses RoPE)")
        if not self.rope:
            problems.append("rope=False: learned position embeddings (wpe) are not implemented")
        if getattr(self, "yarn", False):
            problems.append("yarn: YaRN rotary scaling is not implemented")
        if self.attention_layer_norm:
            problems.append("attention_layer_norm=True: q/k layer norm is not implemented")
        if self.block_group_size != 1:
            problems.append(f"block_group_size={self.block_group_size}: only 1 (weights named blocks.N)")
        if self.bias_for_layer_norm and not self.layer_norm_with_affine:
            problems.append("bias_for_layer_norm without layer_norm_with_affine")
        if self.d_model % self.n_heads:
            problems.append(f"d_model={self.d_model} is not a multiple of n_heads={self.n_heads}")
        if self.embedding_size is not None and self.embedding_size < self.vocab_size:
            problems.append(f"embedding_size={self.embedding_size} < vocab_size={self.vocab_size}")
        try:
            kv_heads = self.num_key_value_heads
        except ValueError as err:
            problems.append(str(err))
        else:
            if self.n_heads % kv_heads:
                problems.append(f"n_heads={self.n_heads} is not a multiple of the {kv_heads} key/value heads")
        return problems

    @property
    def num_key_value_heads(self) -> int:
        """Key/value heads, as the hub code's ``effective_n_kv_heads`` resolves n_kv_heads and
        multi_query_attention."""
        if self.n_kv_heads is None:
            return 1 if self.multi_query_attention else self.n_heads
        if self.multi_query_attention is None or self.n_kv_heads == (1 if self.multi_query_attention else self.n_heads):
            return self.n_kv_heads
        raise ValueError(
            f"n_kv_heads={self.n_kv_heads} contradicts multi_query_attention={self.multi_query_attention}"
        )

    @num_key_value_heads.setter
    def num_key_value_heads(self, value: int) -> None:
        self.n_kv_heads = value

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def intermediate_size(self) -> int:
        """Width of the feed-forward branch (ff_proj / up_proj outputs)."""
        return self.mlp_hidden_size if self.mlp_hidden_size is not None else self.mlp_ratio * self.d_model

    @property
    def rows(self) -> int:
        """Rows of the embedding and the LM head (the logits' V)."""
        return self.embedding_size or self.vocab_size

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output.pop("auto_map", None)
        return output


class LLaDARMSNorm(nn.Module):
    """RMSNorm as the hub's ``RMSLayerNorm``: normalise in float32, cast back, then scale (and shift)."""

    def __init__(self, size: int, eps: float, affine: bool = True, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size)) if affine else None
        self.bias = nn.Parameter(torch.zeros(size)) if affine and bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(dtype)
        if self.weight is None:
            return x
        return self.weight * x + self.bias if self.bias is not None else self.weight * x


def rotary_cos_sin(
    position_ids: torch.Tensor, head_dim: int, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [N or 1, 1, T, D] in float32 for ``position_ids`` [N or 1, T]; frequencies ``cat(f, f)``
    (RoFormer, Su et al. 2021, in the rotate-half layout of the hub code)."""
    device = position_ids.device
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float) / head_dim))
    freqs = position_ids.float()[..., None] * inv_freq  # [N, T, D/2]
    angles = torch.cat((freqs, freqs), dim=-1)[:, None]  # [N, 1, T, D]
    return angles.cos(), angles.sin()


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout that is the identity (no copy) when off: the released checkpoints set every rate to 0."""
    return F.dropout(x, p, training) if training and p > 0 else x


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [N, H, T, D] by the angles of cos/sin [N, 1, T, D]: ``x * cos + rotate_half(x) * sin``."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class LLaDALlamaBlock(GradientCheckpointingLayer):
    """One LLaMA-style block of the hub's ``LLaDALlamaBlock`` (attention then gated feed-forward, pre-norm)."""

    def __init__(self, config: LLaDAConfig, layer_idx: int):
        super().__init__()
        self.config, self.layer_idx = config, layer_idx
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.num_key_value_heads, config.head_dim
        d, hidden = config.d_model, config.intermediate_size
        bias, qkv_bias = config.include_bias, bool(config.include_bias or config.include_qkv_bias)
        norm_bias = config.bias_for_layer_norm if config.bias_for_layer_norm is not None else config.include_bias
        self.attn_norm = LLaDARMSNorm(d, config.rms_norm_eps, config.layer_norm_with_affine, bool(norm_bias))
        self.ff_norm = LLaDARMSNorm(d, config.rms_norm_eps, config.layer_norm_with_affine, bool(norm_bias))
        self.q_proj = nn.Linear(d, d, bias=qkv_bias)
        self.k_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=qkv_bias)
        self.attn_out = nn.Linear(d, d, bias=bias)
        self.ff_proj = nn.Linear(d, hidden, bias=bias)
        self.up_proj = nn.Linear(d, hidden, bias=bias)
        self.ff_out = nn.Linear(hidden, d, bias=bias)
        self.act = ACTIVATIONS[config.activation_type]

    def forward(
        self,
        hidden_states: torch.Tensor,  # [N, T, d_model]
        cos: torch.Tensor,  # [N or 1, 1, T, D] float32
        sin: torch.Tensor,
        key_mask: torch.Tensor | None = None,  # [N, 1, 1, S] bool, True = a key that may be attended to
        cache: Cache | None = None,
    ) -> torch.Tensor:
        n, t, _ = hidden_states.shape
        x = self.attn_norm(hidden_states)
        q = self.q_proj(x).view(n, t, self.n_heads, self.head_dim).transpose(1, 2)  # [N, H, T, D]
        k = self.k_proj(x).view(n, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [N, H_kv, T, D]
        v = self.v_proj(x).view(n, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.config.rope_full_precision:  # every released checkpoint: float32, then back to the input dtype
            q, k = apply_rotary(q.float(), cos, sin).type_as(v), apply_rotary(k.float(), cos, sin).type_as(v)
        else:  # the hub code then casts sin/cos to the input dtype
            q, k = apply_rotary(q, cos.type_as(q), sin.type_as(q)), apply_rotary(k, cos.type_as(k), sin.type_as(k))
        if cache is not None:  # keys after RoPE; the cache may return more keys than the window fed [N, H_kv, S, D]
            k, v = cache.update(k, v, self.layer_idx)
        if key_mask is not None and key_mask.shape[-1] != k.shape[-2]:
            raise ValueError(
                f"attention_mask covers {key_mask.shape[-1]} keys but layer {self.layer_idx} attends to "
                f"{k.shape[-2]} (with a cache the mask must follow the cache's key order)"
            )
        if self.n_kv_heads != self.n_heads:
            k = k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, is_causal=False,
            dropout_p=self.config.attention_dropout if self.training else 0.0,
        )  # [N, H, T, D]
        attn = self.attn_out(attn.transpose(1, 2).reshape(n, t, -1))
        hidden_states = hidden_states + _dropout(attn, self.config.residual_dropout, self.training)
        x = self.ff_norm(hidden_states)
        x = self.ff_out(self.act(self.ff_proj(x)) * self.up_proj(x))
        return hidden_states + _dropout(x, self.config.residual_dropout, self.training)


class LLaDAModel(nn.Module):
    """The body under ``model.``: ``transformer.{wte, blocks, ln_f, ff_out}``, the hub's module names."""

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        self.config = config
        norm_bias = config.bias_for_layer_norm if config.bias_for_layer_norm is not None else config.include_bias
        modules: dict[str, nn.Module] = {
            "wte": nn.Embedding(config.rows, config.d_model),
            "blocks": nn.ModuleList(LLaDALlamaBlock(config, i) for i in range(config.n_layers)),
            "ln_f": LLaDARMSNorm(config.d_model, config.rms_norm_eps, config.layer_norm_with_affine, bool(norm_bias)),
        }
        if not config.weight_tying:
            modules["ff_out"] = nn.Linear(config.d_model, config.rows, bias=config.include_bias)
        self.transformer = nn.ModuleDict(modules)


class LLaDAPreTrainedModel(PreTrainedModel):
    config_class = LLaDAConfig
    config: LLaDAConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules: ClassVar[list[str]] = ["LLaDALlamaBlock"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        """The hub code's ``init_fn='mitchell'``: truncated normal (+-3 std) with std 1/sqrt(fan_in), divided by
        sqrt(2 (layer + 1)) for a block's output projections (attn_out, ff_out); other ``init_fn`` values get a
        normal of ``init_std``. Norms start at one, biases at zero. Loaded tensors are skipped (``init.*``)."""
        config = self.config

        def linear(layer: nn.Linear | nn.Embedding, fan_in: int, layer_idx: int | None = None) -> None:
            if config.init_fn == "mitchell":
                std = 1.0 / math.sqrt(fan_in) / (math.sqrt(2 * (layer_idx + 1)) if layer_idx is not None else 1.0)
                init.trunc_normal_(layer.weight, mean=0.0, std=std, a=-3 * std, b=3 * std)
            else:
                init.normal_(layer.weight, mean=0.0, std=config.init_std)
            if getattr(layer, "bias", None) is not None:
                init.zeros_(layer.bias)

        if isinstance(module, LLaDARMSNorm):
            if module.weight is not None:
                init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, LLaDALlamaBlock):
            for name in ("q_proj", "k_proj", "v_proj", "ff_proj", "up_proj"):
                linear(getattr(module, name), config.d_model)
            linear(module.attn_out, config.d_model, module.layer_idx)
            linear(module.ff_out, module.ff_out.in_features, module.layer_idx)
        elif isinstance(module, LLaDAModel):
            linear(module.transformer.wte, config.d_model)
            if "ff_out" in module.transformer:
                linear(module.transformer.ff_out, config.d_model)


class LLaDAModelLM(LLaDAPreTrainedModel):
    """LLaDA mask predictor: ``logits[n, i]`` scores the token at position i (no shift), over V = embedding_size."""

    def __init__(self, config: LLaDAConfig):
        super().__init__(config)
        self.model = LLaDAModel(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.transformer.wte = value

    def get_output_embeddings(self) -> nn.Module:
        """The LM head ``model.transformer.ff_out`` (the embedding itself when ``weight_tying``)."""
        transformer = self.model.transformer
        return transformer.wte if self.config.weight_tying else transformer.ff_out

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.model.transformer["wte" if self.config.weight_tying else "ff_out"] = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,  # [N, T]
        attention_mask: torch.Tensor | None = None,  # [N, S], 1 = real token, 0 = padding; S = T without a cache
        position_ids: torch.LongTensor | None = None,  # [N, T] or [T]; default arange(T)
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        inputs_embeds: torch.Tensor | None = None,  # [N, T, d_model]
        output_hidden_states: bool | None = None,
        cache: Cache | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast | tuple:
        """Logits [N, T or kept, V] of a bidirectional forward.

        ``cache`` (transformers >= 5.24's name; ``past_key_values`` is taken too, ``cache`` wins): every block
        stores its post-RoPE keys/values with ``cache.update`` and attends to what it returns, so the queries of
        a window of the sequence, fed with their true ``position_ids``, see keys computed earlier; the padding
        mask must then cover those keys, in the cache's order. A cache is created when ``use_cache`` and none
        is given. ``logits_to_keep``: 0 = every position, k = the last k, a 1-D tensor = those positions; only
        they go through the LM head. ``output_hidden_states``: the input of every block and the final normed
        state (the hub code's convention).
        """
        if kwargs.get("labels") is not None:
            raise ValueError("LLaDAModelLM computes no loss: the masked-diffusion loss is the caller's")
        if kwargs.get("output_attentions"):
            raise ValueError("output_attentions: attention runs through SDPA, which returns no weights")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        config = self.config
        cache = cache if cache is not None else past_key_values
        use_cache = config.use_cache if use_cache is None else use_cache
        if cache is None and use_cache:
            cache = DynamicCache()
        transformer = self.model.transformer

        x = transformer.wte(input_ids) if inputs_embeds is None else inputs_embeds  # [N, T, d_model]
        t = x.shape[1]
        if config.input_emb_norm:
            x = x * config.d_model**0.5
        x = _dropout(x, config.embedding_dropout, self.training)
        if position_ids is None:
            position_ids = torch.arange(t, device=x.device)
        if position_ids.dim() == 1:
            position_ids = position_ids[None]  # [1, T]
        cos, sin = rotary_cos_sin(position_ids, config.head_dim, config.rope_theta)  # [N or 1, 1, T, D]

        key_mask = None
        if attention_mask is not None:
            if attention_mask.dim() != 2:
                raise ValueError(f"attention_mask must be 2-D [N, keys] (1 = real token), got {attention_mask.dim()}-D")
            if not bool(attention_mask.all()):  # unpadded: no mask at all, SDPA's fastest path
                key_mask = attention_mask.bool()[:, None, None, :]  # [N, 1, 1, S]

        hidden_states: list[torch.Tensor] = []
        for block in transformer.blocks:
            if output_hidden_states:
                hidden_states.append(x)
            x = block(x, cos=cos, sin=sin, key_mask=key_mask, cache=cache)
        x = transformer.ln_f(x)
        if output_hidden_states:
            hidden_states.append(x)

        x = slice_logits_to_keep(x, logits_to_keep)  # [N, kept, d_model]
        head = transformer.wte.weight if config.weight_tying else transformer.ff_out.weight
        bias = None if config.weight_tying else transformer.ff_out.bias
        logits = F.linear(x, head, bias)  # [N, kept, V]
        if config.scale_logits:
            logits = logits * (1 / math.sqrt(config.d_model))
        out = CausalLMOutputWithPast(
            logits=logits, cache=cache, hidden_states=tuple(hidden_states) if output_hidden_states else None
        )
        return out if return_dict is not False else out.to_tuple()


def load_llada_tokenizer(path_or_id: str, revision: str | None = None) -> PreTrainedTokenizerFast:
    """The hub tokenizer (``tokenizer.json`` as it is) with its mask token declared: the hub files name none,
    the model's ``config.json`` has ``mask_token_id``."""
    config = LLaDAConfig.from_pretrained(path_or_id, revision=revision)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path_or_id, revision=revision)
    if config.mask_token_id is None or not 0 <= config.mask_token_id < len(tokenizer):
        raise ValueError(f"{path_or_id}: mask_token_id {config.mask_token_id} is not a token of the tokenizer")
    tokenizer.mask_token = tokenizer.convert_ids_to_tokens(config.mask_token_id)
    return tokenizer


def build_tiny_llada(
    tokenizer: PreTrainedTokenizerFast,
    d_model: int = 64,
    n_heads: int = 4,
    n_kv_heads: int | None = None,
    n_layers: int = 2,
    mlp_hidden_size: int = 128,
    max_sequence_length: int = 1024,
    rope_theta: float = 10_000.0,
    seed: int = 0,
) -> LLaDAModelLM:
    """A freshly initialised LLaDA for ``tokenizer``: its vocabulary and special ids (mask, eos, pad, bos),
    untied LM head as in the released checkpoints. Built under a forked RNG seeded with ``seed``, so building
    a model never moves the caller's global RNG state. The weights get PyTorch's default initialisation of
    ``nn.Linear`` / ``nn.Embedding`` (constructing ``LLaDAModelLM(config)`` does not run ``_init_weights``, as the
    hub class does not either; ``_init_weights`` fills weights that ``from_pretrained`` finds missing); the demo's
    settings were chosen with this initialisation."""
    if tokenizer.mask_token_id is None:
        raise ValueError("build_tiny_llada: the tokenizer declares no mask token")
    config = LLaDAConfig(
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads if n_kv_heads is not None else n_heads,
        n_layers=n_layers,
        mlp_hidden_size=mlp_hidden_size,
        max_sequence_length=max_sequence_length,
        rope_theta=float(rope_theta),
        vocab_size=len(tokenizer),
        embedding_size=len(tokenizer),
        mask_token_id=tokenizer.mask_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LLaDAModelLM(config)
    return model
