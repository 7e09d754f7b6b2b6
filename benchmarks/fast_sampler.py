"""Fast sampler modes against the exact sampler: throughput, model work per completion token, and accuracy.

    python benchmarks/fast_sampler.py                 # CPU defaults (~5-8 min on one busy core)
    python benchmarks/fast_sampler.py --device cuda   # larger batches and lengths
    python benchmarks/fast_sampler.py --quick         # smoke test (seconds)

Modes (``igpo.sampler.SamplerConfig``): exact (``cache="none"``, fixed schedule of ``steps = L/2``); prefix
cache; dual cache; confidence threshold only; prefix cache + threshold; dual cache + threshold.

1. Throughput on freshly initialised models ("tiny", the CPU demo model, and "base100m", about 110M
   parameters with a 32k vocabulary): completion tokens/s, full forwards and cached forwards per completion
   token (one batched call advances every sequence, so per sequence it is one forward), tokens run through
   the model per completion token (a cached forward runs only its window), and analytic model GFLOP per
   completion token (``common.ModelShape.forward_flops``; a cached forward's queries attend to the cached keys
   too). Counted by wrapping the HF model's ``forward``. On random weights no confidence reaches the
   threshold, so threshold decoding commits one token per iteration (L forwards instead of L/2): its rows
   here are its worst case, not its typical speed.
2. Held-out accuracy of a trained model: the SFT checkpoint of ``igpo_effect.py`` (its default settings;
   cached under ``benchmarks/results/tmp/``, built in about 10 minutes if missing), greedy pass@1 on the demo
   task's test split through ``igpo.evaluate.evaluate_model`` (the shared verifier), with each mode: accuracy,
   the fraction of completions identical to the exact sampler's, tokens/s and forwards per token.

Every generation runs to the end (no time-boxing). Timings are single runs on a shared machine; the forward
and FLOP counts are exact.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common
from igpo.kv_cache import CACHE_ARGUMENTS

# name -> the SamplerConfig fields that make the mode (the threshold value comes from --threshold)
MODES: dict[str, dict[str, Any]] = {
    "exact": {"cache": "none", "threshold": False},
    "prefix cache": {"cache": "prefix", "threshold": False},
    "dual cache": {"cache": "dual", "threshold": False},
    "threshold": {"cache": "none", "threshold": True},
    "prefix + threshold": {"cache": "prefix", "threshold": True},
    "dual + threshold": {"cache": "dual", "threshold": True},
}


def mode_sampler(base: Any, mode: str, threshold: float) -> Any:
    fields = MODES[mode]
    return base.model_copy(
        update={"cache": fields["cache"], "threshold": threshold if fields["threshold"] else None}
    )


class ForwardRecorder:
    """Wraps the HF model's ``forward``: per call, the batch size, the input length, the number of keys its
    queries attend to (inputs + cached), and the positions sent through the LM head."""

    def __init__(self, lm: Any):
        self.lm = lm
        self.calls: list[dict[str, int]] = []

    def __enter__(self) -> Self:
        inner = self.lm.model.forward

        @functools.wraps(inner)  # the cache-support check reads the signature
        def recorded(*args: Any, **kwargs: Any):
            ids = kwargs["input_ids"]
            cache = next((kwargs[k] for k in CACHE_ARGUMENTS if kwargs.get(k) is not None), None)
            cached = cache.get_seq_length() if cache is not None else 0
            keep = kwargs.get("logits_to_keep")
            head = len(keep) if keep is not None and not isinstance(keep, int) else ids.shape[1]
            self.calls.append(
                {"n": ids.shape[0], "length": ids.shape[1], "keys": cached + ids.shape[1], "head": head}
            )
            return inner(*args, **kwargs)

        self.lm.model.forward = recorded
        return self

    def __exit__(self, *exc: object) -> None:
        del self.lm.model.forward  # back to the class method

    def summary(
        self, full_length: int, completion_tokens: int, shape: common.ModelShape | None
    ) -> dict[str, Any]:
        """Counts per completion token of one sequence (``completion_tokens`` = L per sequence)."""
        full = [c for c in self.calls if c["length"] == full_length]
        cached = [c for c in self.calls if c["length"] != full_length]
        out: dict[str, Any] = {
            "full_forwards": len(full),
            "cached_forwards": len(cached),
            "full_forwards_per_token": len(full) / completion_tokens,
            "cached_forwards_per_token": len(cached) / completion_tokens,
            "model_tokens_per_token": sum(c["length"] for c in self.calls) / completion_tokens,
        }
        if shape is not None:
            flops = sum(shape.forward_flops(1, c["length"], c["head"], c["keys"]) for c in self.calls)
            out["gflop_per_token"] = flops / completion_tokens / 1e9
        return out


def measure(lm: Any, shape: common.ModelShape, prompts: Any, sampler: Any, device: str) -> dict[str, Any]:
    """One generation of every prompt with ``sampler``, timed, with its forwards counted."""
    import torch

    from igpo.sampler import generate

    prompt_ids, prompt_mask = prompts
    n, p = prompt_ids.shape
    generator = torch.Generator(device=device).manual_seed(0)
    with common.PeakMemory(device) as memory, ForwardRecorder(lm) as recorder:
        common.synchronize(device)
        start = time.perf_counter()
        generate(lm, prompt_ids, sampler, generator, prompt_mask=prompt_mask)
        common.synchronize(device)
        seconds = time.perf_counter() - start
    return {
        "sequences": n,
        "prompt_length": p,
        "gen_length": sampler.gen_length,
        "block_length": sampler.block_length,
        "steps": sampler.steps,
        "cache": sampler.cache,
        "threshold": sampler.threshold,
        "seconds": seconds,
        "completion_tokens_per_second": n * sampler.gen_length / seconds,
        **recorder.summary(p + sampler.gen_length, sampler.gen_length, shape),
        "memory": memory.as_dict(),
    }


def effect_arguments(quick: bool) -> argparse.Namespace:
    """``igpo_effect.py``'s own default arguments, so the SFT checkpoint key is exactly that script's."""
    from benchmarks import igpo_effect

    return igpo_effect.build_parser().parse_args(["--quick"] if quick else [])


def accuracy_rows(args: argparse.Namespace, device: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Part 2: the SFT checkpoint of igpo_effect.py, greedy pass@1 on the test split with every mode."""
    import pandas as pd

    from benchmarks import igpo_effect
    from igpo.evaluate import BenchmarkConfig, EvalConfig, evaluate_model
    from igpo.models import load_model_dir
    from igpo.sampler import SamplerConfig

    s = igpo_effect.settings(effect_arguments(args.quick))
    model_dir, record = igpo_effect.prepare_checkpoint(s, device, args.cache)
    lm = load_model_dir(model_dir, device)
    _, test = igpo_effect.task_tables(s)
    table = pd.DataFrame(test)
    base = SamplerConfig(**(s["rollout"] | {"temperature": 0.0}))
    rows: list[dict[str, Any]] = []
    exact_completions: list[str] = []
    for mode in MODES:
        sampler = mode_sampler(base, mode, args.threshold)
        config = EvalConfig(
            benchmarks=(BenchmarkConfig(name="demo", sampler=sampler),), batch_size=len(table)
        )
        with ForwardRecorder(lm) as recorder:
            scores, samples = evaluate_model(lm, {"demo": table}, config, "sft", progress=False)
        full_length = recorder.calls[0]["length"]  # a generation starts with a full forward
        completions = samples["completion"].tolist()
        exact_completions = exact_completions or completions
        seconds = float(scores["seconds"].iloc[0])
        row = {
            "mode": mode,
            "cache": sampler.cache,
            "threshold": sampler.threshold,
            "accuracy": float(scores["score"].iloc[0]),
            "n_questions": len(table),
            "same_as_exact": sum(a == b for a, b in zip(completions, exact_completions)) / len(completions),
            "seconds": seconds,
            "completion_tokens_per_second": len(table) * sampler.gen_length / seconds,
            "prompt_length": full_length - sampler.gen_length,
            **recorder.summary(full_length, sampler.gen_length, None),
        }
        rows.append(row)
        print(
            f"  {mode:<20} pass@1 {row['accuracy']:.3f}  same as exact {row['same_as_exact']:.0%}  "
            f"{row['completion_tokens_per_second']:8.0f} tok/s  full fwd/token {row['full_forwards_per_token']:.2f}  "
            f"cached fwd/token {row['cached_forwards_per_token']:.2f}",
            flush=True,
        )
    checkpoint = {
        "key": record["key"],
        "path": str(model_dir),
        "settings": record["settings"],
        "sampler": base.model_dump(),
    }
    return rows, checkpoint


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=None, help="comma-separated: tiny, medium, base100m (default tiny,base100m)"
    )
    parser.add_argument(
        "--sequences", type=int, default=None, help="B*G (default: tiny 8, base100m 2 on CPU)"
    )
    parser.add_argument(
        "--gen-length", type=int, default=None, help="L (default: tiny 128, base100m 64 on CPU)"
    )
    parser.add_argument("--block-length", type=int, default=None, help="block length (default 32)")
    parser.add_argument(
        "--threshold", type=float, default=0.9, help="confidence threshold of the threshold modes"
    )
    parser.add_argument(
        "--cache", type=Path, default=common.CACHE_DIR, help="where igpo_effect.py's SFT checkpoint is cached"
    )
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    import torch

    from igpo.models import DTYPES
    from igpo.sampler import SamplerConfig

    device = common.resolve_device(args.device)
    cuda = device.startswith("cuda")
    dtype = DTYPES["bfloat16" if cuda else "float32"]
    # (B*G, L) per model; steps = L/2, block 32 (the reference run's block), temperature 0 (evaluation).
    if args.quick:
        shapes, block = {"tiny": (2, 16)}, 8
    elif cuda:
        shapes, block = {"tiny": (64, 256), "base100m": (64, 256)}, 32
    else:
        shapes, block = {"tiny": (8, 128), "base100m": (2, 64)}, 32
    names = args.models.split(",") if args.models else list(shapes)
    block = args.block_length or block

    info = common.machine_info(device)
    print(common.machine_line(info), flush=True)
    began = time.perf_counter()
    from benchmarks.rollout_throughput import demo_prompts

    throughput: list[dict[str, Any]] = []
    for name in names:
        n, length = shapes.get(name, (4, 64))
        n, length = args.sequences or n, args.gen_length or length
        lm = common.build_model(name, device, dtype)
        shape = common.ModelShape.of(lm.model)
        params = common.parameter_count(lm)
        print(f"{name}: {params / 1e6:.2f}M parameters, vocabulary {shape.vocab}", flush=True)
        prompts = demo_prompts(lm, n, min(8, n), device)
        base = SamplerConfig(gen_length=length, block_length=block, steps=length // 2, temperature=0.0)
        # Warm-up (allocator, kernels): one short untimed generation through every code path.
        warm = SamplerConfig(gen_length=block, block_length=block, steps=2, cache="dual")
        measure(lm, shape, (prompts[0][:1], prompts[1][:1]), warm, device)
        exact_seconds = None
        for mode in MODES:
            row = {
                "model": name,
                "parameters": params,
                "dtype": str(dtype).removeprefix("torch."),
                "mode": mode,
                **measure(lm, shape, prompts, mode_sampler(base, mode, args.threshold), device),
            }
            exact_seconds = exact_seconds or row["seconds"]
            row["speedup_vs_exact"] = exact_seconds / row["seconds"]
            throughput.append(row)
            print(
                f"  {mode:<20} {row['completion_tokens_per_second']:9.1f} tok/s (x{row['speedup_vs_exact']:.2f})  "
                f"full fwd/token {row['full_forwards_per_token']:.3f}  cached fwd/token "
                f"{row['cached_forwards_per_token']:.3f}  model tokens/token {row['model_tokens_per_token']:.1f}  "
                f"GFLOP/token {row['gflop_per_token']:.3f}  mem {row['memory']['peak_mib']:.0f} MiB",
                flush=True,
            )
        del lm
        if cuda:
            torch.cuda.empty_cache()

    print("held-out accuracy of igpo_effect.py's SFT checkpoint:", flush=True)
    accuracy, checkpoint = accuracy_rows(args, device)
    info["load_average_1m_end"] = common.os.getloadavg()[0]

    table1 = common.markdown_table(
        [
            "model",
            "params",
            "B*G",
            "L",
            "mode",
            "tokens/s",
            "vs exact",
            "full fwd/token",
            "cached fwd/token",
            "model tokens/token",
            "GFLOP/token",
            "peak MiB",
        ],
        [
            [
                r["model"],
                f"{r['parameters'] / 1e6:.1f}M",
                r["sequences"],
                r["gen_length"],
                r["mode"],
                f"{r['completion_tokens_per_second']:,.1f}",
                f"{r['speedup_vs_exact']:.2f}x",
                f"{r['full_forwards_per_token']:.3f}",
                f"{r['cached_forwards_per_token']:.3f}",
                f"{r['model_tokens_per_token']:.1f}",
                f"{r['gflop_per_token']:.3f}",
                f"{r['memory']['peak_mib']:.0f}",
            ]
            for r in throughput
        ],
    )
    exact_tps = accuracy[0]["completion_tokens_per_second"]
    table2 = common.markdown_table(
        [
            "mode",
            "pass@1",
            "same completion as exact",
            "tokens/s",
            "vs exact",
            "full fwd/token",
            "cached fwd/token",
            "model tokens/token",
        ],
        [
            [
                r["mode"],
                f"{r['accuracy']:.3f}",
                f"{r['same_as_exact']:.0%}",
                f"{r['completion_tokens_per_second']:,.0f}",
                f"{r['completion_tokens_per_second'] / exact_tps:.2f}x",
                f"{r['full_forwards_per_token']:.3f}",
                f"{r['cached_forwards_per_token']:.3f}",
                f"{r['model_tokens_per_token']:.1f}",
            ]
            for r in accuracy
        ],
    )
    first = throughput[0]
    sft = checkpoint["settings"]
    notes1 = (
        f"Random weights, greedy, block {block}, exact steps = L/2, threshold {args.threshold}, {first['dtype']}; "
        f"prompts of the demo task (P = {first['prompt_length']}). Per completion token of one sequence: full "
        "forwards (all P+L positions), cached forwards (prefix: the block and everything after it; dual: the block "
        "alone), tokens run through the model, and analytic model GFLOP. On random weights no confidence reaches "
        "the threshold, so the threshold rows commit one token per iteration (L forwards instead of exact's L/2): "
        "their worst case. 'vs exact' = speed relative to the exact row of the same model; single runs on a shared "
        "machine. Peak memory: "
        + ("CUDA max allocated." if cuda else "process peak RSS (includes the Python/torch runtime).")
    )
    notes2 = (
        f"igpo_effect.py's SFT checkpoint `sft-{checkpoint['key']}` ({sft['model']['num_layers']} layer(s), d = "
        f"{sft['model']['hidden_size']}), {accuracy[0]['n_questions']} held-out questions of the demo task "
        f"({sft['task']['num_steps']} operations), greedy, L = {sft['rollout']['gen_length']}, block "
        f"{sft['rollout']['block_length']}, exact steps = {sft['rollout']['steps']}, threshold {args.threshold}, "
        "scored by the shared verifier (igpo.evaluate.evaluate_model). One question is "
        f"{100 / accuracy[0]['n_questions']:.1f} points of pass@1."
    )
    markdown = (
        f"# Fast sampler\n\nMachine: {common.machine_line(info)}\n\nCommand: `{common.command_line()}`\n\n"
        f"## Throughput\n\n{table1}\n\n{notes1}\n\n## Held-out accuracy (trained model)\n\n{table2}\n\n{notes2}\n"
    )
    payload = {
        "benchmark": "fast_sampler",
        "machine": info,
        "command": common.command_line(),
        "quick": args.quick,
        "settings": {"block_length": block, "threshold": args.threshold, "modes": MODES},
        "throughput": throughput,
        "accuracy": accuracy,
        "sft_checkpoint": checkpoint,
        "seconds": time.perf_counter() - began,
    }
    common.write_results(args.out, "fast_sampler", payload, markdown)
    print(markdown)
    return payload


if __name__ == "__main__":
    main()
