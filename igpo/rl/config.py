"""The RL stage config (IGPO; GRPO = the same loop with inpainting off; dynamic sampling = the same loop
re-sampling zero-variance groups). Defaults are the reference run of SPEC section 2 where it gives one."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from igpo.sampler import SamplerConfig
from igpo.train_config import TrainingRunConfig


class RLConfig(TrainingRunConfig):
    """IGPO / GRPO / dynamic-sampling training settings."""

    algorithm: Literal["igpo", "grpo", "dynamic"] = Field(
        "igpo",
        description="'igpo' repairs all-wrong groups by inpainting; 'grpo' is the same loop without repair; "
        "'dynamic' (DAPO's dynamic sampling) replaces zero-variance groups by groups of freshly drawn prompts.",
    )
    steps: int = Field(100, ge=1, description="Rollout batches (each followed by mu optimizer updates).")
    max_generated_completions: int | None = Field(
        None,
        ge=1,
        description="Stop after the step at which the completions generated so far (rollouts, inpainting attempts "
        "and re-sampled rollouts, over all ranks) reach this many; None = run all steps. Equal-budget comparisons.",
    )
    batch_size: int = Field(64, ge=1, description="Prompts per rollout batch over all ranks (reference run: 64).")
    group_size: int = Field(8, description="Completions per prompt G (reference run: 8); at least 2.")
    micro_batch_size: int | None = Field(
        None, ge=1, description="Sequences per forward/backward on one rank; None = the rank's whole batch at once."
    )
    mu: int = Field(4, ge=1, description="Inner policy updates per rollout batch (reference run: 4).")
    rollout: SamplerConfig = Field(
        SamplerConfig(gen_length=256, block_length=32, steps=128, temperature=1.2),
        description="Sampler settings of the rollouts and of the inpainting rollouts.",
    )
    p_mask_prompt: float = Field(
        0.0, ge=0.0, lt=1.0, description="Prompt-token mask rate of the log-prob estimator (d1: 0.15; reference run: 0)."
    )
    # Loss.
    eps_low: float = Field(0.2, ge=0.0, lt=1.0, description="Lower clip range: ratios below 1 - eps_low are clipped.")
    eps_high: float = Field(0.2, ge=0.0, description="Upper clip range: ratios above 1 + eps_high are clipped.")
    beta: float = Field(0.01, ge=0.0, description="Weight of the k3 KL to the frozen reference; 0 holds no reference.")
    ratio_level: Literal["token", "sequence"] = Field(
        "token", description="'token': one ratio per token; 'sequence': GSPO's length-normalised sequence ratio."
    )
    scale_rewards: bool = Field(False, description="Divide group advantages by the group's reward std (GRPO's original).")
    # Rewards.
    format_reward_weight: float = Field(
        0.1, ge=0.0, description="Weight of the format reward added to correctness (0 disables it)."
    )
    # Inpainting (IGPO, SPEC section 1).
    lambda_: float = Field(
        0.5, ge=0.0, le=1.0, description="lambda: at most floor(lambda * G) wrong completions of a group are replaced."
    )
    eta_low: float = Field(0.2, ge=0.0, le=1.0, description="Lowest fraction of hint chunks revealed per attempt.")
    eta_high: float = Field(0.6, ge=0.0, le=1.0, description="Highest fraction of hint chunks revealed per attempt.")
    s_min: int = Field(5, ge=1, description="Shortest hint chunk in tokens.")
    s_max: int = Field(10, ge=1, description="Longest hint chunk in tokens.")
    tau: float = Field(
        0.2, ge=0.0, le=1.0, description="Fraction of hint positions (highest entropy first, at least one) that get gradient."
    )
    # Dynamic sampling (DAPO, Yu et al. 2025, section 3.2).
    oversample_factor: int = Field(
        2, ge=1, description="Dynamic sampling: fresh prompts drawn per zero-variance group in each re-sampling round."
    )
    max_resample_rounds: int = Field(
        3, ge=1, description="Dynamic sampling: re-sampling rounds per step; groups still without variance are kept."
    )
    # Optimizer (reference run: AdamW lr 5e-7, betas (0.9, 0.99), weight decay 0.1, grad clip 0.2).
    learning_rate: float = Field(5e-7, gt=0, description="AdamW learning rate.")
    betas: tuple[float, float] = Field((0.9, 0.99), description="AdamW betas.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(0.2, gt=0, description="Max global gradient norm.")
    warmup_steps: int = Field(0, ge=0, description="Linear learning-rate warm-up over this many optimizer steps.")
    instruction: str = Field("", description="Text put before each question inside the prompt (as in SFT and evaluation).")
    seed: int = Field(0, description="Seed of the prompt order and of every random stream (offset per rank).")

    @model_validator(mode="after")
    def _check(self) -> RLConfig:
        if self.group_size < 2:
            raise ValueError(f"group_size must be at least 2 (group-relative advantages), got {self.group_size}")
        if self.eta_low > self.eta_high:
            raise ValueError(f"eta_low ({self.eta_low}) must not exceed eta_high ({self.eta_high})")
        if self.s_min > self.s_max:
            raise ValueError(f"s_min ({self.s_min}) must not exceed s_max ({self.s_max})")
        return self
