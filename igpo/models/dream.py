"""Dream (Ye et al. 2025, "Dream 7B: Diffusion Large Language Models"; Dream-org/Dream-v0-Base-7B and
Dream-v0-Instruct-7B) as native transformers-5 classes that read the hub checkpoint as it is: config.json
(model_type ``Dream``), model.safetensors (Qwen2 weight names) and the slow tokenizer's vocab.json +
merges.txt. Nothing shipped in the checkpoint repository is executed.

The body is Qwen2's (Dream is initialised from Qwen2.5-7B; transformers ``models/qwen2/modeling_qwen2.py``):
pre-norm decoder layers with RMSNorm, grouped-query attention with q/k/v biases, RoPE, a SwiGLU MLP and an
untied LM head. Two things make it a masked diffusion LM:

- attention is bidirectional: no causal mask, every position attends to every (non-padded) position;
- the logits stay *shifted* as in the autoregressive model it was adapted from: the raw output at position i
  predicts the token at i+1. ``DreamModel`` returns these raw logits; ``igpo.models.DiffusionLM`` aligns them
  (``logits_shift=1`` for model_type ``dream`` after lowercasing, see ``SHIFTED_MODEL_TYPES``).

Deviations from Dream's own ``modeling_dream.py`` (deliberate; a plain forward gives the same numbers):

- a 2-D ``attention_mask`` [N, T] (1 = real token, 0 = left padding) removes padded keys from attention;
  Dream's SDPA call expects a 4-D boolean mask and crashes on it;
- default position ids are Dream's own ``arange`` (after what a cache holds), padded or not: RoPE is relative
  and padded keys are masked, so a left-padded row computes what its real tokens alone compute;
- RoPE's ``inv_freq`` is computed from the config, never stored as a buffer: transformers 5 recreates
  non-persistent buffers uninitialised in ``from_pretrained`` and Dream's ``_init_weights`` never refills it;
- the KV cache is a transformers ``Cache`` passed as ``cache`` (transformers >= 5.24) or ``past_key_values``;
  only SDPA attention; sliding windows, RoPE scaling and M-RoPE raise ``ValueError`` (no Dream checkpoint
  uses them);
- no ``generate``: sampling lives in ``igpo.sampler``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.modeling_rope_utils import RopeParameters
from transformers.modeling_utils import slice_logits_to_keep

# ------------------------------------------------------------------------------------------------ config


@strict
class DreamConfig(PreTrainedConfig):
    """The hub config.json of Dream, read key for key. Size defaults are those of Dream-v0-Instruct-7B; token
    ids have none (they come from the file).

    ``rope_theta`` / ``rope_scaling`` of the hub file become transformers-5 ``rope_parameters``
    (``{"rope_type": "default", "rope_theta": ...}``). ``auto_map`` (the remote code files) is dropped, so a
    saved directory never points at code it does not hold. Settings this implementation does not compute
    raise ``ValueError`` instead of being silently ignored.
    """

    model_type = "Dream"
    default_theta = 1_000_000.0

    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int | None = 4
    hidden_act: str = "silu"
    max_position_embeddings: int = 131072
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    tie_word_embeddings: bool = False
    rope_parameters: RopeParameters | dict | None = None
    use_sliding_window: bool = False
    sliding_window: int | None = None
    max_window_layers: int = 28
    use_mrope: bool = False
    layer_types: list[str] | None = None
    attention_dropout: float | int = 0.0
    mask_token_id: int | None = None
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        kwargs.pop("auto_map", None)  # names modeling_dream.py / configuration_dream.py: never to be run
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.layer_types is None:
            self.layer_types = ["full_attention"] * self.num_hidden_layers
        super().__post_init__(**kwargs)
        self._check_implemented()

    def _check_implemented(self) -> None:
        """ValueError for what ``DreamModel`` does not compute (rather than computing something else)."""
        if self.use_sliding_window:
            raise ValueError("DreamConfig: use_sliding_window=True is not implemented (full attention only)")
        if self.use_mrope:
            raise ValueError("DreamConfig: use_mrope=True (multimodal RoPE) is not implemented")
        rope_type = (self.rope_parameters or {}).get("rope_type", "default")
        if rope_type != "default":
            raise ValueError(
                f"DreamConfig: rope_scaling/rope_parameters type {rope_type!r} is not implemented "
                "(only plain RoPE)"
            )
        if any(t != "full_attention" for t in self.layer_types):
            raise ValueError(f"DreamConfig: layer_types {sorted(set(self.layer_types))}: only full_attention")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"DreamConfig: hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"DreamConfig: num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        head_dim = getattr(self, "head_dim", None)
        if head_dim is not None and head_dim != self.hidden_size // self.num_attention_heads:
            raise ValueError(f"DreamConfig: head_dim {head_dim} != hidden_size // num_attention_heads")


# ------------------------------------------------------------------------------------------------ layers


class DreamRMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich 2019) computed in float32, as Qwen2RMSNorm."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # [N, T, hidden]
        dtype = hidden_states.dtype
        x = hidden_states.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


class DreamRotaryEmbedding(nn.Module):
    """cos/sin of RoPE (RoFormer, Su et al. 2021): angle of position p, pair i = p * theta^(-2i/D), float32.

    ``inv_freq`` is computed from the config (on the CPU, then kept per device), never a state-dict buffer, so
    no loading path can leave it uninitialised."""

    def __init__(self, config: DreamConfig):
        super().__init__()
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.rope_theta = float(config.rope_parameters["rope_theta"])
        self._inv_freq_on: dict[torch.device, torch.Tensor] = {}

    @property
    def inv_freq(self) -> torch.Tensor:  # [D/2] float32, on the CPU
        return self._inv_freq(torch.device("cpu"))

    def _inv_freq(self, device: torch.device) -> torch.Tensor:
        if device not in self._inv_freq_on:
            steps = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device="cpu").float()
            exponent = steps / self.head_dim
            self._inv_freq_on[device] = (1.0 / (self.rope_theta**exponent)).to(device)
        return self._inv_freq_on[device]

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self._inv_freq(position_ids.device)  # [N, T, D/2]
        angles = torch.cat([freqs, freqs], dim=-1)  # [N, T, D]
        return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on x [N, H, T, D] with cos/sin [N, T, D] (the half-split pairing of Qwen2 and Dream)."""
    cos, sin = cos[:, None], sin[:, None]
    return x * cos + _rotate_half(x) * sin


class DreamMLP(nn.Module):
    """SwiGLU feed-forward (Shazeer 2020): down(act(gate(x)) * up(x))."""

    def __init__(self, config: DreamConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class DreamAttention(nn.Module):
    """Bidirectional grouped-query self-attention through torch SDPA. Keys are stored in the cache after
    RoPE; the queries attend to every key the cache returns (reused and fed ones), masked by padding."""

    def __init__(self, config: DreamConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = float(config.attention_dropout)
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,  # [N, T, hidden]
        position_embeddings: tuple[torch.Tensor, torch.Tensor],  # cos, sin [N, T, D]
        attention_mask: torch.Tensor | None,  # [N, 1, 1 or T, T_keys] bool (True = attend) or additive float
        cache: Cache | None = None,
    ) -> torch.Tensor:
        n, t, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(n, t, -1, self.head_dim).transpose(1, 2)  # [N, H, T, D]
        k = self.k_proj(hidden_states).view(n, t, -1, self.head_dim).transpose(1, 2)  # [N, Hkv, T, D]
        v = self.v_proj(hidden_states).view(n, t, -1, self.head_dim).transpose(1, 2)  # [N, Hkv, T, D]
        cos, sin = position_embeddings
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # [N, Hkv, T_keys, D]
        if attention_mask is not None and attention_mask.shape[-1] != k.shape[-2]:
            raise ValueError(
                f"attention_mask covers {attention_mask.shape[-1]} keys but layer {self.layer_idx} attends "
                f"to {k.shape[-2]} (with a cache the mask is [N, T_keys] in the cache's key order)"
            )
        groups = self.num_heads // self.num_kv_heads
        # SDPA's own GQA path without a mask; with one, the memory-efficient kernels want all heads expanded.
        gqa = attention_mask is None
        if groups > 1 and not gqa:
            # [N, H, T_keys, D]: query head h reads kv head h // groups
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attention_mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
            is_causal=False,
            scale=self.scaling,
            enable_gqa=gqa and groups > 1,
        )  # [N, H, T, D]
        return self.o_proj(out.transpose(1, 2).reshape(n, t, self.num_heads * self.head_dim))


class DreamDecoderLayer(GradientCheckpointingLayer):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: DreamConfig, layer_idx: int):
        super().__init__()
        self.self_attn = DreamAttention(config, layer_idx)
        self.mlp = DreamMLP(config)
        self.input_layernorm = DreamRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = DreamRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,  # [N, T, hidden]; positional, so checkpointing propagates its gradient
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,  # set to None by GradientCheckpointingLayer when checkpointing
        **kwargs: Any,
    ) -> torch.Tensor:
        assert position_embeddings is not None
        hidden_states = hidden_states + self.self_attn(
            self.input_layernorm(hidden_states), position_embeddings, attention_mask, cache
        )
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


# ------------------------------------------------------------------------------------------------ models


def _attention_bias(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """The SDPA mask of a 2-D padding mask [N, T_keys] (1 = real): bool [N, 1, 1, T_keys], True = attend; None
    when nothing is padded. A 4-D mask (bool, or additive float) is used as it is."""
    if attention_mask is None:
        return None
    if attention_mask.dim() == 4:
        return attention_mask
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be [N, T_keys] or 4-D, not {tuple(attention_mask.shape)}")
    keep = attention_mask.bool()
    if bool(keep.all()):
        return None
    keep = keep | ~keep.any(-1, keepdim=True)  # a row without real tokens attends to all: no NaN from SDPA
    return keep[:, None, None, :]


class DreamPreTrainedModel(PreTrainedModel):
    """Shared transformers plumbing: config class, weight init, checkpointing and device-map hints."""

    config: DreamConfig
    config_class = DreamConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules: ClassVar[list[str]] = ["DreamDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = False

    def _init_weights(self, module: nn.Module) -> None:
        """Dream's init: normal(0, initializer_range) linear/embedding weights, zero biases and padding row,
        unit norms. (RoPE frequencies need no init: they are computed.)"""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, DreamRMSNorm):
            init.ones_(module.weight)


class DreamBaseModel(DreamPreTrainedModel):
    """Embeddings, decoder layers and final norm: hidden states [N, T, hidden] (the hub's ``model.*``)."""

    def __init__(self, config: DreamConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList([DreamDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = DreamRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = DreamRotaryEmbedding(config)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,  # [N, T]
        attention_mask: torch.Tensor | None = None,  # [N, T_keys], 1 = real token, 0 = padding
        position_ids: torch.Tensor | None = None,  # [N, T] or [1, T]
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,  # [N, T, hidden]
    ) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        n, t = inputs_embeds.shape[:2]
        if position_ids is None:
            # Dream's own forward: positions 0..T-1 after what a cache holds, padded or not. RoPE is relative,
            # so a left-padded row's real tokens see the same distances as alone; and a windowed (KV-cached)
            # forward that passes arange positions of the whole sequence agrees with the full forward.
            past = cache.get_seq_length() if cache is not None and len(cache.layers) > 0 else 0
            position_ids = torch.arange(past, past + t, device=inputs_embeds.device)[None]
        position_ids = position_ids.expand(n, -1)
        cos_sin = self.rotary_emb(position_ids, inputs_embeds.dtype)  # 2 x [N, T, D]
        mask = _attention_bias(attention_mask)
        hidden_states = inputs_embeds
        for layer in self.layers:
            hidden_states = layer(
                hidden_states, position_embeddings=cos_sin, attention_mask=mask, cache=cache
            )
        return self.norm(hidden_states)  # [N, T, hidden]


# Keyword arguments transformers callers (peft, Trainer) pass that this forward may ignore when unset.
_IGNORED_WHEN_UNSET = ("labels", "output_attentions", "output_hidden_states")
_IGNORED = ("return_dict", "cache_position", "num_items_in_batch")


class DreamModel(DreamPreTrainedModel):
    """Dream with its LM head (the hub's class name for it; ``auto_map`` maps ``AutoModel`` here). The logits
    are the raw ones: the output at position i predicts the token at i+1."""

    # transformers-5 form {target: source}; only tied when config.tie_word_embeddings (false for Dream)
    _tied_weights_keys: ClassVar[dict[str, str]] = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: DreamConfig):
        super().__init__(config)
        self.model = DreamBaseModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def get_decoder(self) -> DreamBaseModel:
        return self.model

    def forward(
        self,
        input_ids: torch.Tensor | None = None,  # [N, T]
        attention_mask: torch.Tensor | None = None,  # [N, T_keys], 1 = real token, 0 = left padding
        position_ids: torch.Tensor | None = None,  # [N, T]; default: arange after the cached keys
        past_key_values: Cache | None = None,  # the Cache under its name up to transformers 5.23
        inputs_embeds: torch.Tensor | None = None,  # [N, T, hidden]
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,  # 0: all; k: last k; 1-D tensor: those positions
        cache: Cache | None = None,  # the Cache (transformers >= 5.24 name; wins over past_key_values)
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Raw logits [N, T_kept, V] of the bidirectional forward (no causal mask).

        Cache: each layer calls ``cache.update(keys_after_rope, values, layer_idx)`` and attends to what it
        returns; ``attention_mask`` then covers those keys in the cache's order. A new ``DynamicCache`` is
        made only for ``use_cache=True``; the cache used is returned as ``cache`` of the output. Under
        gradient checkpointing in training the layers drop the cache (a recompute would write it twice).
        """
        for key, value in kwargs.items():
            if key in _IGNORED or (key in _IGNORED_WHEN_UNSET and (value is None or value is False)):
                continue
            raise TypeError(f"DreamModel.forward: unsupported argument {key}={value!r}")
        cache = cache if cache is not None else past_key_values
        if cache is None and use_cache:
            cache = DynamicCache()
        hidden_states = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
        )
        logits = self.lm_head(slice_logits_to_keep(hidden_states, logits_to_keep))  # [N, T_kept, V]
        return CausalLMOutputWithPast(logits=logits, cache=cache)


# ------------------------------------------------------------------------------------------------ tokenizer


def _hub_file(
    path_or_id: str | os.PathLike, filename: str, revision: str | None, required: bool
) -> Path | None:
    """A file of a local directory or a hub repository (through the hub cache); None if optional, absent."""
    local = Path(path_or_id)
    if local.is_dir():
        path = local / filename
        if path.is_file():
            return path
        if required:
            raise FileNotFoundError(f"{path}: missing (a Dream tokenizer needs vocab.json and merges.txt)")
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(str(path_or_id), filename, revision=revision))
    except EntryNotFoundError:
        if required:
            raise
        return None


def load_dream_tokenizer(path_or_id: str | os.PathLike, revision: str | None = None):
    """A fast (tokenizers-backed) Qwen2 byte-level BPE tokenizer built from Dream's slow-tokenizer files.

    Dream ships vocab.json + merges.txt + added_tokens.json + tokenizer_config.json naming a remote
    ``DreamTokenizer`` (a copy of transformers 4's slow Qwen2Tokenizer); its ``auto_map`` is ignored and
    nothing is executed. The result has the same ids as the slow tokenizer, token offsets
    (``return_offsets_mapping``), the special tokens (bos/eos/pad/mask) and the chat template of
    tokenizer_config.json. Every added token keeps the id the files give it (checked).

    A directory with a ``tokenizer.json`` (one this project saved) is read from that file as it is, whatever
    tokenizer it holds: ``Qwen2Tokenizer.from_pretrained`` would put Qwen2's byte-level pre-tokenizer in front
    of it, which changes the ids of any other tokenizer (the tiny character one loses its spaces).
    """
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast, Qwen2Tokenizer

    if Path(path_or_id).is_dir() and (Path(path_or_id) / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(path_or_id)

    def read_json(name: str, required: bool) -> dict:
        path = _hub_file(path_or_id, name, revision, required)
        return json.loads(path.read_text(encoding="utf-8")) if path is not None else {}

    vocab: dict[str, int] = read_json("vocab.json", required=True)
    merges_path = _hub_file(path_or_id, "merges.txt", revision, required=True)
    assert merges_path is not None
    merges = []
    for i, line in enumerate(merges_path.read_text(encoding="utf-8").splitlines()):
        line = line.strip()
        if line and not (i == 0 and line.startswith("#version:")):  # the slow tokenizer's reading rule
            merges.append(tuple(line.split()))
    added_ids: dict[str, int] = read_json("added_tokens.json", required=False)
    config = read_json("tokenizer_config.json", required=False)

    added: dict[int, AddedToken] = {}
    for token_id, spec in (config.get("added_tokens_decoder") or {}).items():
        spec = dict(spec)
        content = spec.pop("content")
        added[int(token_id)] = AddedToken(content, **spec)
    for content, token_id in added_ids.items():
        if token_id in added and added[token_id].content != content:
            raise ValueError(
                f"added token {token_id}: {content!r} in added_tokens.json, "
                f"{added[token_id].content!r} in tokenizer_config.json"
            )
        added.setdefault(token_id, AddedToken(content, special=False, normalized=False))
    token_of_id = {token_id: content for content, token_id in vocab.items()}
    for token_id, token in sorted(added.items()):
        clash = token_of_id.get(token_id, token.content) != token.content
        if clash or vocab.get(token.content, token_id) != token_id:
            raise ValueError(f"added token {token.content!r} id {token_id} clashes with vocab.json")
        vocab[token.content] = token_id  # in the model vocabulary too, so the id is exactly the file's

    def special(name: str) -> str | None:
        value = config.get(name)
        return value.get("content") if isinstance(value, dict) else value

    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=special("unk_token"),
        bos_token=special("bos_token"),
        eos_token=special("eos_token") or "<|endoftext|>",
        pad_token=special("pad_token") or "<|endoftext|>",
        mask_token=special("mask_token"),
        extra_special_tokens=list(config.get("additional_special_tokens") or []),
        added_tokens_decoder=added,
        add_prefix_space=bool(config.get("add_prefix_space", False)),
        clean_up_tokenization_spaces=bool(config.get("clean_up_tokenization_spaces", False)),
        split_special_tokens=bool(config.get("split_special_tokens", False)),
        model_max_length=config.get("model_max_length", 131072),
        chat_template=config.get("chat_template"),
    )
    for token_id, token in added.items():
        got = tokenizer.convert_tokens_to_ids(token.content)
        if got != token_id:
            raise ValueError(f"added token {token.content!r}: id {got}, the files say {token_id}")
    return tokenizer


# ------------------------------------------------------------------------------------------------ tiny


def build_tiny_dream(
    tokenizer: Any,
    *,
    hidden_size: int = 64,
    intermediate_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    max_position_embeddings: int = 1024,
    rope_theta: float = 1_000_000.0,
    seed: int = 0,
) -> DreamModel:
    """A randomly initialised Dream for ``tokenizer`` (vocabulary and special ids from it), built under a
    forked RNG seeded with ``seed``, so building never moves the caller's global RNG."""
    from igpo.tokens import SpecialTokens

    tokens = SpecialTokens.from_tokenizer(tokenizer)
    config = DreamConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        max_window_layers=num_layers,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        mask_token_id=tokens.mask_id,
        pad_token_id=tokens.pad_id,
        eos_token_id=tokens.eos_id,
        bos_token_id=getattr(tokenizer, "bos_token_id", None),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DreamModel(config)
