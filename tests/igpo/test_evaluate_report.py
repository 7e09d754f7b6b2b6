"""Evaluation scores through the shared verifier, and the HTML report."""

from __future__ import annotations

import pandas as pd
import pytest

from igpo.evaluate import BenchmarkConfig, EvalConfig, evaluate_model
from igpo.report import build_report, results_table
from igpo.sampler import SamplerConfig


def test_evaluate_scores_match_per_sample_correctness(tiny_lm):
    table = pd.DataFrame({"id": ["a", "b", "c"], "question": ["1+1", "2+2", "3+3"], "answer": ["2", "4", "6"]})
    sampler = SamplerConfig(gen_length=8, block_length=4, steps=4, temperature=1.0)
    config = EvalConfig(benchmarks=(BenchmarkConfig(name="toy", samples=3, sampler=sampler),), batch_size=4)
    scores, samples = evaluate_model(tiny_lm, {"toy": table}, config, "untrained", progress=False)
    assert len(samples) == 9 and set(samples["sample"]) == {0, 1, 2}
    assert scores.loc[0, "metric"] == "avg@3"
    assert scores.loc[0, "score"] == pytest.approx(samples["correct"].mean())
    assert set(samples.columns) >= {"prompt", "completion", "extracted_answer", "gold", "correct"}


def test_subsets_are_scored_separately_by_a_metadata_key(tiny_lm, monkeypatch):
    import igpo.evaluate as evaluate_module

    monkeypatch.setattr(evaluate_module, "is_correct", lambda completion, gold: gold in {"2", "6"})
    table = pd.DataFrame({
        "id": ["a", "b", "c", "d"], "question": ["1+1", "2+2", "3+3", "4+4"], "answer": ["2", "4", "6", "6"],
        "metadata": ['{"difficulty": "easy"}', '{"difficulty": "hard"}', '{"difficulty": "easy"}',
                     '{"difficulty": "hard"}'],
    })
    sampler = SamplerConfig(gen_length=8, block_length=4, steps=4, temperature=1.0)
    bench = BenchmarkConfig(name="toy", samples=2, sampler=sampler, subsets_by="difficulty")
    scores, samples = evaluate_model(tiny_lm, {"toy": table}, EvalConfig(benchmarks=(bench,)), "m", progress=False)
    by_name = scores.set_index("benchmark")
    assert list(by_name.index) == ["toy", "toy/easy", "toy/hard"]
    assert by_name["score"].tolist() == [0.75, 1.0, 0.5]  # 6/8 samples; easy: 4/4; hard: 2/4
    assert by_name["n_questions"].tolist() == [4, 2, 2] and len(samples) == 8

    table.loc[1, "metadata"] = "{}"
    with pytest.raises(ValueError, match="row 1 has no metadata key 'difficulty'"):
        evaluate_model(tiny_lm, {"toy": table}, EvalConfig(benchmarks=(bench,)), "m", progress=False)


def test_greedy_with_many_samples_is_rejected():
    with pytest.raises(ValueError, match="greedy"):
        BenchmarkConfig(name="x", samples=4, sampler=SamplerConfig(gen_length=8, block_length=4, steps=4))


def test_missing_table_names_the_benchmark(tiny_lm):
    config = EvalConfig(benchmarks=(BenchmarkConfig(name="gsm8k"),))
    with pytest.raises(KeyError, match="gsm8k"):
        evaluate_model(tiny_lm, {}, config, "m", progress=False)


def test_report_embeds_plots_and_scores():
    scores = pd.DataFrame([
        {"model": "base", "benchmark": "demo", "metric": "pass@1", "score": 0.1},
        {"model": "sft+igpo", "benchmark": "demo", "metric": "pass@1", "score": 0.5},
    ])
    curves = {
        "grpo": pd.DataFrame({"step": [1, 2, 3], "reward": [0.1, 0.2, 0.3], "all_wrong_fraction": [0.5, 0.5, 0.4]}),
        "igpo": pd.DataFrame({"step": [1, 2, 3], "reward": [0.2, 0.3, 0.4], "all_wrong_fraction": [0.4, 0.3, 0.2]}),
    }
    page = build_report(scores, curves)
    assert page.count("data:image/png;base64,") == 2
    assert "sft+igpo" in page and "0.500" in page
    text = results_table(scores, curves)
    assert "igpo: mean all-wrong fraction 0.300" in text
