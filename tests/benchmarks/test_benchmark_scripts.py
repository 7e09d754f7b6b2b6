"""The benchmark scripts run in their --quick mode and write well-formed results; the shared helpers are
right. Nothing here asserts on a time (benchmarks print numbers, tests never pass or fail on speed)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import common, igpo_effect, rollout_throughput, summarize, train_step

MACHINE_KEYS = {"cpu", "cores", "torch", "torch_threads", "device"}


def _load(out: Path, name: str) -> dict:
    payload = json.loads((out / f"{name}.json").read_text())
    markdown = (out / f"{name}.md").read_text()
    assert MACHINE_KEYS <= set(payload["machine"]), payload["machine"]
    assert "Machine: " in markdown and "Command: `" in markdown and "|---|" in markdown
    return payload


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """One results directory for the module, so the summary test sees every script's output."""
    return tmp_path_factory.mktemp("bench")


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_analytic_flops_match_torch_flop_counter():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    lm = common.build_model("tiny", "cpu")
    lm.model.config._attn_implementation = "eager"  # sdpa kernels are not all counted on CPU
    ids = torch.randint(0, 100, (3, 40))
    with FlopCounterMode(display=False) as counter:
        lm.logits(ids, None, torch.arange(30, 40))
    assert counter.get_total_flops() == common.ModelShape.of(lm.model).forward_flops(3, 40, 10)


def test_interval_and_paired_difference_by_hand():
    stat = common.interval([1.0, 2.0, 3.0])
    # t(0.975, df=2) = 4.3027; sem = 1 / sqrt(3)
    assert stat["mean"] == pytest.approx(2.0)
    assert stat["half_width"] == pytest.approx(4.302653 / 3**0.5, rel=1e-5)
    diff = common.paired_difference([2.0, 3.0, 5.0], [1.0, 2.0, 3.0])
    assert diff["mean"] == pytest.approx(4 / 3) and diff["relative"] == pytest.approx(10 / 6 - 1)
    assert 0 < diff["p_value"] < 1
    assert common.interval([0.5])["low"] is None


def test_rollout_throughput_quick(out):
    args = ["--quick", "--models", "tiny", "--block-lengths", "8,16", "--out", str(out)]
    rollout_throughput.main([*args, "--budget-s", "0"])  # 0: every generation runs to the end
    payload = _load(out, "rollout_throughput")
    assert [r["mode"] for r in payload["rows"]] == ["full", "full"]
    for row in payload["rows"]:
        assert row["forwards_per_completion_token"] == pytest.approx(0.5)
        assert _finite(row["completion_tokens_per_second"]) and _finite(row["peak_ratio"])
        assert row["memory"]["peak_mib"] > 0
    # A budget too small for any generation stops it and extrapolates from the timed iteration.
    rollout_throughput.main([*args, "--budget-s", "1e-9"])
    rows = _load(out, "rollout_throughput")["rows"]
    assert all(
        r["mode"].startswith("extrapolated") and _finite(r["completion_tokens_per_second"]) for r in rows
    )


def test_train_step_probes_the_code_of_another_revision(tmp_path):
    """--compare: a probe runs in its own process against the igpo/ package extracted from a git revision."""
    root, short = train_step.code_tree("HEAD", tmp_path)
    assert (root / "igpo" / "rl" / "trainer.py").is_file() and short
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(train_step.demo_rows(num_steps=1, count=8)))
    rl = {"algorithm": "grpo", "batch_size": 2, "group_size": 2, "micro_batch_size": 2, "mu": 1, "beta": 0.01,
          "steps": 1, "rollout": {"gen_length": 8, "block_length": 8, "steps": 4, "temperature": 1.0}}
    result = train_step.probe({"model": "tiny", "rows_file": str(rows), "rl": rl}, root)
    assert result["igpo_package"] == str(root / "igpo")
    assert result["logprob_passes_per_step"] == {"no_grad": 2, "grad": 2}  # two micro-batches: reference + gradient
    assert result["model_forwards_per_step"] > 2 and result["peak_rise_mib"] >= 0


def test_train_step_quick(out):
    train_step.main(["--quick", "--out", str(out)])
    payload = _load(out, "train_step")
    assert [e["algorithm"] for e in payload["rl"]] == ["grpo", "igpo"]
    grpo, igpo = payload["rl"]
    assert set(grpo["phase_seconds"]) == set(train_step.PHASES)
    assert grpo["inpaint_attempts_per_step"]["mean"] == 0 and igpo["inpaint_attempts_per_step"]["mean"] > 0
    assert _finite(payload["sft"][0]["tokens_per_second"])


def test_igpo_effect_quick(out):
    igpo_effect.main(["--quick", "--out", str(out), "--cache", str(out / "cache")])
    payload = _load(out, "igpo_effect")
    s, seeds = payload["settings"], payload["settings"]["seeds"]
    assert len(payload["runs"]) == 2 * len(seeds)
    for metric in igpo_effect.METRICS:
        summary = payload["summary"][metric]
        assert summary["grpo"]["n"] == summary["igpo"]["n"] == summary["igpo_minus_grpo"]["n"] == len(seeds)
    # The hard split: SFT on easy rows only, RL on both, the test split reported per difficulty.
    assert s["task"]["sft_difficulties"] == ["easy"] and s["task"]["num_train_hard"] > 0
    for run in payload["runs"]:
        assert 0 <= run["heldout_hard"] <= 1 and 0 <= run["heldout_easy"] <= 1
        # Equal generated completions: every run stops at the first step whose count reaches the budget.
        totals = [c["completions_generated_total"] for c in run["curve"]]
        budget = s["budget"]["max_generated_completions"]
        assert totals[-1] >= budget and all(t < budget for t in totals[:-1])
        assert all(c["hard_all_wrong_groups"] <= c["hard_groups"] <= s["rl"]["batch_size"] for c in run["curve"])
    for arm in ("grpo", "igpo"):
        points = payload["curves"][arm]
        assert points[0]["completions"] == 0 and points[0]["heldout_hard"]["n"] == len(seeds)
    assert (out / "igpo_effect.png").stat().st_size > 0
    text = (out / "igpo_effect.md").read_text()
    assert "Command: `" in text and "Machine: " in text and ("Goal reached" in text or "Goal not reached" in text)
    # The checkpoint is cached: a second run reuses it.
    assert (out / "cache" / f"sft-{payload['sft_checkpoint']['key']}" / "record.json").is_file()


def test_igpo_effect_ablation_mode_quick(out):
    """IGPO vs full inpainting (eta = 1) vs no entropy filter (tau = 1), from the same checkpoint."""
    igpo_effect.main(["--quick", "--mode", "ablation", "--out", str(out), "--cache", str(out / "cache")])
    payload = _load(out, "igpo_ablations")
    seeds = payload["settings"]["seeds"]
    assert sorted((r["arm"], r["seed"]) for r in payload["runs"]) == sorted(
        (a, seed) for a in ("igpo", "full", "tau1") for seed in seeds
    )
    assert all(r["algorithm"] == "igpo" for r in payload["runs"])
    assert payload["settings"]["arm_rl"]["full"] == {"eta_low": 1.0, "eta_high": 1.0}
    assert payload["summary"]["heldout_hard"]["igpo_minus_tau1"]["n"] == len(seeds)
    assert (out / "igpo_ablations.png").is_file()


def test_igpo_effect_budget_mode_quick(out):
    """GRPO, IGPO and dynamic sampling from the same checkpoint, each stopped by the same completion budget."""
    igpo_effect.main(["--quick", "--mode", "budget", "--out", str(out), "--cache", str(out / "cache")])
    payload = _load(out, "dynamic_sampling")
    s, seeds = payload["settings"], payload["settings"]["seeds"]
    budget = s["budget"]["max_generated_completions"]
    per_step = s["rl"]["batch_size"] * s["rl"]["group_size"]
    assert budget == per_step * s["rl"]["steps"]  # default: what GRPO spends in --rl-steps steps
    assert sorted((r["arm"], r["seed"]) for r in payload["runs"]) == sorted(
        (a, seed) for a in ("grpo", "igpo", "dynamic") for seed in seeds
    )
    for run in payload["runs"]:
        # Every run stops at the first step whose cumulative count reaches the budget.
        totals = [c["completions_generated_total"] for c in run["curve"]]
        assert run["completions_generated"] == totals[-1] >= budget and all(t < budget for t in totals[:-1])
        assert run["steps_run"] == len(run["curve"]) and run["seconds_per_step"] > 0
        if run["arm"] == "grpo":
            assert run["steps_run"] == budget // per_step
    for metric in igpo_effect.BUDGET_METRICS:
        summary = payload["summary"][metric]
        assert {"grpo", "igpo", "dynamic", "dynamic_minus_grpo", "dynamic_minus_igpo", "igpo_minus_grpo"} <= set(summary)
        assert summary["dynamic_minus_grpo"]["n"] == len(seeds)
    # The mode does not key the SFT cache: the checkpoint the default mode built (test above) is reused.
    assert (out / "cache" / f"sft-{payload['sft_checkpoint']['key']}" / "record.json").is_file()
    if (out / "igpo_effect.json").exists():
        assert payload["sft_checkpoint"]["key"] == json.loads((out / "igpo_effect.json").read_text())["sft_checkpoint"]["key"]


def test_igpo_effect_rollouts_mode_quick(out):
    """The same RL with exact and with fast rollouts (the sampler's cache and threshold fields)."""
    igpo_effect.main(
        ["--quick", "--mode", "rollouts", "--rollout-cache", "prefix", "--out", str(out), "--cache", str(out / "cache")]
    )
    payload = _load(out, "fast_rollouts_rl")
    assert payload["settings"]["arm_rollouts"] == {"exact": {}, "fast": {"cache": "prefix", "threshold": 0.9}}
    seeds = payload["settings"]["seeds"]
    assert sorted((r["arm"], r["seed"]) for r in payload["runs"]) == sorted((a, s) for a in ("exact", "fast") for s in seeds)
    assert all(r["algorithm"] == "igpo" and r["steps_run"] == payload["settings"]["rl"]["steps"] for r in payload["runs"])
    for metric in igpo_effect.ROLLOUT_METRICS:
        assert payload["summary"][metric]["fast_minus_exact"]["n"] == len(seeds)
    text = summarize.main(["--results", str(out)])
    for title in ("GRPO vs IGPO vs dynamic sampling at an equal sampling budget", "RL with fast vs exact rollouts"):
        assert f"**{title}**" in text


def test_summary_collects_every_script(out):
    if not all((out / f"{n}.json").exists() for n in ("rollout_throughput", "train_step", "igpo_effect")):
        pytest.skip("reads what the three script tests above wrote")
    text = summarize.main(["--results", str(out)])
    assert (out / "summary.md").read_text() == text
    for title in ("Rollout throughput", "Training step", "The IGPO effect"):
        assert f"**{title}**" in text


def test_fast_sampler_quick(out):
    from benchmarks import fast_sampler

    fast_sampler.main(["--quick", "--out", str(out), "--cache", str(out / "cache")])
    payload = _load(out, "fast_sampler")
    modes = list(fast_sampler.MODES)
    assert [r["mode"] for r in payload["throughput"]] == modes
    assert [r["mode"] for r in payload["accuracy"]] == modes
    exact, prefix, dual = payload["throughput"][:3]
    # Exact: steps = L/2 full forwards per sequence; the caches: one full forward per block, the rest cached.
    assert exact["full_forwards_per_token"] == pytest.approx(0.5) and exact["cached_forwards_per_token"] == 0
    blocks = exact["gen_length"] // exact["block_length"]
    for row in (prefix, dual):
        assert row["full_forwards"] == blocks and row["cached_forwards"] == exact["full_forwards"] - blocks
    assert dual["model_tokens_per_token"] < prefix["model_tokens_per_token"] < exact["model_tokens_per_token"]
    for row in payload["throughput"] + payload["accuracy"]:
        assert _finite(row["completion_tokens_per_second"])
    assert all(0 <= r["accuracy"] <= 1 and r["same_as_exact"] <= 1 for r in payload["accuracy"])
    assert payload["accuracy"][0]["same_as_exact"] == 1
    assert "**Fast sampler**" in summarize.main(["--results", str(out)])


def test_llada_memory_estimate_counts_the_8b_architecture():
    """The estimate builds the native class on the meta device: LLaDA-8B has about 8.0B parameters, and the
    LoRA count is r * (in + out) over the 7 linear layers of each of 32 blocks."""
    from benchmarks import llada_memory

    result = llada_memory.estimate(micro_batch=8, prompt=256, gen_length=256, gpus=8, lora_r=128)
    assert 7.9 < result["parameters (billions)"] < 8.1
    d, hidden = 4096, 12288
    assert result["LoRA parameters (millions)"] * 1e6 == 32 * 128 * (4 * 2 * d + 3 * (d + hidden))
    assert result["peak per GPU, gradient checkpointing"] < result["peak per GPU, no checkpointing"]
