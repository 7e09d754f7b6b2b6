"""The GPU acceptance script (``benchmarks/gpu_check.py --smoke``, on CPU) and the LLaDA sampler benchmark
(``benchmarks/llada_sampler.py --quick``) run and write sane results; the benchmark's re-implementation of LLaDA's
reference algorithm agrees with ``igpo.sampler`` where it must. No assertion on a time."""

from __future__ import annotations

import json
import math
import string
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import gpu_check, llada_sampler


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_gpu_check_smoke_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    gpu_check.main(["--smoke", "--device", "cpu", "--out", str(out)])
    payload = json.loads(out.read_text())
    assert payload["smoke"] and payload["device"]["line"] and payload["device"]["torch"] == torch.__version__
    assert _positive(payload["total_seconds"])
    model = payload["model"]
    assert model["n_layers"] == 2 and model["vocabulary"] == gpu_check.SMOKE_VOCAB and _positive(model["parameters"])

    rollout = payload["rollout"]
    assert rollout["settings"]["gen_length"] == 32 and rollout["settings"]["rows"] == 4
    assert len(rollout["modes"]) == 3
    for name, mode in rollout["modes"].items():
        assert "skipped" not in mode, name
        assert _positive(mode["tokens_per_second"]) and _positive(mode["seconds"]), name
        # --smoke's budget of 0 s cuts every mode after MIN_FORWARDS iterations: the extrapolated path
        assert mode["extrapolated"] and mode["forwards_run"] == gpu_check.MIN_FORWARDS < mode["forwards_full"], name
        assert not mode["rows_left_early"], name
    assert "early exit cannot trigger" in rollout["note"]

    igpo = payload["igpo_step"]
    assert set(igpo["phase_seconds"]) == {"rollout", "reward", "repair", "logprobs", "advantages", "update"}
    assert all(_positive(igpo["phase_seconds"][p]) for p in ("rollout", "repair", "logprobs", "update"))
    assert igpo["config"]["algorithm"] == "igpo" and igpo["config"]["lora"]["r"] == 16
    assert igpo["config"]["micro_batch_size"] == 2 and igpo["checkpointed_blocks"] == 2
    assert igpo["inpaint_attempts"] > 0  # random weights: every group all-wrong, IGPO's repair ran
    assert _positive(igpo["memory"]["peak_mib"])
    sft = payload["sft_step"]
    assert _positive(sft["phase_seconds"]["step"]) and sft["tokens"] > 0 and sft["checkpointed_blocks"] == 2
    assert _positive(sft["memory"]["peak_mib"])


def test_gpu_check_refuses_a_missing_gpu_without_smoke(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="CUDA is not available"):
        gpu_check.main(["--out", str(tmp_path / "x.json")])


def test_meta_built_model_is_filled_on_the_device():
    lm = gpu_check.build_model(smoke=True, device="cpu", dtype=torch.bfloat16, seed=0)
    params = list(lm.model.parameters())
    assert all(p.device.type == "cpu" and p.dtype == torch.bfloat16 for p in params)
    assert all(torch.isfinite(p.float()).all() for p in params)
    head = lm.model.model.transformer.ff_out.weight.float()
    assert head.std().item() == pytest.approx(1 / 64**0.5, rel=0.1)  # normal(0, 1/sqrt(fan_in))
    assert lm.tokens.mask_id == lm.model.config.mask_token_id and lm.tokens.eos_id == lm.model.config.eos_token_id


def test_llada_tokenizer_puts_the_special_tokens_at_the_config_ids():
    from igpo.models.llada import LLaDAConfig
    from igpo.prompting import format_prompt
    from igpo.tokens import SpecialTokens

    config = LLaDAConfig()
    tokenizer = llada_sampler.llada_tokenizer(config)
    assert len(tokenizer) == config.rows == 126464
    tokens = SpecialTokens.from_tokenizer(tokenizer, config)
    assert (tokens.mask_id, tokens.eos_id, tokens.pad_id, tokens.eot_id) == (126336, 126081, 126081, 126348)
    ids = tokenizer(format_prompt(tokenizer, "1+2?"), add_special_tokens=False).input_ids
    assert ids[0] == 126080 and 126348 in ids and 126081 not in ids and ids[-2:] == [string.printable.index("\n")] * 2
    assert tokenizer.decode([100_000, string.printable.index("a")]) == "<|r100000|>a"  # any id decodes


def test_transfer_counts_match_the_sampler_schedule():
    from igpo.sampler import num_transfer_tokens

    counts = torch.tensor([0, 1, 7, 8, 31, 32])
    assert torch.equal(llada_sampler.transfer_counts(counts, 4), num_transfer_tokens(counts, 4))


def test_reference_greedy_equals_the_exact_sampler_on_a_small_llada():
    """At T = 0 the reference (full forward, float64 softmax over every position) and igpo.sampler (block logits,
    float32) commit the same tokens, over several blocks."""
    from igpo.sampler import SamplerConfig, generate

    lm = llada_sampler.random_llada(llada_sampler.QUICK_SHAPE, vocab=512)
    prompts = llada_sampler.random_prompts(lm, rows=3, length=6, seed=0)
    fields = {"gen_length": 16, "block_length": 8, "steps": 8, "temperature": 0.0}
    if "early_exit" in SamplerConfig.model_fields:
        fields["early_exit"] = False
    exact = generate(lm, prompts, SamplerConfig(**fields), torch.Generator().manual_seed(0))
    reference = llada_sampler.reference_generate(lm.model, prompts, lm.tokens.mask_id, 16, 8, 8, 0.0,
                                                 torch.Generator().manual_seed(0))
    assert torch.equal(exact, reference)


def test_reference_gumbel_noise_samples_the_tempered_softmax():
    """exp(logits) / (-log U)^T has its argmax distributed as softmax(logits / T)."""
    logits = torch.tensor([[0.0, 1.0, 2.0]]).expand(20000, 3)
    draws = llada_sampler.gumbel_noise_float64(logits, 2.0, torch.Generator().manual_seed(0)).argmax(-1)
    freq = torch.bincount(draws, minlength=3).double() / len(draws)
    assert torch.allclose(freq, torch.softmax(logits[0].double() / 2.0, -1), atol=0.015)


@pytest.mark.slow
def test_llada_sampler_quick(tmp_path):
    from igpo.models.tiny import save_tiny

    demo = save_tiny(tmp_path / "demo")  # stands in for the trained demo model: the --model-dir path runs
    payload = llada_sampler.main(["--quick", "--out", str(tmp_path), "--model-dir", str(demo),
                                  "--demo-gen-lengths", "16", "--demo-block-length", "8", "--demo-rows", "3"])
    saved = json.loads((tmp_path / "llada_sampler.json").read_text())
    markdown = (tmp_path / "llada_sampler.md").read_text()
    assert "Machine: " in markdown and "Command: `" in markdown and "|---|" in markdown
    assert saved["random"]["vocabulary"] == 126464 and saved["machine"]["torch_threads"] == 1
    results = payload["random"]["results"]
    assert set(results) == {"0.0", "1.2"}
    greedy = results["0.0"]
    exact = "exact, early exit off" if payload["early_exit_available"] else "exact"
    assert greedy[exact]["rows_identical_to_reference"] == payload["random"]["rows"]
    assert "reference" in results["1.2"] and any("cache" in m for m in results["1.2"])  # fast modes at T = 1.2
    for modes in results.values():
        for name, e in modes.items():
            assert _positive(e["completion_tokens_per_second"]["mean"]), name
            assert _positive(e["speedup_over_reference"]["mean"]) and e["forwards"] > 0, name
    (entry,) = payload["demo"]
    assert entry["rows"] == 3 and entry["gen_length"] == 16
    for modes in entry["results"].values():
        assert "threshold 0.9" in modes and all(0 <= e["correct_fraction"] <= 1 for e in modes.values())
