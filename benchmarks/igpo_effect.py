"""The IGPO effect with statistics (the paper's Figure 1b and Table 1 in miniature) on the demo task's hard
split: the tiny dLLM is SFT'd on easy chains only, then GRPO and IGPO train from that one checkpoint on a mix
of easy and hard prompts with the same number of generated completions, over paired seeds. More comparisons
from the same checkpoint and seeds: ``--mode ablation`` (IGPO with full inpainting eta = 1 and with the entropy
filter off, tau = 1), ``--mode budget`` (GRPO vs IGPO vs dynamic sampling) and ``--mode rollouts`` (RL with
exact vs fast rollouts).

    python benchmarks/igpo_effect.py --workers 2          # the main result: 8 paired seeds (~25 min on 2 CPU cores)
    python benchmarks/igpo_effect.py --mode ablation --workers 2 --seeds 4   # -> igpo_ablations.{json,md,png}
    python benchmarks/igpo_effect.py --quick              # smoke test (statistics on meaningless numbers)
    python benchmarks/igpo_effect.py --mode budget --workers 2 --seeds 6     # -> dynamic_sampling.{json,md}
    python benchmarks/igpo_effect.py --mode rollouts --workers 2 --seeds 6   # -> fast_rollouts_rl.{json,md}

1. Task (``igpo.data.demo_task``, hard split): easy chains have ``--easy-steps`` operations, hard ones
   ``--hard-steps``. SFT sees the easy training rows only; RL prompts are every training row (half easy, half
   hard by default); held-out pass@1 (greedy) is reported per difficulty.
2. Starting checkpoint: ``--sft-steps`` of SFT on the easy rows, with a calibration every ``--sft-stage``
   steps: the all-wrong fraction of G samples at the rollout temperature on hard and on easy training
   prompts (where RL samples). Cached under ``benchmarks/results/tmp/`` (git-ignored), keyed by every setting
   that shapes it, and reused by later runs.
3. Every arm of a seed starts from that checkpoint with the same config except the arm's own fields, and
   runs until the step at which it has generated ``--budget`` completions (rollouts + IGPO's inpainting
   attempts; default B x G x ``--rl-steps``, what GRPO spends in ``--rl-steps`` steps), so IGPO makes fewer
   steps than GRPO: its inpainting is paid for in completions, not given for free.
4. Per run: held-out pass@1 on hard and on easy questions; the all-wrong fraction of the model's own G
   samples on hard prompts, both in the training rollouts (per step: the curve) and on the hard held-out
   questions sampled afresh at the end (against the SFT checkpoint's value: the relative fall); hard/easy
   held-out pass@1 every ``--eval-every`` x B x G completions (the curve). Per arm: mean with a 95% t-interval
   over seeds; per pair of arms: the paired difference with its 95% interval and the paired t-test p-value.
   A PNG of the curves lies next to the JSON and markdown.

``--mode budget``: GRPO, IGPO and dynamic sampling at the same budget; ``--mode rollouts``: the same algorithm
(``--rollout-algorithm``, IGPO by default) for ``--rl-steps`` steps with the exact sampler and with the fast
one (``--rollout-cache``, ``--rollout-threshold``); held-out pass@1 is measured with the exact greedy sampler in
both arms. In the other modes those two flags, when given, apply to every arm's rollouts.

Choices that differ from the paper's setting, on purpose: the correctness reward alone (format weight 0),
so "zero advantage" means "every completion equally right"; mu = 1 and beta = 0 (what fits a CPU); full
fine-tuning of a 2-layer model instead of LoRA on an 8B one; the log-prob estimator is the paper's fully
masked one (igpo.logprobs), which on a tiny model is known to be noisy.
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

# The probes behind the defaults (one seed each, B = 8 x G = 8, T = 1, equal generated completions), kept so a
# result that misses the goal says what else was tried. Hard / easy = held-out greedy pass@1 after RL.
TRIED = (
    "(1) easy = 1-2 operations, hard = 3: the SFT model writes garbage on the longer prompts, 0 of 848 inpainting "
    "attempts correct, hard 0.000 for both arms; (2) easy = 3 operations that never wrap around mod 10, hard = at "
    "least one wrap (these defaults): SFT 2000 steps, RL lr 1e-4 (hard 0 / 0, inpainting 60 of 896 correct) and "
    "5e-4 (0 / 0, 136 of 1936); SFT 4000 steps, RL lr 5e-4 (0 / 0, 68 of 1808) and 1e-3 (0 / 0, easy accuracy "
    "destroyed: GRPO 0.000, IGPO 0.156); full inpainting (eta = 1) still only 6% correct (106 of 1736). Why: the "
    "model writes the boxed answer from its own (clamped, never-wrapping) arithmetic instead of copying the revealed "
    "lines, so even a fully revealed trace rarely gives a correct completion, and about 0.4 groups per step are "
    "repaired, too few to move a fact the SFT model has never seen. Not tried: hard questions with exactly one "
    "wrap, far longer RL runs, larger B, revealing the answer span (a departure from the paper)."
)

METRICS = (
    "heldout_hard",
    "heldout_easy",
    "sampled_all_wrong_hard",
    "all_wrong_hard",
    "all_wrong_hard_last",
    "all_wrong",
    "zero_advantage",
    "steps_run",
    "completions_generated",
)
LABELS = {
    "heldout_hard": "hard held-out pass@1 (greedy)",
    "heldout_easy": "easy held-out pass@1 (greedy)",
    "heldout_accuracy": "held-out pass@1 (greedy, all)",
    "sampled_all_wrong_hard": "all-wrong fraction, hard held-out, end (G fresh samples)",
    "all_wrong_hard": "all-wrong fraction, hard rollouts (all steps)",
    "all_wrong_hard_last": "all-wrong fraction, hard rollouts (last window)",
    "sampled_all_wrong_hard_fall": "relative fall of that fraction from the SFT checkpoint",
    "all_wrong": "all-wrong fraction (all steps)",
    "all_wrong_second_half": "all-wrong fraction (2nd half)",
    "zero_advantage": "zero-advantage fraction after repair",
    "all_wrong_after_repair": "all-wrong fraction after repair",
    "seconds_per_step": "seconds per RL step",
    "rollout_seconds_per_step": "rollout seconds per RL step",
    "steps_run": "RL steps run",
    "completions_generated": "completions generated",
}
DIGITS = {"seconds_per_step": 2, "rollout_seconds_per_step": 2, "steps_run": 1, "completions_generated": 0}
ABLATION_METRICS = ("heldout_hard", "heldout_easy", "sampled_all_wrong_hard", "all_wrong_hard", "zero_advantage")
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
    "ablation": ("igpo_ablations", ("igpo", "full", "tau1"), (("igpo", "full"), ("igpo", "tau1"))),
    "budget": (
        "dynamic_sampling",
        ("grpo", "igpo", "dynamic"),
        (("igpo", "grpo"), ("dynamic", "grpo"), ("dynamic", "igpo")),
    ),
    "rollouts": ("fast_rollouts_rl", ("exact", "fast"), (("fast", "exact"),)),
}
NAMES = {
    "grpo": "GRPO",
    "igpo": "IGPO",
    "dynamic": "dynamic",
    "exact": "exact",
    "fast": "fast",
    "full": "IGPO eta = 1",
    "tau1": "IGPO tau = 1",
}
# Ablation arms: IGPO with one field changed (the paper's Table 3 / Figure 4 in miniature).
ABLATION_RL = {"igpo": {}, "full": {"eta_low": 1.0, "eta_high": 1.0}, "tau1": {"tau": 1.0}}


def settings(args: Any) -> dict[str, Any]:
    """Every setting of the experiment as plain data (it keys the checkpoint cache and goes in the JSON)."""
    q = args.quick
    length = 24 if q else args.gen_length
    block = 8 if q else args.block_length
    num_test = 8 if q else args.num_test
    return {
        "task": {
            "num_train": 40 if q else args.num_train,
            "num_test": num_test,
            "split": args.split,
            "num_steps": 2 if q else (args.task_steps if args.split == "wraps" else max(args.hard_steps)),
            "hard_min_wraps": args.hard_min_wraps,
            "easy_steps": None if args.split == "wraps" else list(args.easy_steps),
            "hard_steps": list(args.hard_steps),
            "num_train_hard": round((40 if q else args.num_train) * args.hard_fraction),
            "num_test_hard": num_test // 2,
            "sft_difficulties": ["easy"],
            "rl_difficulties": ["easy", "hard"],
            "operands": [1, 2, 3],
            "operations": ["+", "-"],
            "reasoning": "concise",
            "seed": 0,
        },
        "model": {
            "architecture": "llada",
            "num_layers": 1 if q else args.layers,
            "hidden_size": 32 if q else args.hidden_size,
            "num_heads": 4 if q else args.hidden_size // 16,
            "head_dim": 8 if q else 16,
            "intermediate_size": 64 if q else args.intermediate_size,
            "max_position_embeddings": 256,
            "seed": 0,
        },
        "sft": {
            "stage_steps": 2 if q else min(args.sft_stage, args.sft_steps),
            "max_steps": 4 if q else args.sft_steps,
            "batch_size": 4 if q else 16,
            "learning_rate": args.sft_learning_rate,
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
        "eval_every_steps": 1 if q else args.eval_every,
        "seeds": list(range(2 if q else args.seeds)),
    } | mode_settings(args, q)


def mode_settings(args: Any, quick: bool) -> dict[str, Any]:
    """What the chosen mode adds: the arms' changes and the budget. Not part of the SFT cache key."""
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
    if args.mode == "ablation":
        extra["algorithm"] = "igpo"
        extra["arm_rl"] = ABLATION_RL
    steps = 2 if quick else args.rl_steps
    per_step = (2 if quick else args.batch_size) * (2 if quick else args.group_size)
    extra["budget"] = {"max_generated_completions": args.budget or per_step * steps, "max_steps": 4 * steps}
    return extra


def task_tables(s: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, test) rows of the demo task; every row's metadata has ``num_steps`` and ``difficulty``."""
    from igpo.data.config import DemoTaskConfig
    from igpo.data.demo_task import generate_demo_task

    train, test = generate_demo_task(DemoTaskConfig(**s["task"]))
    return train.to_pylist(), test.to_pylist()


def difficulty(row: dict[str, Any]) -> str:
    from igpo.data.demo_task import difficulty_of

    return difficulty_of(row)


def of_difficulty(rows: list[dict[str, Any]], *wanted: str) -> list[dict[str, Any]]:
    return [r for r in rows if difficulty(r) in wanted]


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
    with torch.no_grad():
        for lo in range(0, ids.shape[0], 128):
            out = generate(lm, ids[lo : lo + 128], sampler, generator, prompt_mask=mask[lo : lo + 128])
            texts += decode_completions(lm.tokenizer, out, lm.tokens.stop_ids)
    correct = [is_correct(t, str(rows[i // group_size]["answer"])) for i, t in enumerate(texts)]
    return torch.tensor(correct, dtype=torch.float32).view(len(rows), group_size)


def all_wrong_fraction(correct: Any) -> float:
    """Fraction of rows of a [N, G] correctness tensor with no correct sample."""
    return float((correct.sum(1) == 0).float().mean())


def prepare_checkpoint(s: dict[str, Any], device: str, cache: Path) -> tuple[Path, dict[str, Any]]:
    """The SFT starting checkpoint (cached): SFT on the easy training rows, calibrated every stage on hard
    and easy training prompts. Returns (model directory, record with the calibration history)."""
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
    sft_rows = of_difficulty(train, *s["task"]["sft_difficulties"])
    tokenizer = build_tiny_tokenizer()
    lm = wrap_model(build_tiny_model(tokenizer, TinyModelConfig(**s["model"])).to(device), tokenizer)
    sampler = SamplerConfig(**s["rollout"])
    sft, G = s["sft"], s["rl"]["group_size"]
    calibration = {d: of_difficulty(train, d)[: sft["calibration_prompts"]] for d in ("hard", "easy")}
    history, began = [], time.perf_counter()
    for steps in [*range(sft["stage_steps"], sft["max_steps"], sft["stage_steps"]), sft["max_steps"]]:
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
            [r["question"] for r in sft_rows],
            [r["reasoning"] for r in sft_rows],
            config,
            progress=False,
            checkpoint_dir=root / "stages",
        )
        hard = sample_correctness(lm, calibration["hard"], G, sampler, seed=12345)
        easy = sample_correctness(lm, calibration["easy"], G, sampler, seed=12345)
        entry = {
            "sft_steps": steps,
            "loss": result.losses[-1] if result.losses else None,
            "sampled_accuracy": float(hard.mean()),  # hard prompts: where the all-wrong groups are
            "all_wrong_fraction": all_wrong_fraction(hard),
            "easy_sampled_accuracy": float(easy.mean()),
            "easy_all_wrong_fraction": all_wrong_fraction(easy),
            "seconds": time.perf_counter() - began,
        }
        history.append(entry)
        print(
            f"  SFT {steps} steps: loss {entry['loss']}, hard all-wrong {entry['all_wrong_fraction']:.3f} "
            f"(sampled accuracy {entry['sampled_accuracy']:.3f}), easy all-wrong "
            f"{entry['easy_all_wrong_fraction']:.3f} ({entry['seconds']:.0f} s)",
            flush=True,
        )
    save_model(lm, root / "model", ModelConfig(name_or_path="."))
    shutil.rmtree(root / "stages", ignore_errors=True)
    record = {"key": key, "settings": key_data, "history": history}
    record_path.write_text(json.dumps(record, indent=2))
    return root / "model", record


def heldout_accuracy(lm: Any, test: list[dict[str, Any]], s: dict[str, Any]) -> float:
    """Greedy pass@1 of ``test`` (the shared verifier, through igpo.evaluate)."""
    import pandas as pd

    from igpo.evaluate import BenchmarkConfig, EvalConfig, evaluate_model
    from igpo.sampler import SamplerConfig

    if not test:
        return float("nan")
    sampler = SamplerConfig(**(s["rollout"] | {"temperature": 0.0}))
    config = EvalConfig(
        benchmarks=(BenchmarkConfig(name="demo", samples=1, sampler=sampler),), batch_size=128
    )
    scores, _ = evaluate_model(lm, {"demo": pd.DataFrame(test)}, config, "bench", progress=False)
    return float(scores["score"].iloc[0])


def evaluate_checkpoint(lm: Any, test: list[dict[str, Any]], s: dict[str, Any]) -> dict[str, float]:
    """Held-out pass@1 overall and per difficulty, and the all-wrong fraction of G fresh samples (rollout
    temperature, fixed seed) on the hard held-out questions."""
    from igpo.sampler import SamplerConfig

    hard, easy = of_difficulty(test, "hard"), of_difficulty(test, "easy")
    correct = sample_correctness(lm, hard, s["rl"]["group_size"], SamplerConfig(**s["rollout"]), seed=4321)
    return {
        "heldout_accuracy": heldout_accuracy(lm, test, s),
        "heldout_hard": heldout_accuracy(lm, hard, s),
        "heldout_easy": heldout_accuracy(lm, easy, s),
        "sampled_all_wrong_hard": all_wrong_fraction(correct),
    }


class HardGroupTally:
    """Wraps the correctness function to read, per step, the all-wrong fraction of the *rollout* groups on
    hard prompts: the trainer scores the step's rollouts first (then inpainting attempts or re-sampled
    rollouts), so the first call after each ``on_step`` is the policy's own samples, before any repair."""

    def __init__(self, group_size: int) -> None:
        from igpo.rl.rewards import correctness_reward

        self.G, self.fn, self.first = group_size, correctness_reward, None

    def __call__(self, completions: Any, **columns: Any) -> list[float]:
        scores = self.fn(completions, **columns)
        if self.first is None:
            labels = [difficulty({"metadata": m}) for m in columns["metadata"]]
            self.first = (scores, labels)
        return scores

    def take(self) -> dict[str, Any]:
        """This step's (hard groups, hard all-wrong groups), and resets for the next step."""
        scores, labels = self.first or ([], [])
        self.first = None
        groups = [(labels[i], scores[i : i + self.G]) for i in range(0, len(scores), self.G)]
        hard = [sum(g) == 0 for label, g in groups if label == "hard"]
        return {"hard_groups": len(hard), "hard_all_wrong_groups": sum(hard)}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One RL run (one arm, one seed) from the checkpoint, in this process or a worker."""
    common.set_threads(job["threads"])
    from igpo.models import load_model_dir
    from igpo.rl.config import RLConfig
    from igpo.rl.trainer import train_rl
    from igpo.sampler import SamplerConfig

    s = job["settings"]
    arm = job.get("arm", job["algorithm"])
    train, test = task_tables(s)
    train = of_difficulty(train, *s["task"]["rl_difficulties"])
    hard_test, easy_test = of_difficulty(test, "hard"), of_difficulty(test, "easy")
    lm = load_model_dir(job["model_dir"], job["device"])
    rl = s["rl"] | s.get("arm_rl", {}).get(arm, {})
    if "budget" in s:  # equal budgets: the budget stops each run, the step count only caps it
        rl = rl | {"steps": s["budget"]["max_steps"], "max_generated_completions": s["budget"]["max_generated_completions"]}
    rollout = SamplerConfig(**(s["rollout"] | s.get("arm_rollouts", {}).get(arm, {})))
    config = RLConfig(algorithm=job["algorithm"], seed=job["seed"], rollout=rollout, **rl)
    tally = HardGroupTally(config.group_size)
    window = s["eval_every_steps"] * s["rl"]["batch_size"] * s["rl"]["group_size"]  # completions per curve point
    hard_steps: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    timing = {"eval": 0.0}

    def on_step(step: int, m: Any) -> None:
        before = hard_steps[-1]["completions_after"] if hard_steps else 0
        hard_steps.append(tally.take() | {"completions_before": before, "completions_after": m.completions_generated_total})
        while m.completions_generated_total >= window * (len(evals) + 1):  # a curve point per `window` completions
            point = {"completions": window * (len(evals) + 1), "step": step}
            if evals and evals[-1]["step"] == step:  # two points crossed in one step: the same model
                evals.append(evals[-1] | point)
                continue
            began = time.perf_counter()
            point |= {"heldout_hard": heldout_accuracy(lm, hard_test, s), "heldout_easy": heldout_accuracy(lm, easy_test, s)}
            timing["eval"] += time.perf_counter() - began
            evals.append(point)

    began = time.perf_counter()
    result = train_rl(lm, train, config, correctness_fn=tally, on_step=on_step, progress=False)
    rl_seconds = time.perf_counter() - began - timing["eval"]
    steps = result.metrics
    half = len(steps) // 2
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
    ratio = lambda rows: (
        sum(r["hard_all_wrong_groups"] for r in rows) / groups
        if (groups := sum(r["hard_groups"] for r in rows))
        else float("nan")
    )
    total = steps[-1].completions_generated_total
    last = [r for r in hard_steps if r["completions_before"] >= total - window] or hard_steps[-1:]
    run = {
        "arm": arm,
        "algorithm": job["algorithm"],
        "seed": job["seed"],
        "rl_seconds": rl_seconds,
        "eval_seconds": timing["eval"],
        "steps_run": len(steps),
        "completions_generated": total,
        "seconds_per_step": rl_seconds / len(steps),
        "rollout_seconds_per_step": mean([m.seconds.rollout for m in steps]),
        "all_wrong": mean([m.all_wrong_fraction for m in steps]),
        "all_wrong_second_half": mean([m.all_wrong_fraction for m in steps[half:]]),
        "all_wrong_after_repair": mean([m.all_wrong_fraction_after_repair for m in steps]),
        "zero_advantage": mean([m.zero_advantage_fraction for m in steps]),
        "all_wrong_hard": ratio(hard_steps),
        "all_wrong_hard_last": ratio(last),
        **evaluate_checkpoint(lm, test, s),
        "evals": evals,
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
            | hard
            for m, hard in zip(steps, hard_steps)
        ],
    }
    print(
        f"  {arm} seed {job['seed']}: hard pass@1 {run['heldout_hard']:.3f}, easy {run['heldout_easy']:.3f}, "
        f"hard all-wrong {run['all_wrong_hard']:.3f} (last window {run['all_wrong_hard_last']:.3f}, held-out end "
        f"{run['sampled_all_wrong_hard']:.3f}), zero-adv {run['zero_advantage']:.3f} ({rl_seconds:.0f} s RL + "
        f"{timing['eval']:.0f} s eval, {len(steps)} steps, {total} completions)",
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


def curves(runs: list[dict[str, Any]], arm: str, window: int, start: dict[str, float]) -> list[dict[str, Any]]:
    """Per window of ``window`` generated completions, over seeds (mean and 95% interval): the all-wrong
    fraction of the hard rollout groups of the steps that began in the window, and the hard/easy held-out
    pass@1 at the window's end. Point 0 is the SFT checkpoint (held-out only)."""
    mine = [r for r in runs if r.get("arm", r["algorithm"]) == arm]
    budget = min(r["completions_generated"] for r in mine)
    points = [{"completions": 0, "heldout_hard": common.interval([start["heldout_hard"]] * len(mine)),
               "heldout_easy": common.interval([start["heldout_easy"]] * len(mine)), "all_wrong_hard": None}]
    for j in range(max(1, -(-budget // window))):
        lo, hi = j * window, (j + 1) * window
        rates = []
        for r in mine:
            rows = [c for c in r["curve"] if lo <= c["completions_before"] < hi]
            groups = sum(c["hard_groups"] for c in rows)
            if groups:
                rates.append(sum(c["hard_all_wrong_groups"] for c in rows) / groups)
        point: dict[str, Any] = {"completions": hi, "all_wrong_hard": common.interval(rates) if rates else None}
        for key in ("heldout_hard", "heldout_easy"):
            values = [e[key] for r in mine for e in r["evals"] if e["completions"] == hi]
            point[key] = common.interval(values) if len(values) == len(mine) else None
        points.append(point)
    return points


def plot_curves(path: Path, all_curves: dict[str, list[dict[str, Any]]], title: str) -> Path:
    """A PNG: hard-rollout all-wrong fraction and hard held-out pass@1 against generated completions, one line
    per arm with a shaded 95% interval over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (
        ("all_wrong_hard", "all-wrong fraction, own samples on hard prompts"),
        ("heldout_hard", "hard held-out pass@1 (greedy)"),
        ("heldout_easy", "easy held-out pass@1 (greedy)"),
    )
    for ax, (key, label) in zip(axes, panels):
        for arm, points in all_curves.items():
            xs = [p["completions"] for p in points if p[key] is not None]
            stats = [p[key] for p in points if p[key] is not None]
            mean = [st["mean"] for st in stats]
            ax.plot(xs, mean, marker="o", markersize=3, label=NAMES[arm])
            if all(st["low"] is not None for st in stats):
                ax.fill_between(xs, [st["low"] for st in stats], [st["high"] for st in stats], alpha=0.2)
        ax.set_xlabel("completions generated (rollouts + inpainting attempts)")
        ax.set_title(label, fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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


def setup_line(s: dict[str, Any], record: dict[str, Any], sft_accuracy: float) -> str:
    rl, ro, first = s["rl"], s["rollout"], record["history"][-1]
    task = s["task"]
    kind = (
        f"{task['num_steps']}-operation chains, easy ones never wrapping around mod 10, hard ones wrapping at least "
        f"{task['hard_min_wraps']} time(s)"
        if task["split"] == "wraps"
        else f"easy chains of {task['easy_steps']} and hard chains of {task['hard_steps']} operations"
    )
    return (
        f"demo task, {kind} "
        f"({task['num_train']} train questions, {task['num_train_hard']} hard; {task['num_test']} held-out, "
        f"{task['num_test_hard']} hard); tiny dLLM ({s['model']['num_layers']} layers, d = "
        f"{s['model']['hidden_size']}) SFT'd on the easy rows for {first['sft_steps']} steps (lr "
        f"{s['sft']['learning_rate']}), after which {first['all_wrong_fraction']:.2f} of its groups on hard training "
        f"prompts were all wrong (held-out greedy pass@1 {sft_accuracy:.3f}); RL with B = "
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


def curve_table(all_curves: dict[str, list[dict[str, Any]]]) -> str:
    """The PNG's numbers: per window of completions, each arm's hard all-wrong and hard pass@1."""
    arms = list(all_curves)
    headers = ["completions", *[f"{NAMES[a]} hard all-wrong" for a in arms], *[f"{NAMES[a]} hard pass@1" for a in arms]]
    rows = []
    for i, point in enumerate(all_curves[arms[0]]):
        row = [point["completions"]]
        for key in ("all_wrong_hard", "heldout_hard"):
            for a in arms:
                p = all_curves[a][i] if i < len(all_curves[a]) else {}
                row.append(common.fmt_interval(p[key]) if p.get(key) else "-")
        rows.append(row)
    return common.markdown_table(headers, rows)


def goal_lines(stats: dict[str, Any], sft: dict[str, Any], record: dict[str, Any]) -> tuple[bool, list[str]]:
    """The issue's four checks, each stated with its numbers; True when all hold."""
    hard = stats["heldout_hard"]["igpo_minus_grpo"]
    easy = stats["heldout_easy"]
    fall = stats["sampled_all_wrong_hard_fall"]["igpo"]
    sft_all_wrong = record["history"][-1]["all_wrong_fraction"]
    checks = [
        (sft_all_wrong >= 0.8, f"SFT checkpoint's groups on hard training prompts all wrong >= 80%: {sft_all_wrong:.2f}"),
        (
            hard["low"] is not None and hard["low"] > 0,
            f"hard held-out pass@1, IGPO - GRPO, 95% interval excludes zero: {fmt_difference(hard)}",
        ),
        (
            fall["mean"] >= 0.5,
            (
                f"IGPO's all-wrong fraction on hard held-out prompts falls >= 50% relative to the SFT checkpoint "
                f"({sft['sampled_all_wrong_hard']:.2f}): {common.fmt_interval(fall)} (GRPO: "
                f"{common.fmt_interval(stats['sampled_all_wrong_hard_fall']['grpo'])})"
            ),
        ),
        (
            easy["igpo_minus_grpo"]["high"] is None or easy["igpo_minus_grpo"]["high"] >= 0,
            (
                f"easy held-out pass@1 not worse under IGPO than under GRPO: {fmt_difference(easy['igpo_minus_grpo'])} "
                f"(SFT {sft['heldout_easy']:.3f}, IGPO {common.fmt_interval(easy['igpo'])})"
            ),
        ),
    ]
    return all(ok for ok, _ in checks), [f"- [{'x' if ok else ' '}] {text}" for ok, text in checks]


def build_parser() -> argparse.ArgumentParser:
    """The script's arguments (also read by fast_sampler.py, which reuses this script's SFT checkpoint)."""
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="paired seeds (every arm per seed)")
    parser.add_argument(
        "--workers", type=int, default=1, help="RL runs at a time (processes, one thread each)"
    )
    parser.add_argument(
        "--split",
        choices=("wraps", "steps"),
        default="wraps",
        help="wraps: all chains --task-steps long, hard ones wrap around mod 10 (easy ones never); steps: hard chains "
        "are longer",
    )
    parser.add_argument("--task-steps", type=int, default=3, help="split=wraps: operations per question")
    parser.add_argument("--hard-min-wraps", type=int, default=1, help="split=wraps: wrap-arounds of a hard question")
    parser.add_argument("--easy-steps", type=int, nargs="+", default=[1, 2], help="split=steps: operations of easy ones")
    parser.add_argument("--hard-steps", type=int, nargs="+", default=[3], help="split=steps: operations of hard ones")
    parser.add_argument("--hard-fraction", type=float, default=0.5, help="share of hard rows among RL prompts")
    parser.add_argument(
        "--num-train", type=int, default=600, help="training questions (easy ones are the SFT pairs; all are RL prompts)"
    )
    parser.add_argument("--num-test", type=int, default=128, help="held-out questions (half easy, half hard)")
    parser.add_argument("--layers", type=int, default=2, help="layers of the tiny model")
    parser.add_argument("--hidden-size", type=int, default=96, help="width of the tiny model (heads of 16)")
    parser.add_argument("--intermediate-size", type=int, default=256, help="MLP width of the tiny model")
    parser.add_argument("--sft-steps", type=int, default=4000, help="SFT steps on the easy rows")
    parser.add_argument("--sft-stage", type=int, default=2000, help="SFT steps between calibrations")
    parser.add_argument("--sft-learning-rate", type=float, default=1e-3, help="SFT learning rate")
    parser.add_argument("--gen-length", type=int, default=32, help="completion length L")
    parser.add_argument("--block-length", type=int, default=16, help="block length")
    parser.add_argument("--temperature", type=float, default=1.0, help="rollout temperature")
    parser.add_argument("--rl-steps", type=int, default=80, help="GRPO's RL steps (the budget is B x G x this)")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per RL step B")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt G")
    parser.add_argument("--learning-rate", type=float, default=5e-4, help="RL learning rate (AdamW)")
    parser.add_argument(
        "--eval-every", type=int, default=10, help="a curve point every this many x B x G generated completions"
    )
    parser.add_argument(
        "--cache", type=Path, default=common.CACHE_DIR, help="where the SFT checkpoint is cached"
    )
    parser.add_argument(
        "--mode",
        choices=tuple(MODES),
        default="effect",
        help="effect: GRPO vs IGPO (igpo_effect); ablation: IGPO vs eta = 1 vs tau = 1 (igpo_ablations); budget: "
        "GRPO vs IGPO vs dynamic sampling (dynamic_sampling); rollouts: exact vs fast rollouts (fast_rollouts_rl)",
    )
    parser.add_argument(
        "--budget", type=int, default=None, help="completions per run (default B x G x --rl-steps)"
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
    sft = evaluate_checkpoint(load_model_dir(model_dir, device), test, s)
    sft_accuracy = sft["heldout_accuracy"]
    print(
        f"SFT checkpoint: hard pass@1 {sft['heldout_hard']:.3f}, easy {sft['heldout_easy']:.3f}; hard all-wrong "
        f"{record['history'][-1]['all_wrong_fraction']:.3f} (training prompts), {sft['sampled_all_wrong_hard']:.3f} "
        "(held-out)",
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
    for run in runs:  # relative to the checkpoint, sampled with the same seed on the same questions
        start = sft["sampled_all_wrong_hard"]
        run["sampled_all_wrong_hard_fall"] = 1 - run["sampled_all_wrong_hard"] / start if start else float("nan")
    info["load_average_1m_end"] = common.os.getloadavg()[0]
    total = time.perf_counter() - began
    payload = {
        "benchmark": name,
        "machine": info,
        "command": common.command_line(),
        "quick": args.quick,
        "settings": s,
        "sft_checkpoint": record | {"heldout_accuracy": sft_accuracy, **sft},
        "runs": runs,
        "seconds": total,
    }
    if args.mode in ("budget", "rollouts"):
        report = budget_report if args.mode == "budget" else rollouts_report
        metrics = BUDGET_METRICS if args.mode == "budget" else ROLLOUT_METRICS
        stats = summarise(runs, s["seeds"], metrics, arms, pairs)
        markdown = report(s, record, sft_accuracy, runs, stats, info, total)
        payload["summary"] = stats
        common.write_results(args.out, name, payload, markdown)
        print(markdown)
        return payload

    metrics = (METRICS if args.mode == "effect" else ABLATION_METRICS) + ("sampled_all_wrong_hard_fall",)
    stats = summarise(runs, s["seeds"], metrics, arms, pairs)
    window = s["eval_every_steps"] * s["rl"]["batch_size"] * s["rl"]["group_size"]
    all_curves = {arm: curves(runs, arm, window, sft) for arm in arms}
    args.out.mkdir(parents=True, exist_ok=True)
    png = plot_curves(
        args.out / f"{name}.png",
        all_curves,
        f"{', '.join(NAMES[a] for a in arms)} from one SFT checkpoint, {len(s['seeds'])} seeds (mean, 95% interval)",
    )
    payload |= {"summary": stats, "curves": all_curves, "figure": png.name}
    igpo_runs = [r for r in runs if r["algorithm"] == "igpo"]
    attempts = sum(c["inpaint_attempts"] for r in igpo_runs for c in r["curve"])
    successes = sum(c["inpaint_successes"] for r in igpo_runs for c in r["curve"])
    repaired = sum(c["groups_repaired"] for r in igpo_runs for c in r["curve"])
    if args.mode == "effect":
        reached, checks = goal_lines(stats, sft, record)
        verdict = (
            "**Goal reached**: every check below holds."
            if reached
            else "**Goal not reached**: the unchecked lines below fail. What was tried: " + TRIED
        )
        title = f"# The IGPO effect on hard prompts (GRPO vs IGPO, {len(s['seeds'])} paired seeds)"
        checks_text = f"{verdict}\n\n" + "\n".join(checks) + "\n\n"
    else:
        title = f"# IGPO ablations: partial vs full inpainting, entropy filter ({len(s['seeds'])} paired seeds)"
        checks_text = (
            "Arms: IGPO (eta ~ U[0.2, 0.6], tau = 0.2); IGPO eta = 1 (full inpainting: the whole trace but the answer "
            "span revealed); IGPO tau = 1 (no entropy filter: every hint token trained). The paper reports partial > "
            "full and tau 0.2 > 1.0.\n\n"
        )
    markdown = (
        f"{title}\n\nMachine: {common.machine_line(info)}\n\nCommand: `{common.command_line()}`\n\n"
        + checks_text
        + "Mean with 95% t-interval over seeds; differences are paired per seed. Every run stopped at the step where "
        f"it had generated {s['budget']['max_generated_completions']} completions (rollouts + inpainting attempts).\n\n"
        + comparison_tables(stats, metrics, arms, pairs)
        + f"\n\nCurves ([{png.name}]({png.name})): per {window} generated completions, the all-wrong fraction of the "
        "hard rollout groups of the steps in that window, and hard held-out pass@1 at its end; 0 = the SFT "
        f"checkpoint.\n\n{curve_table(all_curves)}\n\n![curves]({png.name})\n\n"
        f"Setup: {setup_line(s, record, sft_accuracy)}. SFT checkpoint: hard held-out pass@1 {sft['heldout_hard']:.3f}, "
        f"easy {sft['heldout_easy']:.3f}; all-wrong fraction of G samples on hard held-out prompts "
        f"{sft['sampled_all_wrong_hard']:.3f}. IGPO inpainted {attempts} completions over all runs, {successes} of "
        f"them correct, repairing {repaired} groups. {total / 60:.1f} minutes in all ({s['workers']} worker(s)).\n"
    )
    common.write_results(args.out, name, payload, markdown)
    print(markdown)
    return payload


if __name__ == "__main__":
    main()
