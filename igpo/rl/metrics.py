"""Per-step RL metrics (a pydantic model), the phase timer, and the tally that sums counts over ranks."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from pydantic import BaseModel, ConfigDict, Field

from igpo.distributed import all_reduce_sum

PHASES = ("rollout", "reward", "repair", "logprobs", "advantages", "update")


class PhaseSeconds(BaseModel):
    """Wall-clock seconds of each phase of one step (this rank)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rollout: float = Field(0.0, description="Generating the G completions per prompt.")
    reward: float = Field(0.0, description="Decoding and scoring them.")
    repair: float = Field(
        0.0, description="Inpainting rollouts and replacements (IGPO), re-sampling rounds (dynamic); ~0 for GRPO."
    )
    logprobs: float = Field(0.0, description="Old-policy and reference log-probs (no grad).")
    advantages: float = Field(0.0, description="Group advantages.")
    update: float = Field(0.0, description="Current-policy log-probs, loss, backward and optimizer steps (mu updates).")


class RLStepMetrics(BaseModel):
    """What one RL step did, summed over ranks where it is a count (rank-0 timings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int = Field(description="Steps (rollout batches) done so far.")
    reward: float = Field(description="Mean total reward of the sampled completions, before repair.")
    accuracy: float = Field(description="Fraction of sampled completions that are correct, before repair.")
    all_wrong_fraction: float = Field(
        description="Fraction of groups with every completion wrong in the policy's first rollout batch, before repair."
    )
    all_wrong_fraction_after_repair: float = Field(
        0.0, description="Fraction of the trained groups with every completion wrong, after repair (or re-sampling)."
    )
    zero_advantage_fraction: float = Field(description="Fraction of groups with all-equal rewards, after repair.")
    completions_generated: int = Field(
        0, description="Completions sampled this step: rollouts + inpainting attempts + re-sampled rollouts."
    )
    completions_generated_total: int = Field(0, description="Completions sampled so far in the run (across resumes).")
    prompts_resampled: int = Field(0, description="Dynamic sampling: fresh prompts drawn (G completions each).")
    groups_resampled: int = Field(0, description="Dynamic sampling: zero-variance groups replaced by fresh ones with variance.")
    groups_unfilled: int = Field(0, description="Dynamic sampling: zero-variance groups kept after the last round.")
    resample_rounds: int = Field(0, description="Dynamic sampling: re-sampling rounds run (summed over ranks).")
    inpaint_attempts: int = Field(description="Inpainted completions generated.")
    inpaint_successes: int = Field(description="Inpainted completions that are correct.")
    groups_repaired: int = Field(description="All-wrong groups where at least one completion was replaced by a correct inpainted one.")
    completions_replaced: int = Field(description="Wrong completions replaced by correct inpainted ones.")
    groups_without_hints: int = Field(description="All-wrong groups left alone because y* had no eligible chunk.")
    revealed_hint_ratio: float = Field(description="Hint tokens revealed / y* tokens (truncated to L), over attempts.")
    hint_tokens: int = Field(description="Hint positions inside the real completions of the training batch.")
    hint_tokens_kept: int = Field(description="Of those, the ones the entropy filter keeps in the loss.")
    kl: float | None = Field(description="Mean k3 KL to the reference over loss tokens; None when beta = 0 (no reference).")
    clip_fraction: float = Field(description="Fraction of loss tokens (sequences with the GSPO ratio) clipped.")
    entropy: float = Field(description="Mean policy entropy over real completion tokens (old-policy pass).")
    loss: float = Field(description="Mean loss of the mu updates.")
    grad_norm: float = Field(description="Global gradient norm of the last update, before clipping.")
    learning_rate: float = Field(description="Learning rate after the step.")
    completion_length: float = Field(description="Mean real completion length in tokens (through the first EOS).")
    seconds: PhaseSeconds = Field(description="Seconds per phase.")
    skipped_updates: int = Field(0, description="Updates skipped so far for a non-finite loss or gradient.")


class PhaseTimer:
    """``with timer("rollout"): ...`` adds the block's wall-clock time to that phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        assert phase in PHASES, phase
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - start

    def phases(self) -> PhaseSeconds:
        return PhaseSeconds(**self.seconds)


class StepTally:
    """Sums of one step on one rank; ``metrics`` adds them over ranks and derives the means."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.sums[key] += float(value)

    def metrics(
        self, step: int, timer: PhaseTimer, grad_norm: float, learning_rate: float, has_reference: bool,
        device: torch.device, skipped_updates: int = 0, completions_before: int = 0,
    ) -> RLStepMetrics:
        keys = sorted(self.sums)
        totals = all_reduce_sum(torch.tensor([self.sums[k] for k in keys], dtype=torch.float64, device=device))
        s = dict(zip(keys, totals.tolist()))

        def ratio(num: str, den: str) -> float:
            return s.get(num, 0.0) / s[den] if s.get(den, 0.0) > 0 else 0.0

        return RLStepMetrics(
            step=step,
            reward=ratio("reward", "sequences"),
            accuracy=ratio("correct", "sequences"),
            all_wrong_fraction=ratio("all_wrong_groups", "groups"),
            all_wrong_fraction_after_repair=ratio("all_wrong_after_repair", "groups"),
            zero_advantage_fraction=ratio("zero_advantage_groups", "groups"),
            completions_generated=int(s.get("completions_generated", 0)),
            completions_generated_total=completions_before + int(s.get("completions_generated", 0)),
            prompts_resampled=int(s.get("prompts_resampled", 0)),
            groups_resampled=int(s.get("groups_resampled", 0)),
            groups_unfilled=int(s.get("groups_unfilled", 0)),
            resample_rounds=int(s.get("resample_rounds", 0)),
            inpaint_attempts=int(s.get("inpaint_attempts", 0)),
            inpaint_successes=int(s.get("inpaint_successes", 0)),
            groups_repaired=int(s.get("groups_repaired", 0)),
            completions_replaced=int(s.get("completions_replaced", 0)),
            groups_without_hints=int(s.get("groups_without_hints", 0)),
            revealed_hint_ratio=ratio("revealed_tokens", "trace_tokens"),
            hint_tokens=int(s.get("hint_tokens", 0)),
            hint_tokens_kept=int(s.get("hint_tokens_kept", 0)),
            kl=ratio("kl_sum", "loss_tokens") if has_reference else None,
            clip_fraction=ratio("clipped", "clip_units"),
            entropy=ratio("entropy_sum", "completion_tokens"),
            loss=ratio("loss_sum", "updates"),
            grad_norm=grad_norm,
            learning_rate=learning_rate,
            completion_length=ratio("completion_tokens", "sequences"),
            seconds=timer.phases(),
            skipped_updates=skipped_updates,
        )
