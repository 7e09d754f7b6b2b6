"""Semi-autoregressive low-confidence remasking sampler with inpainting (SPEC section 2; LLaDA, Nie et al. 2025,
Appendix B; IGPO section 3.2 for inpainting).

The completion starts as L masks split into K = L / block_length blocks. Each block gets steps / K
iterations; each iteration predicts the block's masked positions (Gumbel-max at temperature T, argmax at
T = 0), scores them (probability of the chosen token, or a uniform draw for ``random`` remasking) and
commits the most confident ones, the per-iteration counts spread evenly over the block's iterations.

Inpainting: ``hint_mask`` marks completion positions pre-filled with ``hint_ids``. They are never masked,
never changed, and never counted in the transfer schedule, so they condition the rest of the completion.

Unlike the reference code, the whole batch of B*G sequences moves together (per-sample commit counts are
handled by ranking, not a Python loop), logits are computed for the current block only, in float32, and
all randomness comes from the caller's ``torch.Generator``.

Fast modes (Fast-dLLM, Wu et al. 2025), off by default, so the defaults are the exact sampler above:

- ``cache="prefix"`` / ``"dual"``: block-wise approximate KV cache (section 3.1, ``igpo.kv_cache``). The
  first iteration of a block is the exact full forward and fills the cache; its later iterations run only
  the block and the suffix (prefix cache) or the block alone (dual cache) against cached keys/values
  that do not see the tokens committed since the block started. Exact when a block has one iteration.
- ``threshold``: confidence-aware parallel decoding (section 3.2). Each iteration commits every masked
  position of the block whose confidence exceeds the threshold, and at least the most confident one; a
  block takes as many iterations as it needs (at most its number of masks) and ``steps`` is ignored.

Deviations from Fast-dLLM's released code (NVlabs/Fast-dLLM ``llada/generate.py``): a position commits
when its confidence is strictly above the threshold (the released code keeps ``>=``), so threshold 1.0
means exactly one token per iteration; confidences are float32, not float64; the cache works with
left-padded batches, inpainting hints and classifier-free guidance (one cache per guidance branch).

Early exit (``early_exit``, on by default; not in LLaDA or Fast-dLLM): a row whose completion holds a stop
token (``model.tokens.stop_ids``) with every position before it committed (hints count as committed) can no
longer change up to that stop, and that is all decoding, rewards, ``completion_mask`` and the loss depend on
(the RL log-probs see the completion fully masked, and the loss keeps the tokens up to the first stop).
It leaves the batch (later forwards, and the KV caches of both guidance branches, hold the unfinished rows
only) and everything after its first stop that is not a hint is set to that stop token; generation ends when
no row is unfinished. A row with no mask left leaves too. The text up to the first stop is the one the
sampler gives with ``early_exit=False``; only the tail after it differs (stop tokens instead of whatever the
model would have filled in).

Only the masked positions of the block are sampled: the Gumbel noise, the softmax and the confidences are
computed for them alone, not for committed or hinted positions.

Randomness: each row draws from its own ``torch.Generator``, seeded from the caller's generator at the start
of the call (one draw of N seeds), so a row's samples do not depend on which other rows are still in the
batch; this is what keeps ``early_exit`` exact at T > 0. Nothing touches the global RNG when a generator is
given. Exactness also needs a row's logits not to depend on the batch size: bitwise so on CPU for the tiny
test models; GPU matmul kernels chosen by batch size may differ in the last bits, which can flip a near-tie.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, model_validator

from igpo.config_base import StrictConfig
from igpo.kv_cache import BlockKVCache
from igpo.models import DiffusionLM


class SamplerConfig(StrictConfig):
    """Generation settings (reference run: L = 256, block 32, steps = L / 2, T = 1.2 for rollouts)."""

    gen_length: int = Field(256, ge=1, description="Completion length L in tokens.")
    block_length: int = Field(32, ge=1, description="Semi-autoregressive block length; must divide gen_length.")
    steps: int = Field(128, ge=1, description="Total denoising iterations; a multiple of the number of blocks.")
    temperature: float = Field(0.0, ge=0.0, description="Gumbel-max sampling temperature; 0 is greedy.")
    cfg_scale: float = Field(0.0, ge=0.0, description="Classifier-free guidance scale; 0 disables it.")
    remasking: Literal["low_confidence", "random"] = Field(
        "low_confidence", description="Which masked positions to commit first: most confident, or random."
    )
    cache: Literal["none", "prefix", "dual"] = Field(
        "none",
        description="Block-wise approximate KV cache (Fast-dLLM): 'prefix' reuses the keys/values before the block "
        "and runs the block and the suffix; 'dual' also reuses the suffix and runs the block alone. Refreshed by a "
        "full forward at every block start. 'none' is exact.",
    )
    threshold: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Confidence-threshold parallel decoding (Fast-dLLM): commit every masked position of the block "
        "whose confidence exceeds it, at least one per iteration, until the block has no mask; `steps` is then "
        "ignored (a block takes at most its number of masks iterations). 1.0 commits one token per iteration. "
        "Needs remasking='low_confidence'. None = the fixed schedule of `steps`.",
    )
    early_exit: bool = Field(
        True,
        description="A row leaves the batch once it holds a stop token with every position before it committed "
        "(its text can no longer change); its positions after the stop are set to that stop token, and "
        "generation ends when every row has left. Texts, rewards and losses equal those of False; fewer forwards.",
    )

    @model_validator(mode="after")
    def _check_schedule(self) -> SamplerConfig:
        if self.gen_length % self.block_length:
            raise ValueError(
                f"gen_length ({self.gen_length}) must be a multiple of block_length ({self.block_length})"
            )
        num_blocks = self.gen_length // self.block_length
        if self.threshold is None and self.steps % num_blocks:  # threshold decoding does not use `steps`
            raise ValueError(f"steps ({self.steps}) must be a multiple of the number of blocks ({num_blocks})")
        if self.threshold is not None and self.remasking != "low_confidence":
            raise ValueError(
                f"threshold ({self.threshold}) needs remasking='low_confidence' (a confidence to compare), "
                f"got remasking={self.remasking!r}"
            )
        return self

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.num_blocks


def num_transfer_tokens(mask_counts: torch.Tensor, steps: int) -> torch.Tensor:
    """Tokens to commit at each of ``steps`` iterations, spread evenly; the remainder goes to the first ones.

    mask_counts: [N] masked positions per sequence in the block. Returns [N, steps], rows summing to counts.
    """
    base = mask_counts // steps  # [N]
    remainder = mask_counts % steps  # [N]
    step_index = torch.arange(steps, device=mask_counts.device)  # [steps]
    return base[:, None] + (step_index[None, :] < remainder[:, None]).long()


def gumbel_argmax(logits: torch.Tensor, temperature: float, uniform: torch.Tensor | None) -> torch.Tensor:
    """Sample ``softmax(logits / T)`` by the Gumbel-max trick with the given uniform draws (same shape as
    logits); argmax at T = 0 (``uniform`` unused). logits: [..., V] float32."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    assert uniform is not None, "sampling at T > 0 needs uniform draws"
    tiny = torch.finfo(logits.dtype).tiny
    gumbel = -torch.log(-torch.log(uniform.clamp(tiny, 1.0 - 1e-7)))
    return (logits / temperature + gumbel).argmax(dim=-1)


def commit_mask(confidence: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the ``counts[n]`` highest-confidence entries of each row. confidence: [N, M], counts: [N]."""
    order = torch.argsort(confidence, dim=1, descending=True, stable=True)  # [N, M]
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ranks < counts[:, None]


def row_generators(generator: torch.Generator | None, n: int, device: torch.device) -> list[torch.Generator]:
    """One generator per row on ``device``, seeded by one draw of ``n`` seeds from ``generator`` (the global RNG
    if None), so that a row's samples are a function of its own history, whichever rows share its batch."""
    seeds = torch.randint(2**62, (n,), generator=generator, device=generator.device if generator else "cpu")
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds.tolist()]


def _row_uniform(generators: list[torch.Generator], counts: list[int], width: int, device: torch.device) -> torch.Tensor:
    """[sum(counts), width] float32 uniform draws: ``counts[r]`` rows of them from ``generators[r]``, in row order."""
    draws = [torch.rand((c, width), generator=g, device=device) for g, c in zip(generators, counts) if c]
    return torch.cat(draws) if draws else torch.empty(0, width, device=device)


def finished_rows(completion: torch.Tensor, stop_ids: torch.Tensor, mask_id: int) -> torch.Tensor:
    """[N] bool: rows that hold a stop token before their first mask, or no mask at all (their text up to the
    first stop can no longer change). completion: [N, L]; stop_ids: [S]."""
    length = completion.shape[1]
    positions = torch.arange(length, device=completion.device)  # [L]
    first_mask = torch.where(completion == mask_id, positions, length).min(1).values  # [N], L if none
    first_stop = torch.where(torch.isin(completion, stop_ids), positions, length).min(1).values  # [N], L if none
    return (first_stop < first_mask) | (first_mask == length)


def fill_after_stop(completion: torch.Tensor, stop_ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Every position after a row's first stop token set to that token, except where ``keep`` (hints, which
    never change); rows without a stop unchanged. completion: [N, L]; keep: [N, L] bool."""
    length = completion.shape[1]
    positions = torch.arange(length, device=completion.device)  # [L]
    first_stop = torch.where(torch.isin(completion, stop_ids), positions, length).min(1).values  # [N]
    stop_token = completion.gather(1, first_stop.clamp_max(length - 1)[:, None])  # [N, 1]
    return torch.where((positions[None] > first_stop[:, None]) & ~keep, stop_token, completion)


def _leave_finished(
    completion: torch.Tensor,  # [N, L], a view of the sequences: finished rows are filled in place
    live: torch.Tensor,  # [N'] rows still generating
    stop_ids: torch.Tensor,
    mask_id: int,
    hints: torch.Tensor,  # [N, L] bool
    caches: list[BlockKVCache] | None,
    trace: list[torch.Tensor] | None,
) -> torch.Tensor:
    """The rows of ``live`` that are not finished. The finished ones leave the caches and get their tails filled
    with their stop token; the masks so filled are recorded in ``trace`` with the iteration that finished them."""
    done = finished_rows(completion[live], stop_ids, mask_id)  # [N']
    if not done.any():
        return live
    rows = live[done]
    was_masked = completion[rows] == mask_id  # [N'', L]
    completion[rows] = fill_after_stop(completion[rows], stop_ids, hints[rows])
    if trace is not None:
        if not trace:  # finished before any iteration (a stop among the hints)
            trace.append(torch.zeros_like(completion, dtype=torch.bool))
        trace[-1][rows] |= was_masked
    for cache in caches or []:
        cache.select(~done)
    return live[~done]


@dataclass
class SamplerStats:
    """What a ``generate`` call ran: model forwards (a guided iteration runs two) and rows through them."""

    forwards: int = 0
    rows_forwarded: int = 0


@torch.no_grad()
def generate(
    model: DiffusionLM,
    prompt_ids: torch.Tensor,  # [N, P] left-padded prompts, N = B*G
    config: SamplerConfig,
    generator: torch.Generator | None = None,
    prompt_mask: torch.Tensor | None = None,  # [N, P] 1 = real prompt token, 0 = left padding
    hint_ids: torch.Tensor | None = None,  # [N, L] tokens of pre-filled positions
    hint_mask: torch.Tensor | None = None,  # [N, L] bool, True = pre-filled (inpainting hint)
    trace: list[torch.Tensor] | None = None,
    stats: SamplerStats | None = None,
) -> torch.Tensor:
    """Denoise L masks after each prompt; returns the completions [N, L].

    ``trace``, if given, receives the [N, L] boolean mask of positions committed at each iteration
    (for tests and diagnostics); the masks early exit fills after a finished row's stop count as committed
    by the iteration that finished the row. ``stats``, if given, counts the forwards run.
    """
    n, p = prompt_ids.shape
    length, mask_id = config.gen_length, model.tokens.mask_id
    device = prompt_ids.device
    x = torch.cat([prompt_ids, torch.full((n, length), mask_id, dtype=prompt_ids.dtype, device=device)], 1)
    hints = torch.zeros(n, length, dtype=torch.bool, device=device) if hint_mask is None else hint_mask  # [N, L]
    if hint_mask is not None:
        assert hint_ids is not None, "hint_mask needs hint_ids"
        x[:, p:] = torch.where(hint_mask, hint_ids, x[:, p:])
    attention_mask = None
    if prompt_mask is not None:
        attention_mask = torch.cat([prompt_mask.long(), torch.ones(n, length, dtype=torch.long, device=device)], 1)
    stochastic = config.temperature > 0 or config.remasking == "random"
    generators = row_generators(generator, n, device) if stochastic else []
    stop_ids = torch.tensor(model.tokens.stop_ids, device=device)  # [S]
    live = torch.arange(n, device=device)  # [N'] rows still generating; x keeps every row
    # One cache per distinct input: the conditional sequence, and the prompt-masked one of guidance.
    caches = None
    if config.cache != "none":
        branches = 2 if config.cfg_scale > 0 else 1
        caches = [BlockKVCache(model, config.cache, attention_mask) for _ in range(branches)]

    for k in range(config.num_blocks):
        if not len(live):
            break  # every row has finished
        lo, hi = p + k * config.block_length, p + (k + 1) * config.block_length
        if config.threshold is None:
            # Hints are not masks, so they never enter the schedule.
            schedule = num_transfer_tokens((x[:, lo:hi] == mask_id).sum(1), config.steps_per_block)  # [N, S]
            iterations = config.steps_per_block
        else:
            iterations = config.block_length  # each iteration commits >= 1 mask of every row that has one
        for s in range(iterations):
            if config.early_exit:
                live = _leave_finished(x[:, p:], live, stop_ids, mask_id, hints, caches, trace)
            block = x[live, lo:hi]  # [N', block]
            masked = block == mask_id  # [N', block]
            if not masked.any():
                break  # also: a block of hints only (or no row left) needs no forward
            rows_mask = None if attention_mask is None else attention_mask[live]
            logits = _guided_logits(
                model, caches, x[live], rows_mask, lo, hi, masked, p, config.cfg_scale, s == 0, stats
            )  # [M, V]: the masked positions only, row by row
            counts = masked.sum(1).tolist()  # masks per row
            rows_generators = [generators[r] for r in live.tolist()] if stochastic else []
            uniform = None
            if config.temperature > 0:
                uniform = _row_uniform(rows_generators, counts, logits.shape[-1], device)  # [M, V]
            x0 = gumbel_argmax(logits, config.temperature, uniform)  # [M]
            if config.remasking == "low_confidence":
                probs = torch.softmax(logits, dim=-1)
                picked = probs.gather(-1, x0[:, None]).squeeze(-1)  # [M]
            else:
                picked = _row_uniform(rows_generators, counts, 1, device).squeeze(-1)  # [M]
            confidence = torch.full(masked.shape, -torch.inf, device=device).masked_scatter(masked, picked)
            if config.threshold is None:
                counts_now = schedule[live, s]  # [N']
            else:
                # Every mask above the threshold, and the most confident one when none is.
                counts_now = (confidence > config.threshold).sum(1).clamp_min(1)  # [N']
            transfer = commit_mask(confidence, counts_now) & masked  # [N', block]
            x[live, lo:hi] = torch.where(transfer, block.masked_scatter(masked, x0), block)
            if trace is not None:
                step_mask = torch.zeros(n, length, dtype=torch.bool, device=device)
                step_mask[live, lo - p : hi - p] = transfer
                trace.append(step_mask)
    if config.early_exit:  # the tails of the rows whose stop came at the last iterations
        _leave_finished(x[:, p:], live, stop_ids, mask_id, hints, caches, trace)
    return x[:, p:]


def _block_logits(
    model: DiffusionLM,
    cache: BlockKVCache | None,
    x: torch.Tensor,  # [N, P+L]
    attention_mask: torch.Tensor | None,
    lo: int,
    hi: int,  # the block is x[:, lo:hi]
    block_start: bool,
    stats: SamplerStats | None,
) -> torch.Tensor:
    """Raw block logits [N, block, V]: a full forward (exact, or at a block start, filling the cache), or a
    cached forward of the block's window."""
    if stats is not None:
        stats.forwards += 1
        stats.rows_forwarded += x.shape[0]
    if cache is None:
        return model.logits(x, attention_mask, torch.arange(lo, hi, device=x.device))
    return cache.refresh(x, lo, hi) if block_start else cache.logits(x, lo, hi)


def _guided_logits(
    model: DiffusionLM,
    caches: list[BlockKVCache] | None,
    x: torch.Tensor,  # [N, P+L]
    attention_mask: torch.Tensor | None,
    lo: int,
    hi: int,  # the block is x[:, lo:hi]
    masked: torch.Tensor,  # [N, block] bool, the positions whose logits are returned
    prompt_length: int,
    cfg_scale: float,
    block_start: bool,
    stats: SamplerStats | None,
) -> torch.Tensor:
    """Logits [M, V] in float32 of the M masked positions of the block (row by row), with classifier-free
    guidance against a fully masked prompt if cfg_scale > 0, and the mask token excluded from the candidates."""
    cond_cache, uncond_cache = (caches[0], caches[-1]) if caches else (None, None)  # [-1]: used with cfg only
    logits = _block_logits(model, cond_cache, x, attention_mask, lo, hi, block_start, stats)[masked].float()
    if cfg_scale > 0:
        unconditional = x.clone()
        unconditional[:, :prompt_length] = model.tokens.mask_id
        uncond_logits = _block_logits(model, uncond_cache, unconditional, attention_mask, lo, hi, block_start, stats)
        uncond_logits = uncond_logits[masked].float()
        logits = uncond_logits + (cfg_scale + 1) * (logits - uncond_logits)
    # A committed position must hold a real token: [MASK] itself is never a prediction.
    logits[..., model.tokens.mask_id] = -torch.inf
    return logits
