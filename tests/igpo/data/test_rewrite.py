"""rewrite_traces with offline backends: budget, answer check, fallbacks, cache, config checks."""

from __future__ import annotations

import json
import threading
from typing import ClassVar

import pytest

from igpo.data.config import DemoTaskConfig, OpenAIBackendConfig, RewriteConfig
from igpo.data.demo_task import generate_demo_task
from igpo.data.rewrite import (
    CACHE_FILE,
    RewriteCache,
    RewriteCacheError,
    RewriteRequest,
    RowFailure,
    clean_response,
    count_tokens,
    extractive_condense,
    render_messages,
    rewrite_traces,
)
from igpo.data.schema import CANONICAL_SCHEMA, metadata_of, rows_to_table
from igpo.verify import is_correct


class ScriptedBackend:
    """A cacheable in-process teacher that answers from a function of the request and counts its calls."""

    name = "scripted"
    model_id = "scripted-teacher"
    cache_params: ClassVar[dict] = {}
    cacheable = True
    max_concurrency = 2
    batch_size = 1

    def __init__(self, answer):
        self.answer = answer
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def complete(self, request: RewriteRequest) -> str:
        with self._lock:
            self.calls.append(request.question)
        result = self.answer(request)
        if isinstance(result, RowFailure):
            raise result
        return result

    def complete_batch(self, requests):
        raise NotImplementedError


def _demo(n: int = 12, steps: int = 4):
    train, _ = generate_demo_task(DemoTaskConfig(num_train=n, num_test=1, num_steps=steps, seed=1))
    return train


def _concise(request: RewriteRequest) -> str:
    return extractive_condense(request.trace)


def _accounted(counts) -> bool:
    return counts.within_budget + counts.rewritten + counts.fallback_original + counts.dropped == counts.input_rows


def test_extractive_backend_on_the_demo_keeps_answers_and_meets_budget(tiny_tokenizer):
    table = _demo(30)
    result = rewrite_traces(table, RewriteConfig(backend="extractive", token_budget=48, show_progress=False), tiny_tokenizer)
    assert result.counts.rewritten == 30 and _accounted(result.counts) and result.failures.num_rows == 0
    assert result.table.schema.equals(CANONICAL_SCHEMA)
    for row, meta in zip(result.table.to_pylist(), metadata_of(result.table)):
        assert is_correct(row["reasoning"], row["answer"])
        assert len(tiny_tokenizer(row["reasoning"], add_special_tokens=False).input_ids) <= 48
        assert row["reasoning"] == meta["concise_trace"]
        assert meta["rewrite_status"] == "rewritten" and meta["reasoning_tokens"] < meta["original_reasoning_tokens"]


def test_an_empty_table_gives_an_empty_result(tiny_tokenizer):
    empty = _demo(1).slice(0, 0)
    result = rewrite_traces(empty, RewriteConfig(show_progress=False), tiny_tokenizer)
    assert result.table.num_rows == 0 and result.counts.input_rows == 0 and result.failures.num_rows == 0


def test_budget_is_measured_with_the_given_tokenizer(tiny_tokenizer):
    table = _demo(4)
    texts = table.column("reasoning").to_pylist()
    assert count_tokens(tiny_tokenizer, texts) == [len(t) for t in texts]  # character-level: one token per char
    longest = max(len(t) for t in texts)
    backend = ScriptedBackend(_concise)
    result = rewrite_traces(table, RewriteConfig(token_budget=longest, show_progress=False), tiny_tokenizer, backend=backend)
    assert result.counts.within_budget == 4 and backend.calls == []  # already within budget: nothing sent
    forced = rewrite_traces(
        table, RewriteConfig(token_budget=longest, skip_within_budget=False, show_progress=False), tiny_tokenizer, backend=backend
    )
    assert forced.counts.rewritten == 4 and len(backend.calls) == 4


def test_failed_rewrites_fall_back_or_drop_and_are_counted_by_reason(tiny_tokenizer):
    table = _demo(8)
    questions = table.column("question").to_pylist()

    def answer(request: RewriteRequest):
        k = questions.index(request.question)
        concise = extractive_condense(request.trace)
        if k == 0:
            return concise.rsplit("\\boxed", 1)[0] + "\\boxed{12345}"  # answer changed
        if k == 1:
            return concise.rsplit("\\boxed", 1)[0]  # no answer at all
        if k == 2:
            return request.trace  # keeps the answer but not shorter
        if k == 3:
            return RowFailure("request_failed", "HTTP 500 (after 5 attempts)")
        if k == 4:
            return "<think>let me see</think>\n   "  # nothing once the think block is gone
        return "<think>scratch</think>" + concise  # a reasoning teacher's block is stripped

    for fallback in ("keep_original", "drop"):
        config = RewriteConfig(token_budget=60, fallback=fallback, show_progress=False)
        result = rewrite_traces(table, config, tiny_tokenizer, backend=ScriptedBackend(answer))
        counts = result.counts
        assert counts.failures == {"answer_changed": 1, "answer_missing": 1, "empty_response": 1, "over_budget": 1, "request_failed": 1}
        assert counts.rewritten == 3 and _accounted(counts)
        assert result.failures.column("reason").to_pylist() == ["answer_changed", "answer_missing", "over_budget", "request_failed", "empty_response"]
        assert json.loads(result.failures.column("raw")[0].as_py())["response"].endswith("\\boxed{12345}")
        if fallback == "keep_original":
            assert counts.fallback_original == 5 and result.table.num_rows == 8
            kept = result.table.to_pylist()[0]
            assert kept["reasoning"] == table.to_pylist()[0]["reasoning"]
            assert json.loads(kept["metadata"])["rewrite_failure"] == "answer_changed"
        else:
            assert counts.dropped == 5 and result.table.num_rows == 3
        for row in result.table.to_pylist():
            assert is_correct(row["reasoning"], row["answer"])
            assert "<think>" not in row["reasoning"]


def test_cache_serves_a_rerun_and_the_key_covers_prompt_and_model(tiny_tokenizer, tmp_path):
    table = _demo(6)
    config = RewriteConfig(token_budget=60, cache_dir=str(tmp_path / "cache"), show_progress=False)
    first = ScriptedBackend(_concise)
    assert rewrite_traces(table, config, tiny_tokenizer, backend=first).counts.teacher_calls == 6
    again = ScriptedBackend(_concise)
    result = rewrite_traces(table, config, tiny_tokenizer, backend=again)
    assert again.calls == [] and result.counts.cache_hits == 6 and result.counts.rewritten == 6
    other_template = config.model_copy(update={"prompt_template": "Shorten: {trace}"})
    third = ScriptedBackend(_concise)
    rewrite_traces(table, other_template, tiny_tokenizer, backend=third)
    assert len(third.calls) == 6  # another prompt template is another key
    other_model = ScriptedBackend(_concise)
    other_model.model_id = "another-teacher"
    rewrite_traces(table, config, tiny_tokenizer, backend=other_model)
    assert len(other_model.calls) == 6
    assert len(RewriteCache(tmp_path / "cache" / CACHE_FILE)) == 18


def test_failures_are_not_cached_and_identical_prompts_go_once(tiny_tokenizer, tmp_path):
    rows = _demo(2).to_pylist()
    rows.append({**rows[0], "id": rows[0]["id"] + "-copy"})  # same question and trace under another id
    table = rows_to_table(rows)
    config = RewriteConfig(token_budget=60, cache_dir=str(tmp_path), show_progress=False)
    # The first question's prompt fails (it and its copy), the second is answered. (A run in which every
    # request fails is a dead endpoint and an error: tests/faults/test_teacher_down.py.)
    flaky = ScriptedBackend(lambda r: RowFailure("request_failed", "down") if r.question == rows[0]["question"] else _concise(r))
    assert rewrite_traces(table, config, tiny_tokenizer, backend=flaky).counts.failures == {"request_failed": 2}
    assert len(flaky.calls) == 2  # the duplicated prompt was sent once
    healthy = ScriptedBackend(_concise)
    result = rewrite_traces(table, config, tiny_tokenizer, backend=healthy)
    assert len(healthy.calls) == 1 and result.counts.rewritten == 3  # the failure was not cached, the answer was


def test_corrupt_cache_file_is_a_clear_error(tmp_path):
    path = tmp_path / CACHE_FILE
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RewriteCacheError, match=f"{CACHE_FILE}: not a usable rewrite cache"):
        RewriteCache(path)


def test_extractive_condense_on_real_trace_shapes():
    metamath = (
        "Natalia sold 48/2 = 24 clips in May.\nIn total she sold 48 + 24 = 72 clips in April and May.\n"
        "We are happy with this.\nThe answer is: 72"
    )
    assert extractive_condense(metamath) == "Natalia sold 48/2=24 clips in May\nIn total she sold 48+24=72 clips in April and May\n\\boxed{72}"
    r1 = (
        "<think>\nOkay, let me think. Maybe x = 3? Wait, no. Let me redo it: 2x + 1 = 7, so 2x = 6.\n</think>\n"
        "We solve $2x + 1 = 7$, so $2x = 6$ and $x = 3$.\nTherefore the answer is $\\boxed{3}$."
    )
    assert extractive_condense(r1) == "We solve $2x+1=7$\n$2x=6$ and $x=3$\n\\boxed{3}"  # the post-think summary only
    assert extractive_condense("f(x, y) = 3, since we said so.") == "f(x, y)=3"  # commas inside brackets stay
    assert extractive_condense("no maths here at all") == ""
    assert clean_response("<think>a</think>\n\nx=1 \\boxed{1}  ") == "x=1 \\boxed{1}"


def test_transformers_backend_runs_a_local_causal_lm(tiny_tokenizer, tmp_path):
    """A tiny randomly initialised Llama saved with save_pretrained: the real loading and generation path.
    Its output is noise, so every row must fall back with a counted reason; the second run is cached."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tiny_tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
            pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
            bos_token_id=tiny_tokenizer.bos_token_id,
        ))
    model.save_pretrained(tmp_path / "teacher")
    tiny_tokenizer.save_pretrained(tmp_path / "teacher")
    table = _demo(3, steps=2)
    config = RewriteConfig(
        backend="transformers", token_budget=30, cache_dir=str(tmp_path / "cache"), show_progress=False,
        transformers={"model_name_or_path": str(tmp_path / "teacher"), "batch_size": 2, "max_new_tokens": 8},
    )
    state = torch.random.get_rng_state()
    result = rewrite_traces(table, config, tiny_tokenizer)
    assert torch.equal(state, torch.random.get_rng_state())  # generation never moved the global RNG
    assert result.counts.teacher_calls == 3 and _accounted(result.counts) and result.counts.fallback_original == 3
    assert sum(result.counts.failures.values()) == 3
    responses = [json.loads(r)["response"] for r in result.failures.column("raw").to_pylist()]
    assert all(isinstance(r, str) for r in responses)
    again = rewrite_traces(table, config, tiny_tokenizer)
    assert again.counts.cache_hits == 3 and again.counts.teacher_calls == 0
    assert [json.loads(r)["response"] for r in again.failures.column("raw").to_pylist()] == responses


def test_render_messages_fills_the_template():
    config = RewriteConfig(token_budget=100, prompt_template="Q: {question}\nT: {trace}\nA: {answer} ({word_budget} words) \\boxed{{}}")
    system, user = render_messages(config, "q?", "t.", "5")
    assert system == {"role": "system", "content": config.system_prompt}
    assert user == {"role": "user", "content": "Q: q?\nT: t.\nA: 5 (75 words) \\boxed{}"}
    assert len(render_messages(config.model_copy(update={"system_prompt": ""}), "q", "t", "a")) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prompt_template": "Shorten {trace} for {student}"}, "unknown fields \\['student'\\]"),
        ({"prompt_template": "no trace here"}, "must contain \\{trace\\}"),
        ({"prompt_template": "\\boxed{} {trace}"}, "unknown fields|not a valid"),
        ({"backend": "openai"}, "needs openai.model"),
        ({"backend": "transformers"}, "needs transformers.model_name_or_path"),
        ({"token_budget": 0}, "greater than or equal to 1"),
        ({"fallback": "retry"}, "keep_original"),
    ],
)
def test_rewrite_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RewriteConfig(**kwargs)


def test_a_key_pasted_into_the_config_is_rejected_without_being_echoed():
    secret = "sk-live-0123456789abcdef"
    with pytest.raises(ValueError) as err:
        OpenAIBackendConfig(model="m", api_key_env=secret)
    assert "NAME of an environment variable" in str(err.value) and secret not in str(err.value)
    with pytest.raises(ValueError) as err:
        RewriteConfig(backend="openai", openai={"model": "m", "api_key_env": secret})
    assert secret not in str(err.value)
    with pytest.raises(ValueError, match="Extra inputs"):
        OpenAIBackendConfig(model="m", api_key=secret)  # there is no field that could hold a key
