"""GPU acceptance check: a LLaDA-8B-shaped model from the native class with random bf16 weights on one GPU:
rollout tokens/s, one IGPO step and one SFT step with LoRA, phase times and peak memory, in one JSON.

    python benchmarks/gpu_check.py                       # one H200-class GPU: about 4-5 minutes (< 8 by design)
    python benchmarks/gpu_check.py --smoke               # shrunk shape; on CPU when there is no GPU (seconds)
    make gpu-check                                       # the first line, with DS_ACCELERATOR=cuda

Model: ``LLaDAConfig()``'s defaults, which are LLaDA-8B's published config (32 layers, d_model 4096, 32 heads,
MLP 12288, vocabulary 126,464, untied LM head), built on the meta device, moved to the GPU with ``to_empty``
in bf16 and filled there (normal, std 1/sqrt(fan_in); norms 1): no 16 GB detour through CPU memory.
Tokenizer (``benchmarks.llada_sampler.llada_tokenizer``): character-level over printable ASCII with LLaDA's
special tokens at the ids of the model config (mask 126336, eos = pad 126081, eot 126348) and LLaDA's chat
template; every other id is a filler token, so any sampled id decodes. Only the ids matter to the sampler and
the trainers; prompt lengths in characters equal lengths in tokens.

Measurements (settings in the JSON):

1. Rollouts, B*G = 64 random prompts of ``--prompt-length`` (128) tokens, L = 256, block 32, steps 128,
   T = 1.2, in three modes: exact with early exit off, exact with early exit on (the default), prefix cache +
   threshold 0.9. Time guard: each mode runs at most ``--rollout-budget-s`` (40 s) worth of denoising
   iterations (the number is set from one timed forward after a warm-up); a generation cut short is
   extrapolated linearly to its full number of iterations (marked ``extrapolated``). Exact iterations all
   cost the same, so that is exact up to noise; the first iterations of a cached mode run the largest windows
   (block 0 and the whole suffix), so its extrapolated tokens/s is a lower bound. Random weights never emit stop
   tokens more often than any other token and no confidence reaches 0.9: early exit cannot trigger (the JSON
   records whether any forward ran on fewer rows) and threshold decoding commits one token per iteration
   (L iterations, its worst case; the extrapolation assumes exactly that).
2. One IGPO step (``igpo.rl.trainer.train_rl``, algorithm igpo): B = 8 demo-task prompts x G = 8, prompts
   padded to about ``--prompt-length`` tokens by an instruction of filler text, LoRA r = 128 (alpha 64, every
   linear layer of the blocks), micro-batch 8, mu = 1, beta = 0.01 (reference = the base with adapters
   disabled), ``gradient_checkpointing: true`` (igpo.models.recompute, non-reentrant), rollouts at T = 1.2 with ``--rl-rollout-steps``
   (32, i.e. L/8, to keep the run short; the rollout speed is item 1). Random weights get every group wrong, so
   IGPO's repair runs an inpainting rollout for every group (its worst case). Phase seconds are the trainer's
   ``RLStepMetrics.seconds``; this single step includes first-backward overheads.
3. One SFT step (``igpo.sft.train_sft``), 16 sequences of prompt + L = 256 response tokens, micro-batch 8,
   LoRA r = 128, gradient checkpointing: seconds and tokens.

Peak memory is ``torch.cuda.max_memory_allocated`` over each block (reset before it); on CPU (``--smoke``) the
process's peak RSS. ``--smoke``: 2 layers, d_model 64, 4 heads, MLP 128, vocabulary 512 with LLaDA's special ids
at the same distance from its end, L = 32, block 16, B*G = 4, LoRA r = 16, micro-batch 2, float32 on CPU, and a
rollout budget of 0 s (each mode cut after 4 iterations and extrapolated), so every code path runs in seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

SMOKE_SHAPE = {"d_model": 64, "n_heads": 4, "n_layers": 2, "mlp_hidden_size": 128}
SMOKE_VOCAB = 512
MIN_FORWARDS = 4  # iterations a time-boxed rollout always runs


# ------------------------------------------------------------------------------------------------ model


def build_model(smoke: bool, device: str, dtype: Any, seed: int) -> Any:
    """``DiffusionLM`` of a LLaDA-8B-shaped (or, smoke, shrunk) native LLaDA, built on meta and filled on
    ``device`` in ``dtype``."""
    import torch

    from benchmarks.llada_sampler import llada_tokenizer, scaled_vocab
    from igpo.models import wrap_model
    from igpo.models.llada import LLaDAConfig, LLaDAModelLM

    config = LLaDAConfig(**SMOKE_SHAPE, **scaled_vocab(SMOKE_VOCAB)) if smoke else LLaDAConfig()
    with torch.device("meta"):
        model = LLaDAModelLM(config).to(dtype)
    model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 1:
                param.fill_(1.0)  # RMSNorm weights (the released config has no biases)
            else:
                param.normal_(0.0, 1.0 / math.sqrt(param.shape[1]), generator=generator)
    model.eval()
    return wrap_model(model, llada_tokenizer(config))


def device_info(device: str) -> dict[str, Any]:
    """GPU name, memory, driver and CUDA versions, torch version (CPU: the CPU line)."""
    import torch

    info = common.machine_info(device)
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info["gpu_memory_gib"] = props.total_memory / 2**30
        info["gpu_count"] = torch.cuda.device_count()
        try:
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20, check=True,
            ).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            info["driver"] = None
        info["line"] = (
            f"{info['gpu']}, {info['gpu_memory_gib']:.0f} GiB, driver {info['driver']}, CUDA {info['cuda']}, "
            f"torch {info['torch']}"
        )
    else:
        info["line"] = common.machine_line(info)
    return info


# ----------------------------------------------------------------------------------------------- rollouts


def timed_generate(lm: Any, counter: common.ForwardCounter, prompts: Any, config: Any, seed: int, cap: int | None,
                   device: str) -> tuple[float, int, Any]:
    """(seconds, forwards run, completions or None if the cap stopped it)."""
    import torch

    from igpo.sampler import generate

    generator = torch.Generator(device=device).manual_seed(seed)
    counter.start(cap)
    common.synchronize(device)
    start = time.perf_counter()
    try:
        out = generate(lm, prompts, config, generator)
    except common.ForwardBudgetReached:
        out = None
    common.synchronize(device)
    return time.perf_counter() - start, counter.calls, out


def bench_rollouts(lm: Any, args: Any, device: str) -> dict[str, Any]:
    import torch

    from igpo.sampler import SamplerConfig

    base = SamplerConfig(gen_length=args.gen_length, block_length=args.block_length, steps=args.gen_length // 2,
                         temperature=1.2)
    early = "early_exit" in SamplerConfig.model_fields
    modes: dict[str, dict[str, Any]] = {
        "exact, early exit off": {"early_exit": False} if early else {},
        "exact, early exit on": {"early_exit": True} if early else {},
        f"prefix cache + threshold {args.threshold}": {"cache": "prefix", "threshold": args.threshold},
    }
    n = args.batch_size * args.group_size
    low = min(lm.tokens.mask_id, lm.tokens.eos_id, lm.tokens.eot_id, lm.tokens.pad_id) - 1
    prompts = torch.randint(0, low, (n, args.prompt_length), generator=torch.Generator().manual_seed(args.seed))
    prompts = prompts.to(device)  # [B*G, P]
    with common.ForwardCounter(lm) as counter:
        return _time_modes(lm, counter, prompts, base, modes, early, args, device)


def _time_modes(lm: Any, counter: common.ForwardCounter, prompts: Any, base: Any, modes: dict[str, dict[str, Any]],
                early: bool, args: Any, device: str) -> dict[str, Any]:
    import torch

    n = prompts.shape[0]
    # Warm-up (kernels, allocator), then one timed exact iteration sets the iteration budget of every mode.
    timed_generate(lm, counter, prompts, base, args.seed, 2, device)
    one, _, _ = timed_generate(lm, counter, prompts, base, args.seed, 1, device)
    cap = max(MIN_FORWARDS, int(args.rollout_budget_s / one))
    out: dict[str, Any] = {
        "settings": {"rows": n, "prompt_length": args.prompt_length, **base.model_dump(mode="json")},
        "seconds_per_exact_iteration_probe": one,
        "iterations_cap": cap,
        "early_exit_available": early,
        "note": "random weights: no row ends early (early exit cannot trigger; see rows_left_early) and no "
        "confidence reaches the threshold (one token per iteration); an extrapolated cached mode is a lower bound "
        "on its tokens/s",
        "modes": {},
    }
    for name, fields in modes.items():
        if not early and "early exit" in name:
            out["modes"][name] = {"skipped": "igpo.sampler.SamplerConfig has no early_exit field"}
            continue
        config = base.model_copy(update=fields)
        seconds, forwards, completions = timed_generate(lm, counter, prompts, config, args.seed, cap, device)
        full = config.gen_length if config.threshold is not None else config.steps
        entry: dict[str, Any] = {"sampler": fields, "forwards_run": forwards, "seconds_run": seconds,
                                 "rows_left_early": counter.min_rows is not None and counter.min_rows < n}
        if completions is None:
            entry.update(extrapolated=True, forwards_full=full, seconds=seconds / forwards * full)
        else:
            stops = torch.isin(completions, torch.tensor(lm.tokens.stop_ids, device=device))
            entry.update(extrapolated=False, forwards_full=forwards, seconds=seconds,
                         stop_tokens=int(stops.sum()))
        entry["tokens_per_second"] = n * config.gen_length / entry["seconds"]
        out["modes"][name] = entry
        print(f"  rollout {name}: {entry['tokens_per_second']:,.1f} tokens/s "
              f"({forwards} of {entry['forwards_full']} iterations run, {seconds:.1f} s)", flush=True)
    return out


# ------------------------------------------------------------------------------------------------ training


def filler_instruction(lm: Any, rows: list[dict[str, Any]], prompt_length: int) -> str:
    """Text put before every question so the longest prompt is about ``prompt_length`` tokens."""
    from igpo.prompting import format_prompt

    longest = max(len(lm.tokenizer(format_prompt(lm.tokenizer, r["question"])).input_ids) for r in rows)
    words = "Solve the problem step by step and give the final answer. "
    need = max(0, prompt_length - longest)
    return (words * (need // len(words) + 1))[:need]


def bench_igpo_step(lm: Any, rows: list[dict[str, Any]], instruction: str, args: Any, device: str) -> dict[str, Any]:
    from igpo.distributed import LoRAConfig
    from igpo.models.recompute import recomputed_blocks
    from igpo.rl.config import RLConfig
    from igpo.rl.trainer import train_rl
    from igpo.sampler import SamplerConfig

    config = RLConfig(
        algorithm="igpo", steps=1, batch_size=args.batch_size, group_size=args.group_size,
        micro_batch_size=args.micro_batch, mu=1, beta=0.01, learning_rate=1e-6,
        lora=LoRAConfig(r=args.lora_r, alpha=64), instruction=instruction, progress="off", seed=args.seed,
        gradient_checkpointing=True,
        rollout=SamplerConfig(gen_length=args.gen_length, block_length=args.block_length,
                              steps=args.rl_rollout_steps, temperature=1.2),
    )
    with common.PeakMemory(device) as memory:
        result = train_rl(lm, rows, config, progress=False)
    m = result.metrics[0]
    phases = m.seconds.model_dump()
    print(f"  IGPO step: {sum(phases.values()):.1f} s ("
          + ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
          + f"), peak {memory.as_dict()['peak_mib'] / 1024:.1f} GiB", flush=True)
    return {
        "config": config.model_dump(mode="json"),
        "checkpointed_blocks": recomputed_blocks(lm.model),
        "phase_seconds": phases,
        "step_seconds": sum(phases.values()),
        "all_wrong_fraction": m.all_wrong_fraction,
        "zero_advantage_fraction": m.zero_advantage_fraction,
        "inpaint_attempts": m.inpaint_attempts,
        "completions_replaced": m.completions_replaced,
        "completion_length": m.completion_length,
        "loss": m.loss,
        "grad_norm": m.grad_norm,
        "memory": memory.as_dict(),
        "note": "random weights: groups mostly stay all-wrong after repair (zero advantages) and the policy equals "
        "the reference at the first step (KL 0), so loss and grad_norm can be 0; the backward pass runs in full "
        "all the same",
    }


def bench_sft_step(lm: Any, rows: list[dict[str, Any]], instruction: str, args: Any, device: str) -> dict[str, Any]:
    from igpo.distributed import LoRAConfig
    from igpo.models.recompute import recomputed_blocks
    from igpo.sft import SFTConfig, train_sft

    config = SFTConfig(
        steps=1, batch_size=args.sft_batch, micro_batch_size=args.micro_batch, learning_rate=1e-5,
        max_response_tokens=args.gen_length, over_budget="truncate", pad_response_to=args.gen_length,
        lora=LoRAConfig(r=args.lora_r, alpha=64), instruction=instruction, progress="off", seed=args.seed,
        gradient_checkpointing=True,
    )
    metrics: list[Any] = []
    with common.PeakMemory(device) as memory:
        train_sft(lm, [r["question"] for r in rows], [r["reasoning"] for r in rows], config, progress=False,
                  on_step=lambda _, m: metrics.append(m))
    m = metrics[0]
    print(f"  SFT step: {m.seconds:.1f} s, {m.tokens} tokens, peak {memory.as_dict()['peak_mib'] / 1024:.1f} GiB",
          flush=True)
    return {
        "config": config.model_dump(mode="json"),
        "checkpointed_blocks": recomputed_blocks(lm.model),
        "phase_seconds": {"step": m.seconds},
        "tokens": m.tokens,
        "tokens_per_second": m.tokens / m.seconds,
        "loss": m.loss,
        "memory": memory.as_dict(),
    }


# ------------------------------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default; no fallback) or cpu (with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="shrunk shape; runs on CPU when CUDA is absent")
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "gpu_check.json", help="the JSON file")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--prompt-length", type=int, default=None, help="prompt tokens P (default 128; smoke 16)")
    parser.add_argument("--rollout-budget-s", type=float, default=None,
                        help="seconds of iterations per rollout mode before extrapolating (default 40; smoke 0)")
    parser.add_argument("--rl-rollout-steps", type=int, default=None,
                        help="denoising steps of the IGPO step's rollouts (default 32 = L/8; smoke 8)")
    parser.add_argument("--threshold", type=float, default=0.9, help="confidence threshold of the fast mode")
    parser.add_argument("--lora-r", type=int, default=None, help="LoRA rank (default 128; smoke 16)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    s = args.smoke
    args.gen_length, args.block_length = (32, 16) if s else (256, 32)
    args.batch_size, args.group_size = (2, 2) if s else (8, 8)
    args.micro_batch = 2 if s else 8
    args.sft_batch = 4 if s else 16
    args.prompt_length = args.prompt_length or (16 if s else 128)
    args.rollout_budget_s = (0.0 if s else 40.0) if args.rollout_budget_s is None else args.rollout_budget_s
    args.rl_rollout_steps = args.rl_rollout_steps or (8 if s else 32)
    args.lora_r = args.lora_r or (16 if s else 128)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    began = time.perf_counter()
    common.set_threads(args.threads)
    import torch

    from benchmarks.train_step import demo_rows

    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        if not args.smoke:
            raise SystemExit(f"--device {device}: CUDA is not available (the full check needs a GPU; --smoke runs on CPU)")
        print("no CUDA device: --smoke runs on CPU", flush=True)
        device = "cpu"
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    info = device_info(device)
    print(info["line"], flush=True)

    lm = build_model(args.smoke, device, dtype, args.seed)
    params = common.parameter_count(lm)
    config = lm.model.config
    print(f"model: {params / 1e6:,.1f}M parameters, {config.n_layers} layers, d_model {config.d_model}, "
          f"vocabulary {config.rows}, {dtype}; built in {time.perf_counter() - began:.1f} s", flush=True)
    payload: dict[str, Any] = {
        "benchmark": "gpu_check",
        "device": info,
        "command": common.command_line(),
        "smoke": args.smoke,
        "model": {
            "class": "igpo.models.llada.LLaDAModelLM", "parameters": params, "dtype": str(dtype),
            "weights": "random: normal(0, 1/sqrt(fan_in)), norms 1, filled on the device",
            "n_layers": config.n_layers, "d_model": config.d_model, "n_heads": config.n_heads,
            "mlp_hidden_size": config.intermediate_size, "vocabulary": config.rows,
            "mask_token_id": config.mask_token_id, "eos_token_id": config.eos_token_id,
        },
        "tokenizer": "character-level stand-in with LLaDA's special ids (benchmarks.llada_sampler.llada_tokenizer)",
    }
    payload["rollout"] = bench_rollouts(lm, args, device)
    rows = demo_rows(num_steps=3, count=64)
    instruction = filler_instruction(lm, rows, args.prompt_length)
    payload["igpo_step"] = bench_igpo_step(lm, rows, instruction, args, device)
    payload["sft_step"] = bench_sft_step(lm, rows, instruction, args, device)
    payload["total_seconds"] = time.perf_counter() - began
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    print(f"total {payload['total_seconds']:.0f} s; wrote {args.out}", flush=True)
    return payload


if __name__ == "__main__":
    main()
