"""Whether a newly trained model replaces the one in production: a pure function of two score dicts.

Scores are ``{"<benchmark>": accuracy, ...}`` as ``igpo.evaluate`` reports them (higher is better). The
candidate is promoted when

- every configured benchmark has a finite score for the candidate (a missing score is never a win);
- no configured benchmark regresses by more than ``max_regression``;
- the chosen aggregate (mean of the configured benchmarks, weighted if weights are given) beats the
  production aggregate by more than ``min_improvement``.

With no production version yet the candidate is promoted if its scores are complete (there is nothing to
beat). The orchestration around it (reading the ZenML Model versions, setting the stage) lives in the
retraining pipeline; this module never imports zenml.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import BaseModel, Field, model_validator

from igpo.config_base import StrictConfig


class PromotionConfig(StrictConfig):
    """The rule that decides promotion to production."""

    benchmarks: list[str] = Field(
        ..., min_length=1, description="Benchmarks that decide (keys of the score dicts), e.g. [gsm8k, math500, amc]."
    )
    weights: dict[str, float] | None = Field(
        None, description="Weight of each benchmark in the aggregate (None = plain mean); keys must be the benchmarks."
    )
    min_improvement: float = Field(
        0.0, ge=0.0, description="The candidate's aggregate must exceed production's by more than this (absolute)."
    )
    max_regression: float = Field(
        1.0, ge=0.0, description="Largest drop allowed on any single benchmark (absolute; 1.0 = no per-benchmark check)."
    )

    @model_validator(mode="after")
    def _weights_match(self) -> PromotionConfig:
        if len(set(self.benchmarks)) != len(self.benchmarks):
            raise ValueError(f"benchmarks: duplicates in {self.benchmarks}")
        if self.weights is not None:
            if set(self.weights) != set(self.benchmarks):
                raise ValueError(f"weights: keys {sorted(self.weights)} must be the benchmarks {sorted(self.benchmarks)}")
            if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
                raise ValueError("weights: must be >= 0 with a positive sum")
        return self


class PromotionDecision(BaseModel):
    """The verdict and why, kept as metadata on the candidate model version."""

    promote: bool = Field(description="Whether the candidate becomes the production version.")
    reason: str = Field(description="One line explaining the verdict.")
    candidate_score: float | None = Field(description="Aggregate of the candidate (None if its scores are incomplete).")
    production_score: float | None = Field(description="Aggregate of production (None if there is none).")


def aggregate(scores: Mapping[str, float], config: PromotionConfig) -> float | None:
    """Weighted mean of the configured benchmarks, or None if any is missing or not finite."""
    values = {name: scores.get(name) for name in config.benchmarks}
    if any(v is None or not math.isfinite(float(v)) for v in values.values()):
        return None
    weights = config.weights or {name: 1.0 for name in config.benchmarks}
    total = sum(weights.values())
    return sum(weights[name] * float(values[name]) for name in config.benchmarks) / total


def decide_promotion(
    candidate: Mapping[str, float], production: Mapping[str, float] | None, config: PromotionConfig
) -> PromotionDecision:
    """Promote ``candidate`` over ``production`` (None: no production version yet) under ``config``."""
    candidate_score = aggregate(candidate, config)
    if candidate_score is None:
        missing = [b for b in config.benchmarks if b not in candidate or not math.isfinite(float(candidate[b]))]
        return PromotionDecision(promote=False, reason=f"candidate lacks scores for {missing}",
                                 candidate_score=None, production_score=None)
    if production is None:
        return PromotionDecision(promote=True, reason="no production version yet",
                                 candidate_score=candidate_score, production_score=None)
    production_score = aggregate(production, config)
    if production_score is None:
        return PromotionDecision(promote=True, reason="production has incomplete scores for the configured benchmarks",
                                 candidate_score=candidate_score, production_score=None)
    for name in config.benchmarks:
        drop = float(production[name]) - float(candidate[name])
        if drop > config.max_regression:
            return PromotionDecision(
                promote=False, reason=f"{name} regresses by {drop:.4f} > max_regression {config.max_regression}",
                candidate_score=candidate_score, production_score=production_score)
    gain = candidate_score - production_score
    if gain > config.min_improvement:
        return PromotionDecision(promote=True, reason=f"aggregate {candidate_score:.4f} beats {production_score:.4f} by {gain:.4f}",
                                 candidate_score=candidate_score, production_score=production_score)
    return PromotionDecision(
        promote=False, reason=f"aggregate gain {gain:.4f} is not above min_improvement {config.min_improvement}",
        candidate_score=candidate_score, production_score=production_score)


def scores_by_benchmark(rows: list[Mapping[str, object]]) -> dict[str, float]:
    """``{benchmark: score}`` from the rows of an evaluation scores table (``benchmark``, ``metric``, ``score``);
    the first metric listed for a benchmark is its headline (pass@1, or avg@k for sampled benchmarks)."""
    out: dict[str, float] = {}
    for row in rows:
        out.setdefault(str(row["benchmark"]), float(row["score"]))  # type: ignore[arg-type]
    return out
