"""The IGPO effect with statistics (the paper's Figure 1b and Table 1 in miniature): from one SFT
checkpoint of the demo task, GRPO and IGPO with the same sample budget over paired seeds. Two more
comparisons from the same checkpoint and seeds: ``--mode budget`` (GRPO vs IGPO vs dynamic sampling at an
equal number of generated completions) and ``--mode rollouts`` (RL with exact vs fast rollouts).

    python benchmarks/igpo_effect.py                      # CPU defaults (~10 min SFT once, then ~30 min of RL)
    python benchmarks/igpo_effect.py --workers 2          # two RL runs at a time (~15 min of RL on 2 busy cores)
    python benchmarks/igpo_effect.py --device cuda --seeds 10 --rl-steps 100 --batch-size 16
    python benchmarks/igpo_effect.py --quick              # smoke test (statistics on meaningless numbers)
    python benchmarks/igpo_effect.py --mode budget --workers 2 --seeds 6     # -> dynamic_sampling.{json,md}
    python benchmarks/igpo_effect.py --mode rollouts --workers 2 --seeds 6   # -> fast_rollouts_rl.{json,md}

1. Starting checkpoint. The tiny dLLM is SFT'd on the demo task in stages (with exact resume between
   stages); after each stage the all-wrong fraction of G samples at the rollout temperature is measured on
   a fixed set of training prompts (where RL will sample). SFT stops at the first stage where it is at most
   ``--target-all-wrong``, so all-wrong groups are frequent but not universal. The checkpoint and its
   calibration history are cached under ``benchmarks/results/tmp/`` (git-ignored), keyed by every setting
   that shapes it, and reused by later runs.
2. For each seed, GRPO and IGPO start from that checkpoint with identical configs except ``algorithm``:
   the same prompt order, the same B x G sample budget per step (IGPO's inpainting rollouts are extra
   compute, not extra prompts, as in the paper), the same evaluation.
3. Per run: all-wrong fraction of the model's own samples (before repair) averaged over all steps and over
   the second half, zero-advantage fraction after repair (all steps), and held-out pass@1 (greedy) on the
   test split after RL. Per algorithm: mean with a 95% t-interval over seeds; per pair: IGPO - GRPO with
   its 95% interval and paired t-test p-value. The per-step curves are in the JSON.

``--mode budget``: every algorithm runs until the step at which it has generated ``--budget`` completions
(rollouts + IGPO's inpainting attempts + dynamic sampling's re-sampled rollouts; default B x G x
``--rl-steps``, i.e. what GRPO spends in ``--rl-steps`` steps), with at most 4 x ``--rl-steps`` steps. Per run:
all-wrong fraction before and after repair, zero-advantage fraction, held-out pass@1, seconds per step, steps
run and completions generated; per pair the paired difference. ``--mode rollouts``: the same algorithm
(``--rollout-algorithm``, IGPO by default) for ``--rl-steps`` steps with the exact sampler and with the fast
one (``--rollout-cache``, ``--rollout-threshold``: Fast-dLLM's KV cache and confidence-threshold decoding);
held-out pass@1 is measured with the exact greedy sampler in both arms. In the other modes those two flags,
when given, apply to every arm's rollouts.

Choices that differ from the paper's setting, on purpose: the correctness reward alone (format weight 0),
so "zero advantage" means "every completion equally right"; mu = 1 and beta = 0 (what fits a CPU); the
log-prob estimator is the paper's fully masked one (igpo.logprobs), which on a tiny model is known to be
noisy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

METRICS = ("all_wrong", "all_wrong_second_half", "zero_advantage", "heldout_accuracy")
LABELS = {
    "all_wrong": "all-wrong fraction (all steps)",
    "all_wrong_second_half": "all-wrong fraction (2nd half)",
    "zero_advantage": "zero-advantage fraction after repair",
    "heldout_accuracy": "held-out pass@1 (greedy)",
    "all_wrong_after_repair": "all-wrong fraction after repair",
    "seconds_per_step": "seconds per RL step",
    "rollout_seconds_per_step": "rollout seconds per RL step",
    "steps_run": "RL steps run",
    "completions_generated": "completions generated",
}
DIGITS = {"seconds_per_step": 2, "rollout_seconds_per_step": 2, "steps_run": 1, "completions_generated": 0}
BUDGET_METRICS = (
    "all_wrong",
    "all_wrong_after_repair",
    "zero_advantage",
    "heldout_accuracy",
    "seconds_per_step",
    "steps_run",
    "completions_generated",
)
ROLLOUT_METRICS = (
    "all_wrong",
    "zero_advantage",
    "heldout_accuracy",
    "seconds_per_step",
    "rollout_seconds_per_step",
)
# Per mode: the results file, its arms, and the paired differences reported (a - b).
MODES = {
    "effect": ("igpo_effect", ("grpo", "igpo"), (("igpo", "grpo"),)),
    "budget": (
        "dynamic_sampling",
        ("grpo", "igpo", "dynamic"),
        (("igpo", "grpo"), ("dynamic", "grpo"), ("dynamic", "igpo")),
    ),
    "rollouts": ("fast_rollouts_rl", ("exact", "fast"), (("fast", "exact"),)),
}
NAMES = {"grpo": "GRPO", "igpo": "IGPO", "dynamic": "dynamic", "exact": "exact", "fast": "fast"}


def settings(args: Any) -> dict[str, Any]:
    """Every setting of the experiment as plain data (it keys the checkpoint cache and goes in the JSON)."""
    q = args.quick
    length = 24 if q else args.gen_length
    block = 8 if q else args.block_length
    return {
        "task": {
            "num_train": 40 if q else args.num_train,
            "num_test": 8 if q else args.num_test,
            "num_steps": 1 if q else args.task_steps,
            "operands": [1, 2, 3],
            "operations": ["+", "-"],
            "reasoning": "concise",
            "seed": 0,
        },
        "model": {
            "num_layers": 1 if q else args.layers,
            "hidden_size": 32 if q else 64,
            "num_heads": 4,
            "head_dim": 8 if q else 16,
            "intermediate_size": 64 if q else 128,
            "max_position_embeddings": 256,
            "seed": 0,
        },
        "sft": {
            "stage_steps": 2 if q else args.sft_stage,
            "max_steps": 4 if q else args.sft_max_steps,
            "batch_size": 4 if q else 16,
            "learning_rate": 2e-3,
            "target_all_wrong": args.target_all_wrong,
            "calibration_prompts": 4 if q else 64,
        },
        "rollout": {
            "gen_length": length,
            "block_length": block,
            "steps": length // 2,
            "temperature": args.temperature,
        },
        "rl": {
            "steps": 2 if q else args.rl_steps,
            "batch_size": 2 if q else args.batch_size,
            "group_size": 2 if q else args.group_size,
            "mu": 1,
            "beta": 0.0,
            "learning_rate": args.learning_rate,
            "weight_decay": 0.0,
            "grad_clip": 1.0,
            "format_reward_weight": 0.0,
            "s_min": 3,
            "s_max": 6,
            "eta_low": 0.2,
            "eta_high": 0.6,
            "lambda_": 0.5,
            "tau": 0.2,
            "oversample_factor": args.oversample_factor,
            "max_resample_rounds": args.max_resample_rounds,
        },
        "seeds": list(range(2 if q else args.seeds)),
    } | mode_settings(args, q)


def mode_settings(args: Any, quick: bool) -> dict[str, Any]:
    """What the chosen mode adds: the arms' rollout changes and the budget. Not part of the SFT cache key."""
    fast = {"cache": args.rollout_cache, "threshold": args.rollout_threshold}
    fast = {k: v for k, v in fast.items() if v is not None}
    if args.mode == "rollouts":
        fast = {"cache": "dual", "threshold": 0.9} | fast
        return {
            "mode": "rollouts",
            "workers": args.workers,
            "algorithm": args.rollout_algorithm,
            "arm_rollouts": {"exact": {}, "fast": fast},
        }
    extra: dict[str, Any] = {
        "mode": args.mode,
        "workers": args.workers,
        "arm_rollouts": dict.fromkeys(MODES[args.mode][1], fast),
    }
    if args.mode == "budget":
        steps = 2 if quick else args.rl_steps
        per_step = (2 if quick else args.batch_size) * (2 if quick else args.group_size)
        extra["budget"] = {"max_generated_completions": args.budget or per_step * steps, "max_steps": 4 * steps}
    return extra


def task_tables(s: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from igpo.data.config import DemoTaskConfig
    from igpo.data.demo_task import generate_demo_task

    train, test = generate_demo_task(DemoTaskConfig(**s["task"]))
    return train.to_pylist(), test.to_pylist()


def sample_correctness(lm: Any, rows: list[dict[str, Any]], group_size: int, sampler: Any, seed: int) -> Any:
    """[len(rows), G] correctness of G samples per question (the rollout sampler, the shared verifier)."""
    import torch

    from igpo.prompting import decode_completions, encode_prompts
    from igpo.sampler import generate
    from igpo.verify import is_correct

    lm.model.eval()
    ids, mask = encode_prompts(
        lm.tokenizer, [r["question"] for r in rows], lm.tokens.pad_id, device=lm.device
    )
    ids, mask = ids.repeat_interleave(group_size, 0), mask.repeat_interleave(group_size, 0)
    generator = torch.Generator(device=lm.device).manual_seed(seed)
    texts: list[str] = []
    for lo in range(0, ids.shape[0], 128):
        out = generate(lm, ids[lo : lo + 128], sampler, generator, prompt_mask=mask[lo : lo + 128])
        texts += decode_completions(lm.tokenizer, out, lm.tokens.stop_ids)
    correct = [is_correct(t, str(rows[i // group_size]["answer"])) for i, t in enumerate(texts)]
    return torch.tensor(correct, dtype=torch.float32).view(len(rows), group_size)


def prepare_checkpoint(s: dict[str, Any], device: str, cache: Path) -> tuple[Path, dict[str, Any]]:
    """The SFT starting checkpoint (cached): staged SFT until the calibration all-wrong fraction is at most
    the target. Returns (model directory, record with the calibration history)."""
    from igpo.checkpoint import CheckpointConfig
    from igpo.models import ModelConfig, save_model, wrap_model
    from igpo.models.tiny import TinyModelConfig, build_tiny_model, build_tiny_tokenizer
    from igpo.sampler import SamplerConfig
    from igpo.sft import SFTConfig, train_sft

    key_data = {k: s[k] for k in ("task", "model", "sft", "rollout")} | {"G": s["rl"]["group_size"]}
    key = hashlib.sha1(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:12]
    root = cache / f"sft-{key}"
    record_path = root / "record.json"
    if record_path.exists():
        print(f"SFT checkpoint: cached {root}", flush=True)
        return root / "model", json.loads(record_path.read_text())
    if root.exists():  # an interrupted build: its staged checkpoints resume below
        print(f"SFT checkpoint: resuming {root}", flush=True)
    train, _ = task_tables(s)
    tokenizer = build_tiny_tokenizer()
    lm = wrap_model(build_tiny_model(tokenizer, TinyModelConfig(**s["model"])).to(device), tokenizer)
    sampler = SamplerConfig(**s["rollout"])
    sft, G = s["sft"], s["rl"]["group_size"]
    calibration = train[: sft["calibration_prompts"]]
    history, began = [], time.perf_counter()
    for steps in range(sft["stage_steps"], sft["max_steps"] + 1, sft["stage_steps"]):
        config = SFTConfig(
            steps=steps,
            batch_size=sft["batch_size"],
            learning_rate=sft["learning_rate"],
            max_response_tokens=sampler.gen_length,
            pad_response_to=sampler.gen_length,
            seed=0,
            checkpoint=CheckpointConfig(every_steps=sft["stage_steps"], keep_last=1),
        )
        result = train_sft(
            lm,
            [r["question"] for r in train],
            [r["reasoning"] for r in train],
            config,
            progress=False,
            checkpoint_dir=root / "stages",
        )
        correct = sample_correctness(lm, calibration, G, sampler, seed=12345)
        entry = {
            "sft_steps": steps,
            "loss": result.losses[-1] if result.losses else None,
            "sampled_accuracy": float(correct.mean()),
            "all_wrong_fraction": float((correct.sum(1) == 0).float().mean()),
            "seconds": time.perf_counter() - began,
        }
        history.append(entry)
        print(
            f"  SFT {steps} steps: loss {entry['loss']}, sampled accuracy {entry['sampled_accuracy']:.3f}, "
            f"all-wrong {entry['all_wrong_fraction']:.3f} ({entry['seconds']:.0f} s)",
            flush=True,
        )
        if entry["all_wrong_fraction"] <= sft["target_all_wrong"]:
            break
    save_model(lm, root / "model", ModelConfig(name_or_path="."))
    shutil.rmtree(root / "stages", ignore_errors=True)
    record = {
        "key": key,
        "settings": key_data,
        "history": history,
        "reached_target": history[-1]["all_wrong_fraction"] <= sft["target_all_wrong"],
    }
    record_path.write_text(json.dumps(record, indent=2))
    return root / "model", record


def heldout_accuracy(lm: Any, test: list[dict[str, Any]], s: dict[str, Any]) -> float:
    import pandas as pd

    from igpo.evaluate import BenchmarkConfig, EvalConfig, evaluate_model
    from igpo.sampler import SamplerConfig

    sampler = SamplerConfig(**(s["rollout"] | {"temperature": 0.0}))
    config = EvalConfig(
        benchmarks=(BenchmarkConfig(name="demo", samples=1, sampler=sampler),), batch_size=128
    )
    scores, _ = evaluate_model(lm, {"demo": pd.DataFrame(test)}, config, "bench", progress=False)
    return float(scores["score"].iloc[0])


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One RL run (one algorithm, one seed) from the checkpoint, in this process or a worker."""
    common.set_threads(job["threads"])
    from igpo.models import load_model_dir
    from igpo.rl.config import RLConfig
    from igpo.rl.trainer import train_rl
    from igpo.sampler import SamplerConfig

    s = job["settings"]
    arm = job.get("arm", job["algorithm"])
    train, test = task_tables(s)
    lm = load_model_dir(job["model_dir"], job["device"])
    rl = s["rl"]
    if "budget" in s:  # equal budgets: the budget stops each run, the step count only caps it
        rl = rl | {"steps": s["budget"]["max_steps"]} | {"max_generated_completions": s["budget"]["max_generated_completions"]}
    rollout = SamplerConfig(**(s["rollout"] | s.get("arm_rollouts", {}).get(arm, {})))
    config = RLConfig(algorithm=job["algorithm"], seed=job["seed"], rollout=rollout, **rl)
    began = time.perf_counter()
    result = train_rl(lm, train, config, progress=False)
    rl_seconds = time.perf_counter() - began
    steps = result.metrics
    half = len(steps) // 2
    mean = lambda xs: sum(xs) / len(xs)
    run = {
        "arm": arm,
        "algorithm": job["algorithm"],
        "seed": job["seed"],
        "rl_seconds": rl_seconds,
        "steps_run": len(steps),
        "completions_generated": steps[-1].completions_generated_total,
        "seconds_per_step": rl_seconds / len(steps),
        "rollout_seconds_per_step": mean([m.seconds.rollout for m in steps]),
        "all_wrong": mean([m.all_wrong_fraction for m in steps]),
        "all_wrong_second_half": mean([m.all_wrong_fraction for m in steps[half:]]),
        "all_wrong_after_repair": mean([m.all_wrong_fraction_after_repair for m in steps]),
        "zero_advantage": mean([m.zero_advantage_fraction for m in steps]),
        "heldout_accuracy": heldout_accuracy(lm, test, s),
        "curve": [
            {
                "step": m.step,
                "all_wrong": m.all_wrong_fraction,
                "all_wrong_after_repair": m.all_wrong_fraction_after_repair,
                "zero_advantage": m.zero_advantage_fraction,
                "accuracy": m.accuracy,
                "groups_repaired": m.groups_repaired,
                "completions_replaced": m.completions_replaced,
                "inpaint_attempts": m.inpaint_attempts,
                "inpaint_successes": m.inpaint_successes,
                "prompts_resampled": m.prompts_resampled,
                "groups_resampled": m.groups_resampled,
                "groups_unfilled": m.groups_unfilled,
                "completions_generated_total": m.completions_generated_total,
                "seconds": m.seconds.model_dump(),
            }
            for m in steps
        ],
    }
    print(
        f"  {arm} seed {job['seed']}: all-wrong {run['all_wrong']:.3f}, zero-adv "
        f"{run['zero_advantage']:.3f}, held-out {run['heldout_accuracy']:.3f} ({rl_seconds:.0f} s RL, "
        f"{len(steps)} steps, {run['completions_generated']} completions)",
        flush=True,
    )
    return run


def summarise(
    runs: list[dict[str, Any]],
    seeds: list[int],
    metrics: tuple[str, ...] = METRICS,
    arms: tuple[str, ...] = ("grpo", "igpo"),
    pairs: tuple[tuple[str, str], ...] = (("igpo", "grpo"),),
) -> dict[str, Any]:
    """Per metric: each arm's mean with its 95% interval over seeds, and ``a_minus_b`` paired over seeds."""
    by = {(r.get("arm", r["algorithm"]), r["seed"]): r for r in runs}
    out: dict[str, Any] = {}
    for metric in metrics:
        values = {arm: [by[arm, s][metric] for s in seeds] for arm in arms}
        out[metric] = {arm: common.interval(v) for arm, v in values.items()}
        for a, b in pairs:
            out[metric][f"{a}_minus_{b}"] = common.paired_difference(values[a], values[b])
    return out


def fmt_difference(d: dict[str, Any], digits: int = 3) -> str:
    """``+0.012 [-0.010, +0.034] (p 0.25)``: a paired difference with its interval and paired t-test p-value."""
    text = f"{d['mean']:+.{digits}f}"
    if d["low"] is not None:
        text += f" [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"
    return text + (f" (p {d['p_value']:.3f})" if d.get("p_value") is not None else "")


def comparison_tables(
    stats: dict[str, Any], metrics: tuple[str, ...], arms: tuple[str, ...], pairs: tuple[tuple[str, str], ...]
) -> str:
    """One table of the arms' means and one of the paired differences."""
    means = [[LABELS[m], *[common.fmt_interval(stats[m][a], DIGITS.get(m, 3)) for a in arms]] for m in metrics]
    diffs = [
        [LABELS[m], *[fmt_difference(stats[m][f"{a}_minus_{b}"], DIGITS.get(m, 3)) for a, b in pairs]]
        for m in metrics
    ]
    return (
        common.markdown_table(["metric", *[NAMES[a] for a in arms]], means)
        + "\n\nPaired differences over seeds (mean [95% interval], paired t-test p):\n\n"
        + common.markdown_table(["metric", *[f"{NAMES[a]} - {NAMES[b]}" for a, b in pairs]], diffs)
    )


def window_curve(runs: list[dict[str, Any]], algorithm: str, window: int) -> list[dict[str, Any]]:
    """All-wrong fraction per window of steps, mean over seeds (Figure 1b in numbers)."""
    curves = [r["curve"] for r in runs if r["algorithm"] == algorithm]
    steps = len(curves[0])
    rows = []
    for lo in range(0, steps, window):
        values = [
            sum(c[i]["all_wrong"] for i in range(lo, min(lo + window, steps)))
            / len(range(lo, min(lo + window, steps)))
            for c in curves
        ]
        rows.append({"steps": f"{lo + 1}-{min(lo + window, steps)}", **common.interval(values)})
    return rows


def setup_line(s: dict[str, Any], record: dict[str, Any], sft_accuracy: float) -> str:
    rl, ro, first = s["rl"], s["rollout"], record["history"][-1]
    return (
        f"demo task with {s['task']['num_steps']}-step chains ({s['task']['num_train']} train / "
        f"{s['task']['num_test']} held-out questions); tiny dLLM ({s['model']['num_layers']} layers, d = "
        f"{s['model']['hidden_size']}) SFT'd for {first['sft_steps']} steps to a calibration all-wrong fraction of "
        f"{first['all_wrong_fraction']:.2f} (held-out greedy pass@1 {sft_accuracy:.3f}); RL with B = "
        f"{rl['batch_size']} prompts x G = {rl['group_size']}, L = {ro['gen_length']}, block {ro['block_length']}, "
        f"{ro['steps']} denoising steps, T = {ro['temperature']}, lr {rl['learning_rate']}, mu = {rl['mu']}, "
        f"beta = {rl['beta']}, correctness reward only"
    )


def _total(runs: list[dict[str, Any]], arm: str, key: str) -> int:
    return sum(c[key] for r in runs if r["arm"] == arm for c in r["curve"])


def budget_report(
    s: dict[str, Any], record: dict[str, Any], sft_accuracy: float, runs: list, stats: dict, info: dict, total: float
) -> str:
    """dynamic_sampling.md: GRPO vs IGPO vs dynamic sampling at an equal number of generated completions."""
    _, arms, pairs = MODES["budget"]
    budget, rl = s["budget"], s["rl"]
    return (
        f"# GRPO vs IGPO vs dynamic sampling at an equal sampling budget ({len(s['seeds'])} paired seeds)\n\n"
        f"Machine: {common.machine_line(info)}\n\nCommand: `{common.command_line()}`\n\n"
        f"Every run stops after the step at which it has generated {budget['max_generated_completions']} completions "
        "(rollouts + inpainting attempts + re-sampled rollouts). Mean with 95% t-interval over seeds; fractions are "
        "averaged over the steps each run made.\n\n"
        + comparison_tables(stats, BUDGET_METRICS, arms, pairs)
        + f"\n\nSetup: {setup_line(s, record, sft_accuracy)}. Dynamic sampling: {rl['oversample_factor']} fresh "
        f"prompts per zero-variance group per round, at most {rl['max_resample_rounds']} rounds; over all seeds it "
        f"drew {_total(runs, 'dynamic', 'prompts_resampled')} fresh prompts, replaced "
        f"{_total(runs, 'dynamic', 'groups_resampled')} flat groups and kept {_total(runs, 'dynamic', 'groups_unfilled')} "
        f"flat. IGPO inpainted {_total(runs, 'igpo', 'inpaint_attempts')} completions "
        f"({_total(runs, 'igpo', 'inpaint_successes')} correct), repairing {_total(runs, 'igpo', 'groups_repaired')} "
        f"groups. Seconds per step come from runs sharing the machine ({info['cores']} cores) "
        f"{s['workers']} at a time. "
        f"{total / 60:.1f} minutes in all.\n"
    )


def rollouts_report(
    s: dict[str, Any], record: dict[str, Any], sft_accuracy: float, runs: list, stats: dict, info: dict, total: float
) -> str:
    """fast_rollouts_rl.md: the same RL with exact and with fast rollouts."""
    _, arms, pairs = MODES["rollouts"]
    fast = ", ".join(f"{k} = {v}" for k, v in s["arm_rollouts"]["fast"].items())
    return (
        f"# RL with fast vs exact rollouts ({s['algorithm'].upper()}, {len(s['seeds'])} paired seeds)\n\n"
        f"Machine: {common.machine_line(info)}\n\nCommand: `{common.command_line()}`\n\n"
        f"Fast rollouts: {fast} (the inpainting rollouts too); exact: the plain sampler. {s['rl']['steps']} RL steps "
        "per run; held-out pass@1 uses the exact greedy sampler in both arms. Mean with 95% t-interval over seeds.\n\n"
        + comparison_tables(stats, ROLLOUT_METRICS, arms, pairs)
        + f"\n\nSetup: {setup_line(s, record, sft_accuracy)}. Seconds per step come from runs sharing the machine "
        f"({info['cores']} cores) {s['workers']} at a time. {total / 60:.1f} minutes in all.\n"
    )


def build_parser() -> argparse.ArgumentParser:
    """The script's arguments (also read by fast_sampler.py, which reuses this script's SFT checkpoint)."""
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="paired seeds (GRPO and IGPO per seed)")
    parser.add_argument(
        "--workers", type=int, default=1, help="RL runs at a time (processes, one thread each)"
    )
    parser.add_argument("--task-steps", type=int, default=2, help="difficulty: operations per demo problem")
    parser.add_argument(
        "--num-train", type=int, default=260, help="training questions (RL prompts and SFT pairs)"
    )
    parser.add_argument("--num-test", type=int, default=64, help="held-out questions")
    parser.add_argument("--layers", type=int, default=2, help="layers of the tiny model (d = 64)")
    parser.add_argument("--sft-stage", type=int, default=100, help="SFT steps between calibrations")
    parser.add_argument(
        "--sft-max-steps", type=int, default=2000, help="give up calibrating after this many SFT steps"
    )
    parser.add_argument(
        "--target-all-wrong",
        type=float,
        default=0.6,
        help="stop SFT once at most this fraction of calibration groups is all-wrong",
    )
    parser.add_argument("--gen-length", type=int, default=32, help="completion length L")
    parser.add_argument("--block-length", type=int, default=16, help="block length")
    parser.add_argument("--temperature", type=float, default=1.0, help="rollout temperature")
    parser.add_argument("--rl-steps", type=int, default=32, help="RL steps per run")
    parser.add_argument("--batch-size", type=int, default=4, help="prompts per RL step B")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt G")
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="RL learning rate (AdamW)")
    parser.add_argument("--window", type=int, default=8, help="steps per window of the all-wrong curve table")
    parser.add_argument(
        "--cache", type=Path, default=common.CACHE_DIR, help="where the SFT checkpoint is cached"
    )
    parser.add_argument(
        "--mode",
        choices=tuple(MODES),
        default="effect",
        help="effect: GRPO vs IGPO (igpo_effect); budget: GRPO vs IGPO vs dynamic sampling at equal generated "
        "completions (dynamic_sampling); rollouts: exact vs fast rollouts (fast_rollouts_rl)",
    )
    parser.add_argument(
        "--budget", type=int, default=None, help="budget mode: completions per run (default B x G x --rl-steps)"
    )
    parser.add_argument("--oversample-factor", type=int, default=2, help="dynamic sampling: prompts per flat group")
    parser.add_argument("--max-resample-rounds", type=int, default=3, help="dynamic sampling: rounds per step")
    parser.add_argument(
        "--rollout-cache", choices=("none", "prefix", "dual"), default=None, help="fast rollouts: KV cache"
    )
    parser.add_argument(
        "--rollout-threshold", type=float, default=None, help="fast rollouts: confidence threshold"
    )
    parser.add_argument(
        "--rollout-algorithm", choices=("grpo", "igpo", "dynamic"), default="igpo", help="rollouts mode: algorithm"
    )
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    common.set_threads(args.threads)

    device = common.resolve_device(args.device)
    s = settings(args)
    info = common.machine_info(device)
    print(common.machine_line(info), flush=True)
    began = time.perf_counter()
    model_dir, record = prepare_checkpoint(s, device, args.cache)
    from igpo.models import load_model_dir

    _, test = task_tables(s)
    sft_accuracy = heldout_accuracy(load_model_dir(model_dir, device), test, s)
    print(
        f"SFT checkpoint held-out pass@1 {sft_accuracy:.3f}; calibration all-wrong "
        f"{record['history'][-1]['all_wrong_fraction']:.3f}",
        flush=True,
    )

    name, arms, pairs = MODES[args.mode]
    jobs = [
        {
            "arm": arm,
            "algorithm": s.get("algorithm", arm),
            "seed": seed,
            "settings": s,
            "model_dir": str(model_dir),
            "device": device,
            "threads": args.threads,
        }
        for seed in s["seeds"]
        for arm in arms
    ]
    if args.workers > 1:
        import multiprocessing

        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = list(pool.map(run_job, jobs))
    else:
        runs = [run_job(job) for job in jobs]
    info["load_average_1m_end"] = common.os.getloadavg()[0]
    total = time.perf_counter() - began
    if args.mode != "effect":
        report = budget_report if args.mode == "budget" else rollouts_report
        metrics = BUDGET_METRICS if args.mode == "budget" else ROLLOUT_METRICS
        stats = summarise(runs, s["seeds"], metrics, arms, pairs)
        markdown = report(s, record, sft_accuracy, runs, stats, info, total)
        payload = {
            "benchmark": name,
            "machine": info,
            "command": common.command_line(),
            "quick": args.quick,
            "settings": s,
            "sft_checkpoint": record | {"heldout_accuracy": sft_accuracy},
            "runs": runs,
            "summary": stats,
            "seconds": total,
        }
        common.write_results(args.out, name, payload, markdown)
        print(markdown)
        return payload
    stats = summarise(runs, s["seeds"])

    rows = []
    for metric in METRICS:
        st = stats[metric]
        d = st["igpo_minus_grpo"]
        rel = f"{d['relative']:+.0%}" if d.get("relative") is not None else "n/a"
        p = f"{d['p_value']:.3f}" if d.get("p_value") is not None else "n/a"
        rows.append(
            [
                LABELS[metric],
                common.fmt_interval(st["grpo"]),
                common.fmt_interval(st["igpo"]),
                f"{d['mean']:+.3f}"
                + (f" [{d['low']:+.3f}, {d['high']:+.3f}]" if d["low"] is not None else ""),
                rel,
                p,
            ]
        )
    table = common.markdown_table(
        ["metric", "GRPO", "IGPO", "IGPO - GRPO (paired)", "relative", "p (paired t)"], rows
    )
    curve_rows = []
    grpo_curve, igpo_curve = window_curve(runs, "grpo", args.window), window_curve(runs, "igpo", args.window)
    for g, i in zip(grpo_curve, igpo_curve):
        curve_rows.append([g["steps"], common.fmt_interval(g), common.fmt_interval(i)])
    curve_table = common.markdown_table(["RL steps", "GRPO all-wrong", "IGPO all-wrong"], curve_rows)
    rl, ro, first = s["rl"], s["rollout"], record["history"][-1]
    repaired = sum(c["groups_repaired"] for r in runs if r["algorithm"] == "igpo" for c in r["curve"])
    attempts = sum(c["inpaint_attempts"] for r in runs if r["algorithm"] == "igpo" for c in r["curve"])
    successes = sum(c["inpaint_successes"] for r in runs if r["algorithm"] == "igpo" for c in r["curve"])
    markdown = (
        f"# The IGPO effect (GRPO vs IGPO, {len(s['seeds'])} paired seeds)\n\n"
        f"Machine: {common.machine_line(info)}\n\nCommand: `{common.command_line()}`\n\n"
        f"Mean with 95% t-interval over seeds; the difference is IGPO - GRPO per seed.\n\n{table}\n\n"
        f"All-wrong fraction per window of RL steps (mean over seeds, 95% interval):\n\n{curve_table}\n\n"
        f"Setup: demo task with {s['task']['num_steps']}-step chains ({s['task']['num_train']} train / "
        f"{s['task']['num_test']} held-out questions); tiny dLLM ({s['model']['num_layers']} layers, d = "
        f"{s['model']['hidden_size']}) SFT'd for {first['sft_steps']} steps to a calibration all-wrong fraction of "
        f"{first['all_wrong_fraction']:.2f} (sampled accuracy {first['sampled_accuracy']:.2f}; held-out greedy "
        f"pass@1 {sft_accuracy:.3f}); then {rl['steps']} RL steps of B = {rl['batch_size']} prompts x G = "
        f"{rl['group_size']}, L = {ro['gen_length']}, block {ro['block_length']}, {ro['steps']} denoising steps, "
        f"T = {ro['temperature']}, lr {rl['learning_rate']}, mu = {rl['mu']}, beta = {rl['beta']}, correctness "
        f"reward only. IGPO inpainted {attempts} completions over all seeds, {successes} of them correct, "
        f"repairing {repaired} groups. {total / 60:.1f} minutes in all.\n"
    )
    payload = {
        "benchmark": "igpo_effect",
        "machine": info,
        "command": common.command_line(),
        "quick": args.quick,
        "settings": s,
        "sft_checkpoint": record | {"heldout_accuracy": sft_accuracy},
        "runs": runs,
        "summary": stats,
        "curves": {"grpo": grpo_curve, "igpo": igpo_curve},
        "seconds": total,
    }
    common.write_results(args.out, "igpo_effect", payload, markdown)
    print(markdown)
    return payload


if __name__ == "__main__":
    main()
