"""Hint chunks from y*: sizes, eta, the final-answer span never revealed, short traces, truncation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from igpo.rl.hints import answer_spans, num_revealed, plan_hints, sample_hints, split_chunks, tokenize_trace

TRACES = [
    r"Add 3 and 4 to get 7, then double it: 14. So \boxed{14} is it.",
    "Natalia sold 48/2 = 24 clips in May.\nIn all 48+24 = 72.\n#### 72",
    "We multiply 6 by 3 and get 18. The answer is: 18",
    "Half of one is 1/2.\nThe final answer is $\\boxed{\\frac{1}{2}}$",
    "<reasoning>2+2=4</reasoning><answer>4</answer>",
]


def test_answer_spans_cover_every_answer_form():
    text = r"a \boxed{x{y}} b \fbox{2} c" + "\n#### 5\nThe answer is 6\n<answer>7</answer>"
    pieces = [text[s:e] for s, e in answer_spans(text)]
    assert pieces == [r"\boxed{x{y}}", r"\fbox{2}", "#### 5", "The answer is 6", "<answer>7</answer>"]


@pytest.mark.parametrize("trace", TRACES)
def test_answer_span_is_never_a_hint(tiny_tokenizer, trace):
    ids, answer = tokenize_trace(tiny_tokenizer, trace, gen_length=128)
    # The tiny tokenizer is character-level: token i is character i, so the answer tokens are exactly the spans.
    spans = answer_spans(trace)
    assert ids.shape[0] == len(trace) and len(spans) >= 1
    assert answer.tolist() == [any(s <= i < e for s, e in spans) for i in range(len(trace))]
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        plan = plan_hints(tiny_tokenizer, trace, 128, 2, 5, generator)
        draw = sample_hints(plan, 8, 0.0, 1.0, 128, mask_id=-1, generator=generator)
        revealed = draw.hint_mask[:, : ids.shape[0]]
        assert not (revealed & answer).any()
        assert not draw.hint_mask[:, ids.shape[0] :].any()


def test_chunks_are_consecutive_with_sizes_in_range():
    generator = torch.Generator().manual_seed(1)
    answer = torch.zeros(103, dtype=torch.bool)
    for _ in range(20):
        chunks = split_chunks(answer, 5, 10, generator)
        assert chunks[0][0] == 0 and chunks[-1][1] == 103
        assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
        assert all(5 <= e - s <= 10 for s, e in chunks[:-1]) and 1 <= chunks[-1][1] - chunks[-1][0] <= 10


def test_chunks_made_only_of_answer_tokens_are_not_eligible():
    answer = torch.tensor([False] * 4 + [True] * 6)
    chunks = split_chunks(answer, 2, 2, torch.Generator().manual_seed(0))
    assert chunks == [(0, 2), (2, 4)]


def test_floor_eta_n_chunks_revealed_at_their_own_positions(tiny_tokenizer):
    trace = "one two three four five six seven eight nine ten eleven twelve"
    generator = torch.Generator().manual_seed(3)
    plan = plan_hints(tiny_tokenizer, trace, 256, 5, 10, generator)
    draw = sample_hints(plan, 16, 0.2, 0.6, 256, mask_id=99, generator=generator)
    for g in range(16):
        k = math.floor(float(draw.eta[g]) * plan.num_chunks)
        assert 0.2 <= float(draw.eta[g]) <= 0.6
        assert int(draw.revealed_chunks[g]) == max(k, 1)
        revealed_chunks = sum(bool(draw.hint_mask[g, s:e].all()) for s, e in plan.chunks)
        assert revealed_chunks == int(draw.revealed_chunks[g])
        positions = draw.hint_mask[g].nonzero().flatten()
        assert torch.equal(draw.hint_ids[g, positions], plan.trace_ids[positions])  # z_hint[i] = y*[i]
        assert (draw.hint_ids[g][~draw.hint_mask[g]] == 99).all()


def test_short_trace_reveals_one_chunk_when_floor_is_zero(tiny_tokenizer):
    # 8 tokens of reasoning + the answer; chunks of 5..10 give N = 1 or 2 and eta <= 0.4 gives floor = 0.
    trace = "x is 3.\n#### 3"
    generator = torch.Generator().manual_seed(0)
    plan = plan_hints(tiny_tokenizer, trace, 64, 5, 10, generator)
    assert plan is not None and math.floor(0.4 * plan.num_chunks) == 0
    draw = sample_hints(plan, 4, 0.1, 0.4, 64, mask_id=0, generator=generator)
    assert (draw.revealed_chunks == 1).all() and draw.hint_mask.any(dim=1).all()
    assert num_revealed(0.0, 3) == 1 and num_revealed(0.5, 0) == 0 and num_revealed(0.6, 5) == 3


def test_trace_without_eligible_chunk_gives_no_plan(tiny_tokenizer):
    assert plan_hints(tiny_tokenizer, r"\boxed{12}", 64, 2, 4, torch.Generator()) is None
    assert plan_hints(tiny_tokenizer, "", 64, 2, 4, torch.Generator()) is None


def test_trace_is_truncated_to_the_generation_length(tiny_tokenizer):
    trace = "a" * 100 + r" \boxed{1}"
    plan = plan_hints(tiny_tokenizer, trace, 32, 3, 6, torch.Generator().manual_seed(0))
    assert plan.trace_ids.shape[0] == 32 and plan.chunks[-1][1] == 32
    draw = sample_hints(plan, 4, 1.0, 1.0, 32, mask_id=0, generator=torch.Generator())
    assert draw.hint_mask.shape == (4, 32) and draw.hint_mask.all()  # eta = 1: every (non-answer) token revealed
