"""The IGPO/GRPO loop end to end on the tiny model: updates, exact resume, log-prob reuse, inpainting repairs."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from rl_helpers import ROLLOUT, fresh_lm, has_letter_e, params

import igpo.rl.trainer as trainer_module
from igpo.checkpoint import CheckpointConfig, latest_checkpoint
from igpo.distributed import LoRAConfig
from igpo.models import ModelConfig, load_model
from igpo.rl import RLConfig, train_rl
from igpo.sampler import SamplerConfig
from igpo.sft import SFTConfig, train_sft


def _config(**overrides) -> RLConfig:
    values = {
        "steps": 1, "batch_size": 2, "group_size": 4, "mu": 1, "rollout": ROLLOUT, "s_min": 2, "s_max": 4,
        "learning_rate": 1e-2, "beta": 0.0, "weight_decay": 0.0, "grad_clip": 1.0,
    }
    return RLConfig(**(values | overrides))


@pytest.mark.parametrize("algorithm", ["igpo", "grpo"])
def test_every_trainable_parameter_changes_after_one_update(tiny_lm, toy_examples, algorithm):
    before = params(tiny_lm.model)
    seen = []
    result = train_rl(tiny_lm, toy_examples, _config(algorithm=algorithm), correctness_fn=has_letter_e,
                      progress=False, on_step=lambda step, m: seen.append((step, m)))
    metrics = result.metrics[0]
    assert [s for s, _ in seen] == [1] and seen[0][1] == metrics
    assert metrics.zero_advantage_fraction < 1  # some gradient signal
    unchanged = [name for name, p in tiny_lm.model.named_parameters() if torch.equal(p, before[name])]
    assert unchanged == []
    assert metrics.seconds.rollout > 0 and metrics.seconds.update > 0 and metrics.kl is None
    if algorithm == "grpo":
        assert metrics.inpaint_attempts == 0 and metrics.groups_repaired == 0
    # Every sampled completion is counted: the B*G rollouts plus IGPO's inpainting attempts, nothing re-sampled.
    assert metrics.completions_generated == metrics.completions_generated_total == 2 * 4 + metrics.inpaint_attempts
    assert metrics.prompts_resampled == metrics.groups_resampled == metrics.resample_rounds == 0


def test_lora_trains_only_the_adapters_against_the_adapter_free_reference(tiny_lm, toy_examples):
    base = params(tiny_lm.model)
    config = _config(lora=LoRAConfig(r=4, alpha=8, merge_on_save=False), mu=2, beta=0.1)
    result = train_rl(tiny_lm, toy_examples, config, correctness_fn=has_letter_e, progress=False)
    peft_model = tiny_lm.model
    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    # lora_B starts at 0 (so lora_A gets no gradient in the first update); after two updates both moved.
    assert all(not torch.equal(p, torch.zeros_like(p)) for n, p in trainable.items() if "lora_B" in n)
    frozen = {n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in peft_model.named_parameters() if not p.requires_grad}
    assert set(frozen) == set(base) and all(torch.equal(frozen[n], base[n]) for n in base)
    assert result.metrics[0].kl is not None and result.metrics[0].kl > 0  # adapters-off reference differs after update 1


def _ids_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Crash(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_parameters(tiny_tokenizer, toy_examples, tmp_path):
    config = _config(
        steps=4, mu=2, beta=0.05, p_mask_prompt=0.2, micro_batch_size=4, eta_low=0.5, eta_high=0.9,
        checkpoint=CheckpointConfig(every_steps=2, keep_last=None),
    )
    SEED = 25  # an untrained model with all-wrong groups in every step, so repairs happen throughout
    reference_lm = fresh_lm(tiny_tokenizer, SEED)
    full = train_rl(reference_lm, toy_examples, config, correctness_fn=has_letter_e, progress=False,
                    checkpoint_dir=str(tmp_path / "uninterrupted"))
    assert sum(m.completions_replaced for m in full.metrics) > 0  # the repair path is part of what resumes

    def crash_at_3(step, metrics):
        if step == 3:
            raise Crash

    interrupted = fresh_lm(tiny_tokenizer, SEED)
    with pytest.raises(Crash):
        train_rl(interrupted, toy_examples, config, correctness_fn=has_letter_e, progress=False,
                 checkpoint_dir=str(tmp_path / "run"), on_step=crash_at_3)
    assert latest_checkpoint(tmp_path / "run").name == "step-00000002"  # step 3's work is lost
    resumed_lm = fresh_lm(tiny_tokenizer, SEED)
    resumed = train_rl(resumed_lm, toy_examples, config, correctness_fn=has_letter_e, progress=False,
                       checkpoint_dir=str(tmp_path / "run"))
    assert resumed.resumed_from == 2 and [m.step for m in resumed.metrics] == [3, 4]
    assert _ids_equal(params(resumed_lm.model), params(reference_lm.model))
    assert not _ids_equal(params(resumed_lm.model), params(fresh_lm(tiny_tokenizer, SEED).model))
    strip = {"seconds"}
    assert [m.model_dump(exclude=strip) for m in resumed.metrics] == [m.model_dump(exclude=strip) for m in full.metrics[2:]]


@pytest.mark.parametrize("p_mask_prompt", [0.0, 0.3])
def test_old_and_reference_logprobs_are_computed_once_when_masks_are_identical(tiny_lm, toy_examples, monkeypatch, p_mask_prompt):
    calls = []
    original = trainer_module.completion_logprobs

    def counting(model, prompt_ids, *args, **kwargs):
        calls.append((torch.is_grad_enabled(), prompt_ids.clone()))
        return original(model, prompt_ids, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "completion_logprobs", counting)
    train_rl(tiny_lm, toy_examples, _config(mu=3, beta=0.1, p_mask_prompt=p_mask_prompt), progress=False)
    pattern = [grad for grad, _ in calls]
    if p_mask_prompt == 0:
        assert pattern == [False, False, True, True, True]  # old + ref once, then mu current passes
    else:
        # old + ref for each inner iteration's prompt mask, all before the first update (d1), then mu updates
        assert pattern == [False, False] * 3 + [True] * 3
        for i in range(3):  # old, ref and current share the iteration's prompt mask; iterations differ
            old, ref, current = calls[2 * i][1], calls[2 * i + 1][1], calls[6 + i][1]
            assert torch.equal(old, ref) and torch.equal(old, current)
        assert not torch.equal(calls[0][1], calls[2][1])


@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_with_one_inner_iteration_the_gradient_pass_is_the_old_pass(tiny_lm, toy_examples, monkeypatch, beta):
    """mu = 1: no separate old-policy forward (the gradient pass, detached, gives the old log-probs and the
    entropy), and the update equals the one computed with a separate old-policy pass."""
    calls = []
    original = trainer_module.completion_logprobs

    def counting(model, *args, **kwargs):
        calls.append(torch.is_grad_enabled())
        return original(model, *args, **kwargs)

    config = _config(mu=1, beta=beta, micro_batch_size=4, tau=0.5)
    fused_lm = fresh_lm(tiny_lm.tokenizer, 3)  # groups with reward variance under has_letter_e
    monkeypatch.setattr(trainer_module, "completion_logprobs", counting)
    fused = train_rl(fused_lm, toy_examples, config, correctness_fn=has_letter_e, progress=False)
    assert calls == ([False] * 2 if beta else []) + [True] * 2  # reference passes (if any), then the gradient passes

    separate_lm = fresh_lm(tiny_lm.tokenizer, 3)
    old_and_reference = trainer_module._old_and_reference
    monkeypatch.setattr(trainer_module, "_old_and_reference",
                        lambda *args, with_old=True: old_and_reference(*args, with_old=True))
    separate = train_rl(separate_lm, toy_examples, config, correctness_fn=has_letter_e, progress=False)
    assert fused.metrics[0].hint_tokens_kept == separate.metrics[0].hint_tokens_kept
    assert fused.metrics[0].entropy == pytest.approx(separate.metrics[0].entropy, rel=1e-6)
    assert fused.metrics[0].loss == pytest.approx(separate.metrics[0].loss, rel=1e-6, abs=1e-9)
    start = params(fresh_lm(tiny_lm.tokenizer, 3).model)
    assert any(not torch.equal(value, start[name]) for name, value in params(fused_lm.model).items())  # it trained
    for name, value in params(fused_lm.model).items():
        torch.testing.assert_close(value, params(separate_lm.model)[name], rtol=0, atol=1e-7)


@pytest.mark.parametrize("p_mask_prompt", [0.0, 0.2])
def test_every_inner_iteration_is_clipped_against_the_rollout_policy(tiny_tokenizer, toy_examples, monkeypatch,
                                                                     p_mask_prompt):
    """The ratio of inner iteration i > 0 compares the updated policy with the rollout policy, so it moves away
    from 1 and clipping can act, whether or not the prompt is masked (it was exactly 1 with p_mask_prompt > 0
    when old log-probs were recomputed after earlier updates)."""
    gaps = []
    original = trainer_module.policy_loss

    def recording(log_probs, old_log_probs, *args, **kwargs):
        gaps.append(float((log_probs.detach() - old_log_probs).abs().max()))
        return original(log_probs, old_log_probs, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "policy_loss", recording)
    lm = fresh_lm(tiny_tokenizer, 3)  # groups with reward variance under has_letter_e: the updates move the policy
    train_rl(lm, toy_examples, _config(mu=3, micro_batch_size=8, learning_rate=5e-2, p_mask_prompt=p_mask_prompt),
             correctness_fn=has_letter_e, progress=False)
    assert len(gaps) == 3
    assert gaps[0] < 1e-5  # the first iteration is on-policy
    assert gaps[1] > 1e-3 and gaps[2] > 1e-3


def test_no_grad_passes_run_in_eval_mode(tiny_lm, toy_examples, monkeypatch):
    """With dropout (LoRA's, say) the old-policy pass must not be a dropout draw: no-grad passes in eval mode."""
    modes = []
    original = trainer_module.completion_logprobs

    def recording(model, *args, **kwargs):
        modes.append((torch.is_grad_enabled(), model.model.training))
        return original(model, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "completion_logprobs", recording)
    train_rl(tiny_lm, toy_examples, _config(mu=2, beta=0.1, p_mask_prompt=0.2), progress=False)
    assert modes and all(training == grad for grad, training in modes)


def test_no_reference_model_is_held_when_beta_is_zero(tiny_lm, monkeypatch):
    copies = []
    monkeypatch.setattr(trainer_module.copy, "deepcopy", lambda obj: copies.append(obj) or obj)
    assert trainer_module._reference(tiny_lm, _config(beta=0.0)) is None and copies == []
    assert trainer_module._reference(tiny_lm, _config(beta=0.1)) is not None and len(copies) == 1


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"group_size": 1}, "group_size"),
        ({"eta_low": 0.7, "eta_high": 0.3}, "eta_low"),
        ({"s_min": 6, "s_max": 5}, "s_min"),
        ({"tau": 1.5}, "tau"),
        ({"lambda_": -0.1}, "lambda_"),
        ({"eps_low": 1.0}, "eps_low"),
        ({"rollout": {"gen_length": 16, "block_length": 5}}, "gen_length"),
        ({"algorithm": "ppo"}, "algorithm"),
        ({"oversample_factor": 0}, "oversample_factor"),
        ({"max_resample_rounds": 0}, "max_resample_rounds"),
        ({"max_generated_completions": 0}, "max_generated_completions"),
    ],
)
def test_invalid_config_fails_naming_the_field(overrides, field):
    with pytest.raises(ValidationError, match=field):
        _config(**overrides)


def test_batch_that_does_not_split_into_micro_batches_fails_before_compute(tiny_lm, toy_examples):
    with pytest.raises(ValueError, match="micro_batch_size"):
        train_rl(tiny_lm, toy_examples, _config(micro_batch_size=3), progress=False)
    with pytest.raises(ValueError, match="reasoning"):
        train_rl(tiny_lm, [{"question": "q", "answer": "1"}], _config(), progress=False)


# ------------------------------------------------------------------------------------------------------
# End to end with the real verifier: a tiny model SFT'd on two kinds of traces with the same question,
# "aaaaaa####1" (80 %) and "bbbbbb####7" (20 %). Greedy rollouts always give the common trace, so for the
# gold answer 7 every group is all-wrong. Inpainting reveals y* = "bbbbbb####7" except its answer span
# "####7"; the model has learned that b's are followed by ####7, so the inpainted completions are correct.

COMMON, RARE = "aaaaaa####1", "bbbbbb####7"
GREEDY = SamplerConfig(gen_length=16, block_length=8, steps=16, temperature=0.0)


@pytest.fixture(scope="module")
def sft_lm(tiny_tokenizer):
    lm = fresh_lm(tiny_tokenizer)
    config = SFTConfig(steps=300, batch_size=20, learning_rate=5e-3, pad_response_to=16, max_response_tokens=16)
    train_sft(lm, ["Q"] * 10, [COMMON] * 8 + [RARE] * 2, config, progress=False)
    return lm


def _rare_examples():
    return [{"question": "Q", "answer": "7", "reasoning": RARE}] * 2


def test_igpo_inpainting_repairs_all_wrong_groups(sft_lm, tmp_path):
    state = {k: v.clone() for k, v in sft_lm.model.state_dict().items()}
    try:
        config = _config(rollout=GREEDY, eta_low=1.0, eta_high=1.0, lambda_=0.5, learning_rate=1e-4, format_reward_weight=0.0)
        result = train_rl(sft_lm, _rare_examples(), config, progress=False, output_dir=str(tmp_path / "final"))
        m = result.metrics[0]
        assert m.accuracy == 0 and m.all_wrong_fraction == 1  # nothing right without hints
        assert m.all_wrong_fraction_after_repair == 1 - m.groups_repaired / 2  # a repaired group has a correct completion
        assert m.inpaint_attempts == 8 and m.inpaint_successes >= 1 and m.groups_repaired >= 1
        assert 1 <= m.completions_replaced <= 2 * 2  # floor(0.5 * 4) per group
        assert m.zero_advantage_fraction < 1  # the repaired groups now give a gradient
        assert m.hint_tokens > 0 and m.hint_tokens_kept == max(1, int(0.2 * 6)) * m.completions_replaced
        assert m.revealed_hint_ratio == pytest.approx(6 / 11)  # every chunk but the answer span "####7"
        reloaded = load_model(ModelConfig(name_or_path=str(tmp_path / "final")))
        assert all(torch.equal(p, dict(sft_lm.model.named_parameters())[n]) for n, p in reloaded.model.named_parameters())
    finally:
        sft_lm.model.load_state_dict(state)


def test_grpo_leaves_the_same_all_wrong_groups_without_signal(sft_lm):
    state = {k: v.clone() for k, v in sft_lm.model.state_dict().items()}
    try:
        config = _config(algorithm="grpo", rollout=GREEDY, learning_rate=1e-4, format_reward_weight=0.0)
        m = train_rl(sft_lm, _rare_examples(), config, progress=False).metrics[0]
        assert m.all_wrong_fraction == 1 and m.zero_advantage_fraction == 1 and m.inpaint_attempts == 0
    finally:
        sft_lm.model.load_state_dict(state)
