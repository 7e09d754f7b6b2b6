"""A non-finite loss or gradient skips the update and is counted; too many in a row stop the run clearly.

NaN is injected by wrapping the loss function each trainer calls (``igpo.sft.sft_loss``,
``igpo.rl.trainer.policy_loss``) or by a gradient hook on one parameter.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import igpo.rl.trainer as rl_trainer
import igpo.sft as sft_module
from igpo.checkpoint import CheckpointConfig, latest_checkpoint
from igpo.distributed import NonFiniteLossError, TrainEngine
from igpo.models import wrap_model
from igpo.models.tiny import TinyModelConfig, build_tiny_model
from igpo.rl import RLConfig, train_rl
from igpo.sampler import SamplerConfig
from igpo.sft import SFTConfig, train_sft

QUESTIONS = ["red", "blue", "green", "cyan"]
ANSWERS = ["apple 1", "sky 22", "grass 333", "sea 4444"]
TINY = TinyModelConfig(num_layers=1, hidden_size=32, head_dim=8, intermediate_size=64)


def _lm(tokenizer):
    return wrap_model(build_tiny_model(tokenizer, TINY).eval(), tokenizer)


def _params(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _nan_loss_on(monkeypatch, module, name, bad_calls):
    """Wrap ``module.name`` so that its n-th call (1-based) returns a NaN loss when n is in ``bad_calls``."""
    real, calls = getattr(module, name), []

    def wrapped(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) not in bad_calls:
            return out
        if isinstance(out, torch.Tensor):
            return out * float("nan")
        return dataclasses.replace(out, loss=out.loss * float("nan"))

    monkeypatch.setattr(module, name, wrapped)
    return calls


def _sft(steps: int, **overrides) -> SFTConfig:
    return SFTConfig(**({"steps": steps, "batch_size": 2, "learning_rate": 1e-2, "max_response_tokens": 16} | overrides))


def test_sft_skips_and_counts_one_nan_update_then_goes_on(tiny_tokenizer, monkeypatch):
    _nan_loss_on(monkeypatch, sft_module, "sft_loss", {2})
    lm = _lm(tiny_tokenizer)
    after = {}
    seen = []

    def on_step(step, metrics):
        after[step] = _params(lm.model)  # trained in place (no LoRA)
        seen.append(metrics)

    result = train_sft(lm, QUESTIONS, ANSWERS, _sft(4), progress=False, on_step=on_step)
    assert [m.skipped_updates for m in seen] == [0, 1, 1, 1]
    assert result.skipped_updates == 1
    assert _same(after[1], after[2])  # the NaN update changed nothing
    assert not _same(after[2], after[3])  # training went on afterwards
    assert all(torch.isfinite(p).all() for p in lm.model.parameters())


def test_sft_nan_gradient_with_finite_loss_is_skipped(tiny_tokenizer):
    lm = _lm(tiny_tokenizer)
    before = _params(lm.model)
    weight = next(p for p in lm.model.parameters() if p.requires_grad)
    weight.register_hook(lambda grad: grad * float("nan"))
    seen = []
    train_sft(lm, QUESTIONS, ANSWERS, _sft(2, max_nonfinite_in_a_row=5), progress=False,
              on_step=lambda step, m: seen.append(m))
    assert [m.skipped_updates for m in seen] == [1, 2]
    assert all(torch.isfinite(torch.tensor(m.loss)) for m in seen)  # the loss itself was fine
    assert _same(_params(lm.model), before)


def test_sft_stops_after_max_in_a_row_and_keeps_the_last_good_checkpoint(tiny_tokenizer, monkeypatch, tmp_path):
    _nan_loss_on(monkeypatch, sft_module, "sft_loss", set(range(3, 100)))
    config = _sft(6, max_nonfinite_in_a_row=2, checkpoint=CheckpointConfig(every_steps=1, keep_last=None))
    with pytest.raises(NonFiniteLossError, match=r"2 updates in a row.*max_nonfinite_in_a_row = 2"):
        train_sft(_lm(tiny_tokenizer), QUESTIONS, ANSWERS, config, progress=False, checkpoint_dir=tmp_path)
    # Step 3 was skipped (checkpointed with its counters), step 4 raised before writing anything.
    latest = latest_checkpoint(tmp_path)
    assert latest.name == "step-00000003"
    state = json.loads((latest / "trainer_state.json").read_text())
    assert (state["skipped_updates"], state["nonfinite_in_a_row"]) == (1, 1)
    weights = [(tmp_path / f"step-0000000{s}" / "model" / "model.safetensors").read_bytes() for s in (2, 3)]
    assert weights[0] == weights[1]  # the skipped update left the weights as they were


def test_counters_survive_a_resume(tiny_tokenizer, monkeypatch, tmp_path):
    calls = _nan_loss_on(monkeypatch, sft_module, "sft_loss", {2})
    config = _sft(3, checkpoint=CheckpointConfig(every_steps=2, keep_last=None))
    train_sft(_lm(tiny_tokenizer), QUESTIONS, ANSWERS, config.model_copy(update={"steps": 2}), progress=False,
              checkpoint_dir=tmp_path)
    calls.clear()
    seen = []
    resumed = train_sft(_lm(tiny_tokenizer), QUESTIONS, ANSWERS, config, progress=False, checkpoint_dir=tmp_path,
                        on_step=lambda step, m: seen.append(m))
    assert resumed.resumed_from == 2 and [m.skipped_updates for m in seen] == [1]


ROLLOUT = SamplerConfig(gen_length=16, block_length=8, steps=4, temperature=1.0)
EXAMPLES = [{"question": f"{i}+{i}?", "answer": str(2 * i), "reasoning": f"{i} and {i} make {2 * i}"} for i in range(4)]


def _rl(**overrides) -> RLConfig:
    values = {"algorithm": "grpo", "steps": 3, "batch_size": 2, "group_size": 2, "mu": 1, "rollout": ROLLOUT,
              "learning_rate": 1e-2, "beta": 0.0, "weight_decay": 0.0, "grad_clip": 1.0}
    return RLConfig(**(values | overrides))


def _reward(completions, **_):
    return [float(i % 2) for i in range(len(completions))]  # always some advantage signal


def test_rl_skips_and_counts_a_nan_update(tiny_tokenizer, monkeypatch):
    _nan_loss_on(monkeypatch, rl_trainer, "policy_loss", {2})
    result = train_rl(_lm(tiny_tokenizer), EXAMPLES, _rl(), correctness_fn=_reward, progress=False)
    assert [m.skipped_updates for m in result.metrics] == [0, 1, 1]


def test_rl_stops_after_max_in_a_row(tiny_tokenizer, monkeypatch, tmp_path):
    _nan_loss_on(monkeypatch, rl_trainer, "policy_loss", set(range(1, 100)))
    lm = _lm(tiny_tokenizer)
    before = _params(lm.model)
    with pytest.raises(NonFiniteLossError, match="max_nonfinite_in_a_row = 2"):
        train_rl(lm, EXAMPLES, _rl(mu=2, max_nonfinite_in_a_row=2), correctness_fn=_reward, progress=False,
                 checkpoint_dir=str(tmp_path))
    assert latest_checkpoint(tmp_path) is None  # nothing written for a run that never made a good update
    assert _same(_params(lm.model), before)


def test_engine_all_reduces_the_loss_flag(monkeypatch):
    """The skip decision goes through ``all_reduce_sum`` (a collective under several ranks): a rank whose
    own loss is finite still skips when another rank's is not."""
    from igpo import distributed

    module = torch.nn.Linear(2, 1)
    engine = TrainEngine(module, learning_rate=0.1, betas=(0.9, 0.99), weight_decay=0.0, grad_clip=1.0,
                         warmup_steps=0, micro_batches_per_update=1, micro_batch_size=1)
    monkeypatch.setattr(distributed, "all_reduce_sum", lambda t: t + 1)  # "another rank" reports a NaN
    before = _params(module)
    engine.backward(module(torch.ones(1, 2)).sum(), boundary=True)
    assert engine.skipped_updates == 1 and _same(_params(module), before)


@pytest.mark.parametrize("config_class", [SFTConfig, RLConfig])
def test_max_nonfinite_in_a_row_must_be_positive(config_class):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="max_nonfinite_in_a_row"):
        config_class(max_nonfinite_in_a_row=0)
