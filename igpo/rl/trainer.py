"""IGPO, GRPO and dynamic sampling: one training loop (SPEC section 1; IGPO, arXiv 2509.10396, Algorithm 1;
DAPO, arXiv 2503.14476, section 3.2).

Each step: rollout (G completions per prompt of this rank's shard) -> reward (shared verifier + format)
-> repair (IGPO: inpaint all-wrong groups with y* hints, replace up to floor(lambda*G) wrong ones;
GRPO: nothing; dynamic: replace zero-variance groups by freshly sampled groups with variance)
-> log-probs (old policy and reference, no grad) -> advantages (r - mean(r) per group)
-> update (mu optimizer steps on the clipped surrogate + beta * k3 KL, entropy-filtered hint tokens).

Deviations from the paper and the reference run, all deliberate:
- The loss is a token mean over the rank's kept tokens (SPEC "averaged over real completion tokens");
  under DeepSpeed the rank means are averaged. With the GSPO ratio the surrogate is a per-sequence
  mean while the KL stays a token mean.
- Hints: chunks are drawn once per group and step, each attempt reveals its own random subset; every
  final-answer statement of y* is excluded (not only the last one); when floor(eta*N) = 0 one chunk is
  revealed; an all-wrong group whose y* has no eligible chunk is left unchanged and counted.
- Replacements take the wrong originals in index order (in an all-wrong group every original is wrong).
- Entropy filter: per sequence, k = max(1, floor(tau * n)) (0 when tau = 0) of the n hint positions inside the real
  completion; with p_mask_prompt > 0 it comes from each inner iteration's own old-policy pass (same prompt mask
  for old, reference and current policy).
- Old/reference/entropy passes run in eval mode before the first update of a rollout batch: once when
  p_mask_prompt = 0 (the masks of the inner iterations are identical), once per inner iteration's prompt mask
  otherwise (d1: the mu masks are drawn up front), so every ratio is against the rollout policy. With mu = 1
  there is no separate old-policy pass: the gradient pass's own log-probs, detached, are the old ones (the
  ratio is exactly 1 and only its gradient acts, as with a separate pass) and its entropies feed the filter,
  so a step runs one forward fewer per micro-batch. That pass runs in train mode: with dropout the filter
  reads the entropy of the same dropout draw the gradient sees, where mu > 1 reads an eval-mode pass.
- The reference model is the base model with LoRA adapters disabled, a frozen copy of the initial
  weights for full fine-tuning, and absent when beta = 0 (the KL metric is then None).
- Learning-rate schedule: linear warm-up then constant (the paper does not state one).
- Every random draw uses explicit per-rank torch.Generators (prompt order is a pure function of
  (seed, step)); nothing reseeds global RNGs.
- Reported reward, accuracy and all-wrong fraction are those of the first rollout batch (all ranks), before
  repair; the advantages use the repaired rewards (a replaced completion carries its own reward).
- A rank's rollouts (and its inpainting rollouts, and each re-sampling round) are each one batched sampler call.

Dynamic sampling (``algorithm: dynamic``) differs from DAPO on purpose:
- "Zero variance" is all *total* rewards of a group equal (correctness + format), the exact condition
  for all-zero advantages; DAPO filters on accuracy 0 or 1. With format weight 0 the two coincide.
- DAPO draws whole extra generation batches until B groups with variance are collected (and errors out
  after ``max_num_gen_batches``). Here each round draws ``oversample_factor`` fresh prompts per flat
  group still in the batch, copies groups with variance over flat ones in index order (groups that already
  have variance are never touched) and drops the surplus; after ``max_resample_rounds`` rounds the groups
  still flat are kept and counted (``groups_unfilled``), so B*G and the gradient accumulation stay fixed.
- Fresh prompts: the k-th prompt a rank draws at a step is a pure function of (seed, step, rank, k)
  (``igpo.rl.rollout.fresh_prompt_order``: a permutation of the dataset without the step's global batch,
  dealt round-robin over the ranks); their completions come from the rank's sampling stream, so a resumed
  run re-draws exactly what the uninterrupted one drew. Rounds are rank-local, like IGPO's inpainting.
- It does not add DAPO's other changes (clip-higher is ``eps_high``; overlong shaping is not implemented),
  and it does not combine with inpainting (one repair strategy per step).

``max_generated_completions`` stops a run after the step at which the completions generated so far
(rollouts + inpainting attempts + re-sampled rollouts, all ranks) reach it; the count is kept in the
checkpoint, so a resumed run stops where the uninterrupted one did. That compares the three modes at an
equal sampling budget instead of an equal number of steps.

The repair phase is looked up by ``config.algorithm`` in ``igpo.rl.repair.REPAIR_STRATEGIES``; a further
mode is a new entry there and a new ``algorithm`` value, not a new loop.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field

from igpo.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from igpo.distributed import (
    TrainEngine,
    apply_lora,
    batch_indices,
    is_main_process,
    is_peft,
    rank,
    rank_shard,
    stream_seed,
    world_size,
)
from igpo.logprobs import completion_logprobs, mask_prompt
from igpo.models import DiffusionLM
from igpo.models.recompute import enable_recompute
from igpo.progress import ProgressReporter
from igpo.rl.advantages import group_advantages, zero_advantage_groups
from igpo.rl.config import RLConfig
from igpo.rl.loss import completion_mask, entropy_filter, kept_counts, loss_mask, policy_loss
from igpo.rl.metrics import PhaseTimer, RLStepMetrics, StepTally
from igpo.rl.repair import REPAIR_STRATEGIES, Resampler, Scorer
from igpo.rl.rewards import RewardFunction, all_wrong_groups, correctness_reward, score_completions
from igpo.rl.rollout import RolloutBatch, fresh_prompt_order, generate_rollouts

log = logging.getLogger(__name__)


class RLResult(BaseModel):
    """Metrics of every step run by this call (counts reduced over ranks on every rank; timings are rank-local)."""

    metrics: list[RLStepMetrics] = Field(default_factory=list, description="One entry per step run here.")
    resumed_from: int | None = Field(None, description="Step of the checkpoint this run resumed from, if any.")
    budget_reached: bool = Field(False, description="Stopped early: max_generated_completions was reached.")


def train_rl(
    model: DiffusionLM,
    examples: Sequence[Mapping[str, Any]],
    config: RLConfig,
    *,
    correctness_fn: RewardFunction = correctness_reward,
    checkpoint_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    on_step: Callable[[int, RLStepMetrics], None] | None = None,
    progress: bool = True,
) -> RLResult:
    """Train ``model`` in place on ``examples`` (rows with ``question``, ``answer`` and, for IGPO, the
    trace y* in ``reasoning``; every column reaches the reward functions).

    Every rank calls this with the same arguments. ``correctness_fn`` decides correctness (the all-wrong
    trigger); the default is the shared verifier. With ``checkpoint_dir`` checkpoints are written every
    ``config.checkpoint.every_steps`` steps and the run resumes from the latest complete one;
    ``output_dir`` receives the final model. ``on_step`` runs on rank 0 after each step's checkpoint.
    With LoRA and ``lora.merge_on_save`` the adapters are merged at the end (``model.model`` is a plain model).
    Progress is reported on rank 0 as ``config.progress`` says (``igpo.progress``); ``progress=False`` silences it.
    """
    G, world = config.group_size, world_size()
    local_sequences, micro = _batch_shape(config, world)
    _check_examples(examples, config)
    if config.gradient_checkpointing:
        enable_recompute(model.model)
    if config.lora is not None:
        model.model = apply_lora(model.model, config.lora)
    reference = _reference(model, config)
    engine = TrainEngine.from_config(model.model, config, local_sequences // micro, micro)
    policy = dataclasses.replace(model, model=engine.forward_model)
    device = policy.device
    if isinstance(reference, DiffusionLM):  # DeepSpeed may have moved (and cast) the policy
        reference.model.to(device=device, dtype=next(engine.module.parameters()).dtype)
    generators = {
        "sample": torch.Generator(device=device).manual_seed(stream_seed(config.seed, 1)),
        "hint": torch.Generator().manual_seed(stream_seed(config.seed, 2)),
        "mask": torch.Generator(device=device).manual_seed(stream_seed(config.seed, 3)),
    }
    result, start, generated = RLResult(), 0, 0  # generated: completions sampled so far, all ranks
    if checkpoint_dir and config.checkpoint.resume and (latest := latest_checkpoint(checkpoint_dir)) is not None:
        state = load_checkpoint(latest, engine, generators)
        start = result.resumed_from = state["step"]
        generated = int(state.get("completions_generated", 0))
        engine.restore_nonfinite_state(state)
    budget = config.max_generated_completions
    result.budget_reached = budget is not None and generated >= budget  # resumed from the run's last checkpoint

    def scorer(texts, columns):
        return score_completions(texts, columns, correctness_fn, config.format_reward_weight)

    repair = REPAIR_STRATEGIES[config.algorithm]
    reporter = ProgressReporter(
        config.steps, config.algorithm, mode=config.progress if progress and is_main_process() else "off",
        every=config.log_every_steps, initial=start, logger=log,
    )
    for step in range(start, config.steps):
        if result.budget_reached:
            break
        timer, tally = PhaseTimer(), StepTally()
        global_batch = batch_indices(len(examples), config.batch_size, step, config.seed)
        rows = [examples[i] for i in rank_shard(global_batch, rank(), world)]  # this rank's B prompts

        with timer("rollout"):
            engine.module.eval()
            batch = generate_rollouts(policy, rows, G, config.rollout, generators["sample"], config.instruction)

        with timer("reward"):
            batch.rewards = scorer(batch.texts, batch.columns)
            tally.add(
                sequences=len(batch.texts), groups=batch.num_groups, reward=batch.rewards.total.sum(),
                correct=batch.rewards.correct.sum(),
            )

        with timer("repair"):
            resample = _resampler(policy, examples, config, scorer, generators["sample"], step, global_batch)
            stats = repair(policy, batch, config, scorer, generators, resample=resample)
            tally.add(
                all_wrong_groups=stats.all_wrong_groups,  # counted by the strategy before it changes the batch
                inpaint_attempts=stats.attempts, inpaint_successes=stats.successes, groups_repaired=stats.groups_repaired,
                completions_replaced=stats.replaced, groups_without_hints=stats.groups_without_hints,
                revealed_tokens=stats.revealed_tokens, trace_tokens=stats.trace_tokens,
                resample_rounds=stats.resample_rounds, prompts_resampled=stats.prompts_resampled,
                groups_resampled=stats.groups_resampled, groups_unfilled=stats.groups_unfilled,
                completions_generated=len(batch.texts) + stats.completions_generated,
                all_wrong_after_repair=all_wrong_groups(batch.rewards.correctness, G).sum(),
            )

        with timer("logprobs"):
            real = completion_mask(batch.completion_ids, policy.tokens.stop_ids)  # [B*G, L]
            hints = batch.hint_mask & real
            tally.add(completion_tokens=real.sum(), hint_tokens=hints.sum())
            # d1's estimator: the mu prompt masks are drawn first and the old-policy, reference and entropy
            # passes of every inner iteration run before any update (in eval mode: no dropout draw), so each
            # iteration's ratio is against the rollout policy. Identical masks (p_mask_prompt = 0) share one pass.
            # With mu = 1 the old policy is the current one: its log-probs and entropies come from the gradient
            # pass itself (detached), one forward fewer per micro-batch; only the reference pass runs here.
            engine.module.eval()
            with_old = config.mu > 1
            if config.p_mask_prompt == 0:
                passes = [(batch.prompt_ids, *_old_and_reference(policy, reference, batch, batch.prompt_ids, micro,
                                                                 with_old=with_old))]
                passes *= config.mu
            else:  # one fresh prompt mask per iteration, shared by its old, reference and current pass
                passes = []
                for _ in range(config.mu):
                    prompt_ids = mask_prompt(batch.prompt_ids, config.p_mask_prompt, policy.tokens.mask_id,
                                             generators["mask"], batch.prompt_mask)
                    passes.append((prompt_ids, *_old_and_reference(policy, reference, batch, prompt_ids, micro,
                                                                   with_old=with_old)))
            engine.module.train()

        with timer("advantages"):
            advantages = group_advantages(batch.rewards.total, G, config.scale_rewards).to(device)  # [B*G]
            tally.add(zero_advantage_groups=zero_advantage_groups(batch.rewards.total, G).sum())

        # The normalisers of an update are counts (the filter keeps k of each sequence's n hint positions), so
        # they are known before a fused pass computes the entropy of its own micro-batch.
        num_tokens, num_sequences = kept_counts(real, hints, config.tau)
        for iteration, (prompt_ids, old, entropy, ref) in enumerate(passes):
            with timer("update"):
                update_loss = 0.0
                for lo in range(0, local_sequences, micro):
                    mb = slice(lo, lo + micro)
                    log_probs, fresh_entropy = completion_logprobs(
                        policy, prompt_ids[mb], batch.completion_ids[mb], batch.prompt_mask[mb],
                        with_entropy=old is None,
                    )  # [micro, L], with grad
                    old_mb = log_probs.detach() if old is None else old[mb]  # [micro, L]
                    entropy_mb = fresh_entropy if old is None else entropy[mb]  # [micro, L]
                    keep = loss_mask(real[mb], hints[mb], entropy_filter(entropy_mb, hints[mb], config.tau))
                    out = policy_loss(
                        log_probs, old_mb, advantages[mb], keep, config.eps_low, config.eps_high, config.beta,
                        None if ref is None else ref[mb], config.ratio_level, num_tokens, num_sequences,
                    )
                    engine.backward(out.loss, boundary=lo + micro >= local_sequences)
                    update_loss += float(out.loss.detach())
                    tally.add(loss_tokens=out.tokens, kl_sum=out.kl_sum, clipped=out.clipped, clip_units=out.clip_units)
                    if iteration == 0:  # the rollout policy's entropy and the filter's choice, once per step
                        tally.add(entropy_sum=(entropy_mb * real[mb]).sum(), hint_tokens_kept=(keep & hints[mb]).sum())
                tally.add(loss_sum=update_loss, updates=1)

        metrics = tally.metrics(step + 1, timer, engine.last_grad_norm, engine.learning_rate, reference is not None, device,
                                engine.skipped_updates, generated)
        result.metrics.append(metrics)
        generated = metrics.completions_generated_total  # summed over ranks: every rank stops at the same step
        result.budget_reached = budget is not None and generated >= budget
        reporter.update(loss=metrics.loss, reward=metrics.reward, all_wrong=metrics.all_wrong_fraction)
        if checkpoint_dir and config.checkpoint.due(step + 1, config.steps, last=result.budget_reached):
            save_checkpoint(checkpoint_dir, step + 1, engine, generators,
                            {"algorithm": config.algorithm, "completions_generated": generated, **engine.nonfinite_state()},
                            config.checkpoint.keep_last, policy.tokenizer)
        if on_step is not None and is_main_process():
            on_step(step + 1, metrics)
        if result.budget_reached:
            break

    reporter.close()
    model.model = engine.finish(output_dir, policy.tokenizer)
    return result


def _resampler(
    policy: DiffusionLM, examples: Sequence[Mapping[str, Any]], config: RLConfig, scorer: Scorer,
    generator: torch.Generator, step: int, global_batch: list[int],
) -> Resampler:
    """``resample(n)``: the rank's next n fresh prompts of this step (``fresh_prompt_order``, cycled), rolled
    out G times each in one sampler call with the rank's sampling stream, and scored."""
    order: list[int] = []
    drawn = 0

    def resample(num_prompts: int) -> RolloutBatch:
        nonlocal drawn
        if not order:  # built on first use: IGPO and GRPO never pay for it
            order.extend(fresh_prompt_order(len(examples), global_batch, config.seed, step, rank(), world_size()))
        rows = [examples[order[(drawn + k) % len(order)]] for k in range(num_prompts)]
        drawn += num_prompts
        fresh = generate_rollouts(policy, rows, config.group_size, config.rollout, generator, config.instruction)
        fresh.rewards = scorer(fresh.texts, fresh.columns)
        return fresh

    return resample


@torch.no_grad()
def _old_and_reference(
    policy: DiffusionLM, reference: DiffusionLM | torch.nn.Module | None, batch: RolloutBatch, prompt_ids: torch.Tensor,
    micro: int, with_old: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Old-policy log-probs and entropies [B*G, L] (None unless ``with_old``), and reference log-probs (None
    without a reference), in micro-batches. A peft module as ``reference`` means: the policy with its LoRA
    adapters disabled."""
    old, entropy, ref = [], [], []
    for lo in range(0, prompt_ids.shape[0], micro):
        rows = slice(lo, lo + micro)
        args = (prompt_ids[rows], batch.completion_ids[rows], batch.prompt_mask[rows])
        if with_old:
            log_probs, ent = completion_logprobs(policy, *args, with_entropy=True)
            old.append(log_probs)
            entropy.append(ent)
        if isinstance(reference, DiffusionLM):
            ref.append(completion_logprobs(reference, *args)[0])
        elif reference is not None:
            with reference.disable_adapter():
                ref.append(completion_logprobs(policy, *args)[0])
    return (torch.cat(old) if old else None), (torch.cat(entropy) if entropy else None), (torch.cat(ref) if ref else None)


def _reference(model: DiffusionLM, config: RLConfig) -> DiffusionLM | torch.nn.Module | None:
    """None when beta = 0; the peft module itself for a LoRA policy (read with adapters disabled); else a
    frozen copy of the start weights."""
    if config.beta == 0:
        return None
    if is_peft(model.model):
        return model.model
    frozen = copy.deepcopy(model.model).eval().requires_grad_(False)
    return dataclasses.replace(model, model=frozen)


def _batch_shape(config: RLConfig, world: int) -> tuple[int, int]:
    """(sequences per rank per step, micro-batch size), checked against the world size."""
    if config.batch_size % world:
        raise ValueError(f"batch_size ({config.batch_size}) must be a multiple of the number of ranks ({world})")
    local = config.batch_size // world * config.group_size
    micro = config.micro_batch_size or local
    if local % micro:
        raise ValueError(f"micro_batch_size ({micro}) must divide the {local} sequences each rank trains on per step")
    return local, micro


def _check_examples(examples: Sequence[Mapping[str, Any]], config: RLConfig) -> None:
    if len(examples) == 0:
        raise ValueError("no RL examples")
    needed = ("question", "answer") + (("reasoning",) if config.algorithm == "igpo" else ())
    for index, row in enumerate(examples):
        missing = [key for key in needed if key not in row]
        if missing:
            raise ValueError(f"RL example {index} lacks {missing}; rows need {list(needed)}")
