"""Every stage of the project on both native families, LLaDA and Dream, built tiny from their own classes
(2 layers, width 32, the character tokenizer; Dream with grouped key/value heads and logits shifted by one):
SFT (full and LoRA on named projections), IGPO and GRPO steps with inpainting, evaluation, checkpoint and
model-directory round trips, exact resume of SFT and RL, the fast sampler modes with hints and left-padded
prompts (the cached forward against the full one: tests/igpo/test_fast_sampler.py), and (slow) a
2-process DeepSpeed run. Invariants only: the models are untrained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from igpo.checkpoint import CheckpointConfig, load_checkpoint, save_checkpoint
from igpo.distributed import LoRAConfig, TrainEngine, apply_lora, is_peft
from igpo.evaluate import BenchmarkConfig, EvalConfig, evaluate_model
from igpo.models import DiffusionLM, ModelConfig, load_model_dir, save_model, wrap_model
from igpo.models.dream import DreamModel, build_tiny_dream
from igpo.models.llada import LLaDAModelLM, build_tiny_llada
from igpo.prompting import encode_prompts
from igpo.rl import RLConfig, train_rl
from igpo.sampler import SamplerConfig, generate
from igpo.sft import SFTConfig, train_sft
from igpo.verify import is_correct

REPO = Path(__file__).resolve().parents[3]
FAMILIES = ["llada", "dream"]
LAYERS = 2

# LoRA on every projection of every block, by name. LLaDA also calls its LM head ``ff_out``
# (model.transformer.ff_out); apply_lora must leave it alone.
LORA_TARGETS = {
    "llada": ["q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"],
    "dream": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
ADAPTED = {  # module names (in the HF model) that must get adapters, and nothing else
    "llada": {f"model.transformer.blocks.{i}.{n}" for i in range(LAYERS) for n in LORA_TARGETS["llada"]},
    "dream": {f"model.layers.{i}.self_attn.{n}" for i in range(LAYERS) for n in ("q_proj", "k_proj", "v_proj", "o_proj")}
    | {f"model.layers.{i}.mlp.{n}" for i in range(LAYERS) for n in ("gate_proj", "up_proj", "down_proj")},
}
LM_HEAD = {"llada": "model.transformer.ff_out", "dream": "lm_head"}

QUESTIONS = ["red", "blue", "green", "cyan"]
ANSWERS = ["apple 1", "sky 22", "grass 333", "sea 4444"]
# Prompts of different lengths, so rollouts and evaluation run left-padded batches.
RL_EXAMPLES = [
    {"question": "1+1?", "answer": "7", "reasoning": "bbbbbb####7"},
    {"question": "12+12=?", "answer": "8", "reasoning": "cccccc####8"},
]
ROLLOUT = SamplerConfig(gen_length=16, block_length=8, steps=8, temperature=1.0)


def _model(family: str, tokenizer, seed: int = 0) -> torch.nn.Module:
    if family == "llada":  # full key/value heads, as the released LLaDA checkpoints
        return build_tiny_llada(tokenizer, d_model=32, n_heads=4, n_layers=LAYERS, mlp_hidden_size=64,
                                max_sequence_length=256, rope_theta=10_000.0, seed=seed)
    return build_tiny_dream(tokenizer, hidden_size=32, intermediate_size=64, num_layers=LAYERS, num_heads=4,
                            num_kv_heads=2, max_position_embeddings=256, rope_theta=10_000.0, seed=seed)


def _lm(family: str, tokenizer, seed: int = 0) -> DiffusionLM:
    return wrap_model(_model(family, tokenizer, seed).eval(), tokenizer)


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _padded(lm: DiffusionLM, texts=("1+2=", "a much longer prompt", "x")) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = encode_prompts(lm.tokenizer, list(texts), lm.tokens.pad_id)
    assert not mask.all(), "the test needs left padding"
    return ids, mask


def _hints(n: int, length: int, tokenizer, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hint_mask = torch.rand(n, length, generator=g) < 0.3  # [N, L]
    digits = torch.tensor(tokenizer.convert_tokens_to_ids(list("0123456789")))
    return digits[torch.randint(0, 10, (n, length), generator=g)], hint_mask


class Crash(Exception):
    pass


def _crash_at(step_to_crash: int):
    def on_step(step, metrics):
        if step == step_to_crash:
            raise Crash

    return on_step


def test_families_are_what_the_tests_claim(tiny_tokenizer):
    llada, dream = _lm("llada", tiny_tokenizer), _lm("dream", tiny_tokenizer)
    assert isinstance(llada.model, LLaDAModelLM) and llada.logits_shift == 0
    assert isinstance(dream.model, DreamModel) and dream.logits_shift == 1
    attention = dream.model.model.layers[0].self_attn
    assert attention.num_kv_heads < attention.num_heads  # grouped key/value heads


# ------------------------------------------------------------------------------------------ SFT


@pytest.mark.parametrize("family", FAMILIES)
def test_full_sft_trains_every_parameter_and_resumes_exactly(family, tiny_tokenizer, tmp_path):
    config = SFTConfig(steps=3, batch_size=4, micro_batch_size=2, learning_rate=5e-3, warmup_steps=1,
                       checkpoint=CheckpointConfig(every_steps=2, keep_last=1))
    full = _lm(family, tiny_tokenizer)
    start = _params(full.model)
    expected = train_sft(full, QUESTIONS, ANSWERS, config, progress=False, checkpoint_dir=tmp_path / "a")
    trained = _params(full.model)
    assert [n for n in start if torch.equal(start[n], trained[n])] == []

    resumed = _sft_crashed_at_2_then_resumed(family, tiny_tokenizer, config, tmp_path / "b", expected.losses)
    assert _equal(_params(resumed.model), trained)


def _sft_crashed_at_2_then_resumed(family, tokenizer, config, checkpoint_dir, expected_losses) -> DiffusionLM:
    """SFT of a fresh model killed after step 2, then resumed from its checkpoint by another fresh model: the
    resumed run starts at step 2 and repeats the uninterrupted run's later losses exactly."""
    with pytest.raises(Crash):
        train_sft(_lm(family, tokenizer), QUESTIONS, ANSWERS, config, progress=False,
                  checkpoint_dir=checkpoint_dir, on_step=_crash_at(2))
    resumed = _lm(family, tokenizer)
    result = train_sft(resumed, QUESTIONS, ANSWERS, config, progress=False, checkpoint_dir=checkpoint_dir)
    assert result.resumed_from == 2 and result.losses == expected_losses[2:]
    return resumed


def _adapted(peft_model: torch.nn.Module) -> set[str]:
    return {name for name, module in peft_model.get_base_model().named_modules() if hasattr(module, "lora_A")}


@pytest.mark.parametrize("family", FAMILIES)
def test_named_lora_targets_adapt_the_block_projections_and_never_the_lm_head(family, tiny_tokenizer):
    model = _model(family, tiny_tokenizer)
    head = model.get_output_embeddings()
    peft_model = apply_lora(model, LoRAConfig(r=2, alpha=4, target_modules=LORA_TARGETS[family]))
    assert _adapted(peft_model) == ADAPTED[family]
    assert LM_HEAD[family] not in _adapted(peft_model)
    assert peft_model.get_base_model().get_output_embeddings() is head and type(head) is torch.nn.Linear


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_sft_on_named_targets_trains_only_adapters_and_resumes_exactly(family, tiny_tokenizer, tmp_path):
    lora = LoRAConfig(r=4, alpha=8, target_modules=LORA_TARGETS[family], merge_on_save=False)
    config = SFTConfig(steps=3, batch_size=4, micro_batch_size=2, learning_rate=1e-2, lora=lora,
                       checkpoint=CheckpointConfig(every_steps=2, keep_last=1))
    full = _lm(family, tiny_tokenizer)
    base = _params(full.model)
    expected = train_sft(full, QUESTIONS, ANSWERS, config, progress=False, checkpoint_dir=tmp_path / "a")
    assert is_peft(full.model) and _adapted(full.model) == ADAPTED[family]
    trainable = {n: p for n, p in full.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert all(not torch.equal(p, torch.zeros_like(p)) for n, p in trainable.items() if "lora_B" in n)
    frozen = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
              for n, p in full.model.named_parameters() if not p.requires_grad}
    assert _equal(frozen, base)  # the base weights never move
    model_dir = tmp_path / "a" / "step-00000003" / "model"
    assert (model_dir / "adapter_model.safetensors").is_file() and not (model_dir / "model.safetensors").exists()

    resumed = _sft_crashed_at_2_then_resumed(family, tiny_tokenizer, config, tmp_path / "b", expected.losses)
    assert _equal(_params(resumed.model), _params(full.model))


# ------------------------------------------------------------------------------------------ RL


def _rl_config(**overrides) -> RLConfig:
    values = {
        "steps": 1, "batch_size": 2, "group_size": 4, "mu": 1, "rollout": ROLLOUT, "s_min": 2, "s_max": 4,
        "eta_low": 1.0, "eta_high": 1.0, "learning_rate": 1e-2, "beta": 0.0, "weight_decay": 0.0, "grad_clip": 1.0,
        "format_reward_weight": 0.0,
    }
    return RLConfig(**(values | overrides))


def writes_the_trace(completions, reasoning, **_):
    """Correct when the completion contains y*'s reasoning ("bbbbbb" of "bbbbbb####7"): an untrained model never
    writes it, so every group is all-wrong; a hint revealing every chunk but the answer span writes it into
    every inpainted completion, so every all-wrong group gets repaired, whatever the weights."""
    return [1.0 if trace.split("####")[0] in text else 0.0 for text, trace in zip(completions, reasoning, strict=True)]


def every_other_row(completions, **_):
    """Right, wrong, right, wrong, ... by row whatever the text: every group of an even G has reward variance."""
    return [1.0 if row % 2 == 0 else 0.0 for row in range(len(completions))]


@pytest.mark.parametrize("family", FAMILIES)
def test_igpo_step_repairs_every_all_wrong_group_and_trains_every_parameter(family, tiny_tokenizer):
    lm = _lm(family, tiny_tokenizer)
    before = _params(lm.model)
    m = train_rl(lm, RL_EXAMPLES, _rl_config(), correctness_fn=writes_the_trace, progress=False).metrics[0]
    assert m.accuracy == 0 and m.all_wrong_fraction == 1  # nothing right without hints
    assert m.inpaint_attempts == m.inpaint_successes == 2 * 4 and m.groups_repaired == 2
    assert m.completions_replaced == 2 * 2 and m.all_wrong_fraction_after_repair == 0  # floor(0.5 * 4) per group
    assert m.zero_advantage_fraction == 0 and m.hint_tokens > 0 and m.hint_tokens_kept > 0
    assert m.revealed_hint_ratio == pytest.approx(6 / 11)  # every chunk but the answer span "####7"
    assert [n for n, p in lm.model.named_parameters() if torch.equal(p, before[n])] == []


@pytest.mark.parametrize("family", FAMILIES)
def test_grpo_step_trains_every_parameter_and_never_inpaints(family, tiny_tokenizer):
    lm = _lm(family, tiny_tokenizer)
    before = _params(lm.model)
    config = _rl_config(algorithm="grpo")
    m = train_rl(lm, RL_EXAMPLES, config, correctness_fn=every_other_row, progress=False).metrics[0]
    assert m.zero_advantage_fraction == 0 and m.inpaint_attempts == 0 and m.groups_repaired == 0
    assert [n for n, p in lm.model.named_parameters() if torch.equal(p, before[n])] == []
    # The all-wrong batch IGPO repairs above gives GRPO no signal at all.
    unchanged = _lm(family, tiny_tokenizer)
    m = train_rl(unchanged, RL_EXAMPLES, config, correctness_fn=writes_the_trace, progress=False).metrics[0]
    assert m.all_wrong_fraction == 1 and m.zero_advantage_fraction == 1 and m.inpaint_attempts == 0
    assert _equal(_params(unchanged.model), before)


@pytest.mark.parametrize("family", FAMILIES)
def test_interrupted_igpo_run_resumes_to_the_same_parameters(family, tiny_tokenizer, tmp_path):
    config = _rl_config(steps=3, mu=2, beta=0.05, p_mask_prompt=0.2, micro_batch_size=4,
                        checkpoint=CheckpointConfig(every_steps=1, keep_last=None))
    reference = _lm(family, tiny_tokenizer)
    full = train_rl(reference, RL_EXAMPLES, config, correctness_fn=writes_the_trace, progress=False,
                    checkpoint_dir=str(tmp_path / "uninterrupted"))
    assert all(m.completions_replaced > 0 for m in full.metrics)  # the repair path is part of what resumes

    with pytest.raises(Crash):
        train_rl(_lm(family, tiny_tokenizer), RL_EXAMPLES, config, correctness_fn=writes_the_trace, progress=False,
                 checkpoint_dir=str(tmp_path / "run"), on_step=_crash_at(2))
    resumed_lm = _lm(family, tiny_tokenizer)
    resumed = train_rl(resumed_lm, RL_EXAMPLES, config, correctness_fn=writes_the_trace, progress=False,
                       checkpoint_dir=str(tmp_path / "run"))
    assert resumed.resumed_from == 2 and [m.step for m in resumed.metrics] == [3]
    assert _equal(_params(resumed_lm.model), _params(reference.model))
    assert not _equal(_params(resumed_lm.model), _params(_lm(family, tiny_tokenizer).model))
    strip = {"seconds"}
    assert [m.model_dump(exclude=strip) for m in resumed.metrics] == [m.model_dump(exclude=strip) for m in full.metrics[2:]]


# ------------------------------------------------------------------------------------------ evaluation


@pytest.mark.parametrize("family", FAMILIES)
def test_evaluation_scores_every_sample_through_the_verifier(family, tiny_tokenizer):
    lm = _lm(family, tiny_tokenizer)
    table = pd.DataFrame({"id": ["a", "b", "c"], "question": ["1+1", "22+22=?", "3"], "answer": ["2", "44", "3"]})
    greedy = SamplerConfig(gen_length=8, block_length=4, steps=2)  # one iteration per block: the cache is exact
    sampled = SamplerConfig(gen_length=8, block_length=4, steps=4, temperature=1.0)
    benchmarks = (
        BenchmarkConfig(name="exact", sampler=greedy),
        BenchmarkConfig(name="dual", sampler=greedy.model_copy(update={"cache": "dual"})),
        BenchmarkConfig(name="sampled", samples=2, sampler=sampled),
    )
    tables = {b.name: table for b in benchmarks}
    scores, samples = evaluate_model(lm, tables, EvalConfig(benchmarks=benchmarks, batch_size=4), family, progress=False)
    assert scores["metric"].tolist() == ["pass@1", "pass@1", "avg@2"] and set(scores["model"]) == {family}
    for _, row in scores.iterrows():
        mine = samples[samples["benchmark"] == row["benchmark"]]
        assert len(mine) == 3 * row["n_samples"] and row["score"] == pytest.approx(mine["correct"].mean())
    assert samples["correct"].tolist() == [is_correct(c, g) for c, g in zip(samples["completion"], samples["gold"])]
    completions = {name: samples[samples["benchmark"] == name]["completion"].tolist() for name in tables}
    assert completions["dual"] == completions["exact"]


# ------------------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_and_model_directory_reload_to_identical_logits(family, tiny_tokenizer, tmp_path):
    lm = _lm(family, tiny_tokenizer)

    def engine(module):
        return TrainEngine(module, learning_rate=1e-2, betas=(0.9, 0.99), weight_decay=0.1, grad_clip=1.0,
                           warmup_steps=0, micro_batches_per_update=1, micro_batch_size=1)

    trained = engine(lm.model)  # one update, so the weights are not the seed's
    ids = torch.randint(10, 90, (2, 8), generator=torch.Generator().manual_seed(0))
    trained.backward(lm.model(input_ids=ids).logits.float().logsumexp(-1).mean(), boundary=True)
    prompts, mask = _padded(lm)
    with torch.no_grad():
        expected = lm.logits(prompts, mask)
    path = save_checkpoint(tmp_path / "ckpt", 1, trained, {"sample": torch.Generator()}, tokenizer=tiny_tokenizer)
    other = _lm(family, tiny_tokenizer, seed=1)  # other initial weights
    state = load_checkpoint(path, engine(other.model), {"sample": torch.Generator()})
    assert state["step"] == 1 and _equal(_params(other.model), _params(lm.model))
    with torch.no_grad():
        assert torch.equal(other.logits(prompts, mask), expected)

    reloaded = load_model_dir(save_model(lm, tmp_path / "model", ModelConfig(name_or_path="tiny")))
    assert type(reloaded.model) is type(lm.model) and reloaded.logits_shift == lm.logits_shift
    assert reloaded.tokens == lm.tokens
    text = "12+12=? hello\n<|mdm_mask|>"  # spaces, a newline and a special token: the same ids after reload
    assert reloaded.tokenizer(text)["input_ids"] == tiny_tokenizer(text)["input_ids"]
    assert _equal(_params(reloaded.model), _params(lm.model))
    with torch.no_grad():
        assert torch.equal(reloaded.logits(prompts, mask), expected)


# ------------------------------------------------------------------------------------------ fast sampler


FAST = {
    "prefix": {"cache": "prefix"},
    "dual": {"cache": "dual"},
    "threshold": {"threshold": 0.5},
    "threshold-dual": {"threshold": 0.5, "cache": "dual"},
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("fast", list(FAST))
def test_fast_sampler_keeps_hints_fills_every_mask_and_is_exact_where_it_must_be(family, fast, tiny_tokenizer):
    lm = _lm(family, tiny_tokenizer)
    ids, mask = _padded(lm)
    n, length, block = ids.shape[0], 16, 8
    hint_ids, hint_mask = _hints(n, length, tiny_tokenizer)
    hints = {"prompt_mask": mask, "hint_ids": hint_ids, "hint_mask": hint_mask}
    exact = SamplerConfig(gen_length=length, block_length=block, steps=length, temperature=0.8)
    trace: list[torch.Tensor] = []
    config = exact.model_copy(update=FAST[fast])
    out = generate(lm, ids, config, torch.Generator().manual_seed(3), trace=trace, **hints)
    assert torch.equal(out[hint_mask], hint_ids[hint_mask])  # hints never overwritten
    assert not (out == lm.tokens.mask_id).any()
    commits = torch.stack(trace)  # [iterations, N, L]
    assert not (commits & hint_mask).any() and torch.equal(commits.any(0), ~hint_mask)

    if "threshold" in FAST[fast]:  # threshold 1.0 commits one token per iteration: the schedule with steps = L
        fixed = exact.model_copy(update={"cache": config.cache})
        reference = generate(lm, ids, fixed, torch.Generator().manual_seed(3), **hints)
        one = generate(lm, ids, config.model_copy(update={"threshold": 1.0}), torch.Generator().manual_seed(3), **hints)
    else:  # one iteration per block: every forward is a block-start refresh, i.e. the full forward
        single = exact.model_copy(update={"steps": length // block})
        reference = generate(lm, ids, single, torch.Generator().manual_seed(3), **hints)
        one = generate(lm, ids, single.model_copy(update=FAST[fast]), torch.Generator().manual_seed(3), **hints)
    assert torch.equal(one, reference)


# ------------------------------------------------------------------------------------------ DeepSpeed


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("family", ["dream"])  # LLaDA, the tiny default: tests/igpo/test_distributed.py
def test_two_process_deepspeed_rl_resume_and_zero3_sft(family, tmp_path):
    """tests/igpo/distributed_worker.py on the family's tiny model: IGPO under ZeRO-2 (inpainting repairs),
    resumed from step 1, SFT under ZeRO-3. Replicas identical, every parameter trained, resume exact."""
    from safetensors.torch import load_file

    env = os.environ | {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tests" / "igpo" / "distributed_worker.py"), str(tmp_path), family]
    run = subprocess.run(command, check=False, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]

    def load(name):
        return load_file(str(tmp_path / name))

    start, rank0, rank1 = load("start-rank0.safetensors"), load("rl-rank0.safetensors"), load("rl-rank1.safetensors")
    assert any(".blocks." in k for k in start) if family == "llada" else any(".self_attn." in k for k in start)
    assert rank0.keys() == rank1.keys() == start.keys()
    assert _equal(rank0, rank1) and all(not torch.equal(rank0[k], start[k]) for k in rank0)
    metrics = json.loads((tmp_path / "rl-metrics.json").read_text())
    assert sum(m["completions_replaced"] for m in metrics) > 0
    for r in (0, 1):
        assert _equal(load(f"resumed-rank{r}.safetensors"), rank0)
    sft0, sft1 = load("sft3-rank0.safetensors"), load("sft3-rank1.safetensors")
    assert _equal(sft0, sft1) and all(not torch.equal(sft0[k], start[k]) for k in sft0)
    exported = load_file(str(tmp_path / "sft-final" / "model.safetensors"))
    assert all(torch.equal(exported[k], sft0[k]) for k in exported)
