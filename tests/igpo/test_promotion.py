"""igpo.promotion: the promotion rule of the retraining pipeline, case by case."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from igpo.promotion import PromotionConfig, aggregate, decide_promotion, scores_by_benchmark

RULE = PromotionConfig(benchmarks=["gsm8k", "math500"], min_improvement=0.005, max_regression=0.02)


def test_first_version_is_promoted_when_complete():
    assert decide_promotion({"gsm8k": 0.8, "math500": 0.4}, None, RULE).promote
    decision = decide_promotion({"gsm8k": 0.8}, None, RULE)
    assert not decision.promote and "math500" in decision.reason


def test_beats_production_on_the_mean():
    decision = decide_promotion({"gsm8k": 0.86, "math500": 0.47}, {"gsm8k": 0.84, "math500": 0.45}, RULE)
    assert decision.promote and decision.candidate_score == pytest.approx(0.665)
    assert decision.production_score == pytest.approx(0.645)


def test_ties_and_tiny_gains_are_not_promoted():
    same = {"gsm8k": 0.8, "math500": 0.4}
    assert not decide_promotion(same, same, RULE).promote
    assert not decide_promotion({"gsm8k": 0.804, "math500": 0.4}, same, RULE).promote  # gain 0.002 <= 0.005


def test_a_regression_on_one_benchmark_blocks_promotion():
    decision = decide_promotion({"gsm8k": 0.95, "math500": 0.37}, {"gsm8k": 0.80, "math500": 0.40}, RULE)
    assert not decision.promote and "math500 regresses" in decision.reason


def test_missing_or_nan_scores_never_win():
    production = {"gsm8k": 0.1, "math500": 0.1}
    assert not decide_promotion({"gsm8k": 0.9, "math500": math.nan}, production, RULE).promote
    assert not decide_promotion({"gsm8k": 0.9, "amc": 0.9}, production, RULE).promote
    # Production scored on other benchmarks than the rule's: any complete candidate replaces it.
    assert decide_promotion({"gsm8k": 0.2, "math500": 0.2}, {"amc": 0.5}, RULE).promote


def test_weights():
    rule = PromotionConfig(benchmarks=["gsm8k", "amc"], weights={"gsm8k": 1.0, "amc": 3.0})
    assert aggregate({"gsm8k": 0.8, "amc": 0.2}, rule) == pytest.approx(0.35)
    # Worse on the heavily weighted benchmark: not promoted although gsm8k improved more.
    assert not decide_promotion({"gsm8k": 0.9, "amc": 0.15}, {"gsm8k": 0.8, "amc": 0.2}, rule).promote


def test_invalid_rules_fail_naming_the_field():
    with pytest.raises(ValidationError, match="weights"):
        PromotionConfig(benchmarks=["gsm8k"], weights={"amc": 1.0})
    with pytest.raises(ValidationError, match="benchmarks"):
        PromotionConfig(benchmarks=[])
    with pytest.raises(ValidationError, match="benchmarks"):
        PromotionConfig(benchmarks=["gsm8k", "gsm8k"])


def test_scores_by_benchmark_takes_the_headline_metric():
    rows = [{"benchmark": "gsm8k", "metric": "pass@1", "score": 0.8}, {"benchmark": "amc", "metric": "avg@16", "score": 0.2},
            {"benchmark": "amc", "metric": "pass@16", "score": 0.5}]
    assert scores_by_benchmark(rows) == {"gsm8k": 0.8, "amc": 0.2}
