"""Inpainting hints from the ground-truth reasoning trace y* (SPEC section 1, steps 2-3; IGPO section 3.2).

y* is tokenised and truncated to the generation length L, then split into consecutive chunks whose
lengths are drawn from U{s_min..s_max}. Tokens that overlap a final-answer statement (every
``\\boxed{..}``/``\\fbox{..}``, ``#### ...``, "The (final) answer is ...", ``<answer>..</answer>``) are
never revealed: a chunk made only of them is not eligible, and a chunk that touches one reveals only its
other tokens. For each attempt ``eta ~ U[eta_low, eta_high]`` and ``floor(eta * N)`` of the N eligible
chunks, chosen uniformly, are revealed at their own positions (``z_hint[i] = y*[i]``).

Short traces: when ``floor(eta * N)`` is 0 but some chunk is eligible, one chunk is revealed (an
attempt without any hint would be a plain re-rollout). A trace with no eligible chunk (empty, or all
answer) gives no plan and its group is not inpainted; the trainer counts it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch

_BOX_START_RE = re.compile(r"\\(?:boxed|fbox)\{")
_LINE_ANSWER_RES = (
    re.compile(r"####.*$", re.MULTILINE),
    re.compile(r"[Tt]he (?:final )?answer is.*$", re.MULTILINE),
    re.compile(r"<answer>.*?(?:</answer>|$)", re.DOTALL),
)


def answer_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of every final-answer statement in ``text`` (the forms
    ``igpo.verify.extract_answer`` reads). An unbalanced box runs to the end of the text."""
    spans = []
    for match in _BOX_START_RE.finditer(text):
        depth, j = 1, match.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        spans.append((match.start(), j))
    for pattern in _LINE_ANSWER_RES:
        spans.extend(m.span() for m in pattern.finditer(text) if m.end() > m.start())
    return sorted(spans)


@dataclass
class HintPlan:
    """A tokenised trace and its chunks. ``chunks`` are the eligible ``[start, end)`` token ranges."""

    trace_ids: torch.Tensor  # [T] T <= L
    answer_mask: torch.Tensor  # [T] bool, True = part of a final-answer statement, never revealed
    chunks: list[tuple[int, int]]

    @property
    def num_chunks(self) -> int:
        return len(self.chunks)


@dataclass
class HintDraw:
    """Hints of G inpainting attempts for one prompt."""

    hint_ids: torch.Tensor  # [G, L] y* tokens at revealed positions, mask_id elsewhere
    hint_mask: torch.Tensor  # [G, L] bool, True = revealed
    eta: torch.Tensor  # [G]
    revealed_chunks: torch.Tensor  # [G] chunks revealed per attempt


def tokenize_trace(tokenizer: Any, trace: str, gen_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of y* truncated to ``gen_length`` [T], and which of them belong to an answer span [T]."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("hints need a fast tokenizer: token offsets locate the final-answer span")
    encoded = tokenizer(trace, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"][:gen_length]
    spans = answer_spans(trace)
    in_answer = [
        end > start and any(start < span_end and end > span_start for span_start, span_end in spans)
        for start, end in encoded["offset_mapping"][:gen_length]
    ]
    return torch.tensor(ids, dtype=torch.long), torch.tensor(in_answer, dtype=torch.bool)


def split_chunks(
    answer_mask: torch.Tensor, s_min: int, s_max: int, generator: torch.Generator | None
) -> list[tuple[int, int]]:
    """Consecutive chunks of U{s_min..s_max} tokens covering the trace; those with at least one
    non-answer token are returned (eligible)."""
    chunks, start, total = [], 0, answer_mask.shape[0]
    while start < total:
        size = int(torch.randint(s_min, s_max + 1, (1,), generator=generator))
        end = min(start + size, total)
        if not bool(answer_mask[start:end].all()):
            chunks.append((start, end))
        start = end
    return chunks


def plan_hints(
    tokenizer: Any, trace: str, gen_length: int, s_min: int, s_max: int, generator: torch.Generator | None
) -> HintPlan | None:
    """Tokenise and chunk one trace; None when no chunk is eligible (nothing can be revealed)."""
    trace_ids, answer_mask = tokenize_trace(tokenizer, trace, gen_length)
    chunks = split_chunks(answer_mask, s_min, s_max, generator)
    if not chunks:
        return None
    return HintPlan(trace_ids=trace_ids, answer_mask=answer_mask, chunks=chunks)


def num_revealed(eta: float, num_chunks: int) -> int:
    """``floor(eta * N)``, at least 1 when a chunk is eligible (see the module docstring)."""
    if num_chunks == 0:
        return 0
    return max(1, math.floor(eta * num_chunks + 1e-9))


def sample_hints(
    plan: HintPlan,
    num_attempts: int,
    eta_low: float,
    eta_high: float,
    gen_length: int,
    mask_id: int,
    generator: torch.Generator | None,
) -> HintDraw:
    """Draw eta and the revealed chunks for each of ``num_attempts`` inpainting attempts."""
    length = plan.trace_ids.shape[0]
    hint_ids = torch.full((num_attempts, gen_length), mask_id, dtype=torch.long)
    hint_mask = torch.zeros((num_attempts, gen_length), dtype=torch.bool)
    eta = eta_low + (eta_high - eta_low) * torch.rand(num_attempts, generator=generator)  # [G]
    revealed = torch.zeros(num_attempts, dtype=torch.long)
    for attempt in range(num_attempts):
        k = num_revealed(float(eta[attempt]), plan.num_chunks)
        chosen = torch.randperm(plan.num_chunks, generator=generator)[:k].tolist()
        for index in chosen:
            start, end = plan.chunks[index]
            hint_mask[attempt, start:end] = ~plan.answer_mask[start:end]
        revealed[attempt] = k
    hint_ids[:, :length] = torch.where(hint_mask[:, :length], plan.trace_ids, hint_ids[:, :length])
    return HintDraw(hint_ids=hint_ids, hint_mask=hint_mask, eta=eta, revealed_chunks=revealed)
