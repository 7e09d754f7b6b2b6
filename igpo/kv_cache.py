"""Block-wise approximate KV cache for the sampler (Fast-dLLM, Wu et al. 2025, section 3.1: prefix and dual cache).

At the start of each block one full forward computes the keys and values of the whole [N, P+L] sequence.
Until the next block starts, the sampler then runs only a window of the sequence through the model:

- ``prefix``: the current block and everything after it; the keys/values of everything before the block
  are reused;
- ``dual``: the current block alone; the keys/values before and after it are reused.

Approximation: within a block, the reused keys/values do not see the tokens the block commits after its
first step (with more than one layer: a prefix token's layer-2 keys depend on its layer-1 output, which
attended to the block's masks). It is exact for a one-layer model, whose keys of a token depend only on
the token and its position: the prompt, the earlier blocks and the masked/hinted suffix do not change
within a block. Refreshing at every block start bounds the staleness to one block.

Keys are stored after RoPE, so the reused keys/values and the window's own ones are concatenated in any
order (bidirectional attention does not depend on the order of the keys); the window's queries get their
true ``position_ids``, and the 2D padding mask follows the key order. Shifted models (Dream: position i is
predicted from output i-1) get a window that starts one position earlier, so the output predicting the
block's first token is computed afresh too.

Needs a model whose forward takes a transformers ``Cache`` (named ``past_key_values`` up to transformers
5.23, ``cache`` from 5.24 on: ``cache_argument`` reads the name off the signature) and ``position_ids``, and
whose layers are all full attention. LLaDA's original remote code does not (it takes no ``position_ids``
and builds no ``Cache``): ``check_kv_cache_support`` says so instead of silently running the full forward.
"""

from __future__ import annotations

import inspect
from typing import Literal

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from igpo.models import DiffusionLM

CacheMode = Literal["prefix", "dual"]


def _innermost(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under training wrappers (DeepSpeed's engine, peft's LoRA model), which pass
    keyword arguments through to it unchanged."""
    while True:
        if hasattr(model, "get_base_model"):  # peft
            model = model.get_base_model()
        elif type(model).__name__ == "DeepSpeedEngine" or isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


# The keyword of a transformers forward that takes the KV cache, newest name first (5.24 renamed it).
CACHE_ARGUMENTS = ("cache", "past_key_values")


def cache_argument(model: torch.nn.Module) -> str | None:
    """The keyword under which ``model.forward`` (under any training wrapper) takes a ``Cache``, or None."""
    params = inspect.signature(_innermost(model).forward).parameters
    return next((name for name in CACHE_ARGUMENTS if name in params), None)


def check_kv_cache_support(model: torch.nn.Module, mode: str) -> None:
    """Raise a clear error if ``model`` cannot run the cached forward of ``mode``."""
    model = _innermost(model)
    name = type(model).__name__
    params = inspect.signature(model.forward).parameters
    missing = [p for p in ("position_ids", "use_cache") if p not in params]
    if cache_argument(model) is None:
        missing.insert(0, " or ".join(CACHE_ARGUMENTS))
    if missing:
        raise NotImplementedError(
            f"cache={mode!r}: {name}.forward takes no {', '.join(missing)} (the transformers Cache API), so it "
            "cannot reuse keys/values (LLaDA's original remote code is such a model); use cache='none'"
        )
    layer_types = getattr(model.config, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types):
        raise NotImplementedError(
            f"cache={mode!r}: {name} has non-full-attention layers {sorted(set(layer_types))}; the block-wise cache "
            "supports full attention only; use cache='none'"
        )


class _ReusedLayer(DynamicLayer):
    """One layer's reused keys/values [N, H, T_reused, D]. ``update`` returns them with the window's own
    keys/values appended and does not keep the latter, so the same cache serves every step of a block."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.keys, self.values = keys, values
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


class BlockKVCache:
    """The sampler's block logits through a block-wise KV cache: ``refresh`` at the first step of a block (one
    full forward that also fills the cache), ``logits`` at the later steps (the window only)."""

    def __init__(self, lm: DiffusionLM, mode: CacheMode, attention_mask: torch.Tensor | None):
        check_kv_cache_support(lm.model, mode)
        self.lm, self.mode = lm, mode
        self._cache_kw = cache_argument(lm.model)
        # [N, P+L], 1 = real token; None when nothing is padded (the model then needs no mask at all).
        self.attention_mask = (
            attention_mask if attention_mask is not None and not bool(attention_mask.all()) else None
        )
        self._cache: Cache | None = None
        self._window = (0, 0)
        self._kv_mask: torch.Tensor | None = None  # [N, T_reused + T_window] padding mask in key order

    def _window_of(self, lo: int, hi: int, length: int) -> tuple[int, int]:
        """[start, end) of the positions fed at the cached steps of block [lo, hi)."""
        start = lo - self.lm.logits_shift
        assert start >= 0, "a shifted model needs at least one prompt token before the completion"
        return start, hi if self.mode == "dual" else length

    def refresh(self, x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """One full forward of x [N, P+L]: the block's logits [N, block, V], and the cache for the block's later
        steps (the keys/values outside the window)."""
        start, end = self._window = self._window_of(lo, hi, x.shape[1])
        full = DynamicCache()
        positions = torch.arange(lo, hi, device=x.device)  # [block]; DiffusionLM.logits applies the shift
        logits = self.lm.logits(x, self.attention_mask, positions, use_cache=True, **{self._cache_kw: full})
        if len(full.layers) == 0:  # the model ignored the cache it was given
            raise NotImplementedError(
                f"cache={self.mode!r}: {type(self.lm.model).__name__} did not fill the transformers Cache it was "
                "given; use cache='none'"
            )
        layers = []
        for layer in full.layers:
            keys, values = layer.keys, layer.values  # [N, H, P+L, D], after RoPE
            # Reused: the positions outside the window (prefix: before it; dual: before and after it).
            layers.append(
                _ReusedLayer(
                    torch.cat([keys[:, :, :start], keys[:, :, end:]], dim=2),
                    torch.cat([values[:, :, :start], values[:, :, end:]], dim=2),
                )
            )
        self._cache = Cache(layers=layers)
        if self.attention_mask is not None:
            m = self.attention_mask
            self._kv_mask = torch.cat([m[:, :start], m[:, end:], m[:, start:end]], dim=1)  # the keys' order
        return logits

    def select(self, rows: torch.Tensor) -> None:
        """Keep the cache of ``rows`` only ([N] bool, or indices into the current batch): rows that finished
        generating leave the batch, and the next forward runs on the others."""
        if self.attention_mask is not None:
            self.attention_mask = self.attention_mask[rows]
        if self._kv_mask is not None:
            self._kv_mask = self._kv_mask[rows]
        for layer in self._cache.layers if self._cache is not None else []:
            layer.keys, layer.values = layer.keys[rows], layer.values[rows]

    def logits(self, x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Block logits [N, block, V] from the window of x alone, attending to the cached keys/values."""
        start, end = self._window
        assert self._cache is not None and (start, end) == self._window_of(lo, hi, x.shape[1]), (
            "refresh first"
        )
        n, device = x.shape[0], x.device
        position_ids = torch.arange(start, end, device=device)[None].expand(n, -1)  # [N, end - start]
        # The block inside the window fed (a shifted model's window starts one position before the block).
        positions = torch.arange(lo - start, hi - start, device=device)  # [block]
        return self.lm.logits(
            x[:, start:end], self._kv_mask, positions, position_ids=position_ids, use_cache=True,
            **{self._cache_kw: self._cache},
        )
