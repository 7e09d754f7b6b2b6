"""Rollout throughput of the sampler (``igpo.sampler.generate``): completion tokens per second, denoising
forward passes per completion token, achieved model FLOP/s as a ratio of a matmul peak measured in the
same run just before and just after each configuration (their mean), and peak memory.

    python benchmarks/rollout_throughput.py                 # CPU defaults (about 4 minutes on 1 core)
    python benchmarks/rollout_throughput.py --device cuda   # GPU: every generation run to the end
    python benchmarks/rollout_throughput.py --quick         # smoke test, seconds

Grid: model in {tiny (~0.2M), medium (~50M)} x B*G in {8, 64} x L in {64, 256} x block length in {8, 32},
steps = L / 2 and temperature 1.2 (the reference run's rollout setting), prompts of the demo task.

Forward passes are counted by wrapping ``DiffusionLM.logits`` (the sampler's only call into the model).
Every denoising iteration runs the whole [B*G, P+L] sequence through the model (bidirectional attention,
no KV cache) and the current block through the LM head, so every iteration of a configuration costs the
same. That makes a time-boxed measurement honest: with ``--budget-s`` (default 20 s on CPU, none on CUDA)
a generation whose first timed iterations project more than the budget is stopped there (after one
untimed and at least two timed iterations), and its time is the mean iteration time x the number of
iterations a full generation runs (an exact count, checked against every full run). Full runs report the
same estimate from their own first iterations, so the error of the shortcut is in the results
(``extrapolation_error``). On CPU, configurations whose single forward pass exceeds ``--max-forward-gflop``
(default 250: the medium model at B*G = 64, about 2 minutes per forward on one core) are skipped and listed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common


class _Stopped(Exception):
    """Raised inside the model call to end a time-boxed generation."""


class ForwardCounter:
    """Wraps ``lm.logits``: counts calls and timestamps each call's entry (after a device sync). With a
    ``budget_s``, stops the generation (raises ``_Stopped``) once ``min_timed`` iterations after the untimed
    first one project a full generation of ``forwards_full`` iterations over the budget."""

    def __init__(self, lm: Any, device: str, forwards_full: int, budget_s: float | None, min_timed: int):
        self.lm, self.device = lm, device
        self.forwards_full, self.budget_s, self.min_timed = forwards_full, budget_s, min_timed
        self.calls = 0
        self.entries: list[float] = []
        self._inner = lm.logits

    def __enter__(self) -> Self:
        def counted(*args: Any, **kwargs: Any):
            common.synchronize(self.device)
            self.entries.append(time.perf_counter())
            timed = self.calls - 1
            if (
                self.budget_s is not None
                and timed >= self.min_timed
                and self.mean_iteration(1, self.calls) * self.forwards_full > self.budget_s
            ):
                raise _Stopped
            self.calls += 1
            return self._inner(*args, **kwargs)

        self.lm.logits = counted
        return self

    def __exit__(self, *exc: object) -> None:
        del self.lm.logits  # back to the class method

    def mean_iteration(self, first: int, last: int) -> float:
        """Mean seconds between call entries ``first`` and ``last`` (one forward + sampling work each)."""
        return (self.entries[last] - self.entries[first]) / (last - first)


def expected_forwards(sampler: Any) -> int:
    """Iterations of a generation without hints: every block runs min(steps per block, block length) of them
    (the loop stops early once a block has no mask left, one commit per iteration at least)."""
    return sampler.num_blocks * min(sampler.steps_per_block, sampler.block_length)


def measure(
    lm: Any,
    shape: common.ModelShape,
    prompts: Any,
    sampler: Any,
    device: str,
    budget_s: float | None,
    min_timed: int,
    dtype: Any,
) -> dict[str, Any]:
    """One configuration: run (or time-box) the generation and derive the throughput numbers."""
    import torch

    from igpo.sampler import generate

    prompt_ids, prompt_mask = prompts
    n, p = prompt_ids.shape
    length = p + sampler.gen_length
    peak_before = common.matmul_peak(device, dtype)
    forwards_full = expected_forwards(sampler)
    flops_per_forward = shape.forward_flops(n, length, sampler.block_length)
    generator = torch.Generator(device=device).manual_seed(0)
    with (
        common.PeakMemory(device) as memory,
        ForwardCounter(lm, device, forwards_full, budget_s, min_timed) as counter,
    ):
        start = time.perf_counter()
        stopped = False
        try:
            generate(lm, prompt_ids, sampler, generator, prompt_mask=prompt_mask)
            common.synchronize(device)
        except _Stopped:
            stopped = True
        wall = time.perf_counter() - start
    # Contention on a shared machine changes within seconds: bracket the row with two peak measurements.
    peak_after = common.matmul_peak(device, dtype)
    peak = (peak_before + peak_after) / 2
    row: dict[str, Any] = {
        "sequences": n,
        "prompt_length": p,
        "gen_length": sampler.gen_length,
        "block_length": sampler.block_length,
        "steps": sampler.steps,
        "temperature": sampler.temperature,
        "forwards": forwards_full,
        # One batched call advances every sequence, so per sequence it is one forward per iteration.
        "forwards_per_completion_token": forwards_full / sampler.gen_length,
        "model_flops_per_forward": flops_per_forward,
        "matmul_peak_flops": peak,
        "matmul_peak_flops_before": peak_before,
        "matmul_peak_flops_after": peak_after,
        "memory": memory.as_dict(),
    }
    # Iterations timed after the untimed first one: a stopped run used all of them (its last entry is the
    # one that stopped it); a full run checks the same estimate on its own first iterations.
    timed = counter.calls - 1 if stopped else min(counter.calls - 2, 3)
    estimate = counter.mean_iteration(1, 1 + timed) * forwards_full if timed >= 1 else None
    if not stopped:
        if counter.calls != forwards_full:
            raise AssertionError(f"counted {counter.calls} forwards, expected {forwards_full}")
        seconds = wall
        row.update(
            mode="full", seconds=seconds, extrapolation_error=(estimate / seconds - 1) if estimate else None
        )
    else:
        seconds = estimate
        row.update(
            mode=f"extrapolated from {timed} of {forwards_full} iterations",
            seconds=seconds,
            extrapolation_error=None,
        )
    row["completion_tokens_per_second"] = n * sampler.gen_length / seconds
    row["model_flops_per_second"] = flops_per_forward * forwards_full / seconds
    row["peak_ratio"] = row["model_flops_per_second"] / peak
    return row


def demo_prompts(lm: Any, sequences: int, group_size: int, device: str) -> Any:
    """Demo-task questions, G copies each, left-padded like ``igpo.rl.rollout.generate_rollouts``."""
    from igpo.data.config import DemoTaskConfig
    from igpo.data.demo_task import generate_demo_task
    from igpo.prompting import encode_prompts

    groups = max(1, sequences // group_size)
    _, test = generate_demo_task(
        DemoTaskConfig(num_train=1, num_test=groups, num_steps=3, reasoning="concise", seed=0)
    )
    ids, mask = encode_prompts(
        lm.tokenizer, test.column("question").to_pylist(), lm.tokens.pad_id, device=device
    )
    repeat = sequences // groups
    return ids.repeat_interleave(repeat, 0), mask.repeat_interleave(repeat, 0)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,medium", help="comma-separated: tiny, medium")
    parser.add_argument("--sequences", default=None, help="B*G values (default 8,64)")
    parser.add_argument("--gen-lengths", default=None, help="L values (default 64,256)")
    parser.add_argument("--block-lengths", default=None, help="block lengths (default 8,32)")
    parser.add_argument(
        "--temperature", type=float, default=1.2, help="sampling temperature (reference rollouts: 1.2)"
    )
    parser.add_argument(
        "--dtype", default=None, help="float32 or bfloat16 (default: float32 on CPU, bfloat16 on CUDA)"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="stop a generation projected to take longer and extrapolate (default: 20 on CPU, "
        "none on CUDA: every generation runs to the end); 0 = never stop",
    )
    parser.add_argument(
        "--max-forward-gflop",
        type=float,
        default=None,
        help="skip configurations whose one forward pass costs more (default: 250 on CPU, none on CUDA)",
    )
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    import torch

    from igpo.models import DTYPES
    from igpo.sampler import SamplerConfig

    device = common.resolve_device(args.device)
    cuda = device.startswith("cuda")
    dtype = DTYPES[args.dtype or ("bfloat16" if cuda else "float32")]
    if args.quick:
        sequences, gen_lengths, blocks = [4], [16], [8]
    else:
        sequences, gen_lengths, blocks = [8, 64], [64, 256], [8, 32]
    sequences = [int(x) for x in args.sequences.split(",")] if args.sequences else sequences
    gen_lengths = [int(x) for x in args.gen_lengths.split(",")] if args.gen_lengths else gen_lengths
    blocks = [int(x) for x in args.block_lengths.split(",")] if args.block_lengths else blocks
    budget = args.budget_s if args.budget_s is not None else (None if cuda else (1.0 if args.quick else 20.0))
    budget = budget or None
    max_gflop = args.max_forward_gflop if args.max_forward_gflop is not None else (None if cuda else 250.0)
    min_timed = 1 if args.quick else 2

    info = common.machine_info(device)
    print(common.machine_line(info), flush=True)
    began = time.perf_counter()
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for name in args.models.split(","):
        lm = common.build_model(name, device, dtype)
        shape = common.ModelShape.of(lm.model)
        params = common.parameter_count(lm)
        print(f"{name}: {params / 1e6:.2f}M parameters, vocabulary {shape.vocab}", flush=True)
        for n in sequences:
            prompts = demo_prompts(lm, n, min(8, n), device)
            for length in gen_lengths:
                for block in blocks:
                    if length % block:
                        continue
                    sampler = SamplerConfig(
                        gen_length=length, block_length=block, steps=length // 2, temperature=args.temperature
                    )
                    gflop = shape.forward_flops(n, prompts[0].shape[1] + length, block) / 1e9
                    if max_gflop is not None and gflop > max_gflop:
                        skipped.append(
                            {
                                "model": name,
                                "sequences": n,
                                "gen_length": length,
                                "block_length": block,
                                "forward_gflop": gflop,
                            }
                        )
                        print(
                            f"  B*G={n:<3} L={length:<4} block={block:<3} skipped: {gflop:.0f} GFLOP per forward "
                            f"> --max-forward-gflop {max_gflop:.0f}",
                            flush=True,
                        )
                        continue
                    row = {
                        "model": name,
                        "parameters": params,
                        "dtype": str(dtype).removeprefix("torch."),
                        **measure(lm, shape, prompts, sampler, device, budget, min_timed, dtype),
                    }
                    rows.append(row)
                    print(
                        f"  B*G={n:<3} L={length:<4} block={block:<3} {row['completion_tokens_per_second']:9.1f} tok/s "
                        f"{row['model_flops_per_second'] / 1e9:7.2f} GFLOP/s = {row['peak_ratio']:.1%} of peak "
                        f"({row['matmul_peak_flops'] / 1e9:.1f}) mem {row['memory']['peak_mib']:.0f} MiB "
                        f"[{row['mode']}]",
                        flush=True,
                    )
        del lm
        if cuda:
            torch.cuda.empty_cache()

    info["load_average_1m_end"] = common.os.getloadavg()[0]
    table = common.markdown_table(
        [
            "model",
            "params",
            "B*G",
            "L",
            "block",
            "fwd/token",
            "tokens/s",
            "GFLOP/s",
            "peak GFLOP/s",
            "of peak",
            "peak mem MiB",
            "timing",
        ],
        [
            [
                r["model"],
                f"{r['parameters'] / 1e6:.1f}M",
                r["sequences"],
                r["gen_length"],
                r["block_length"],
                f"{r['forwards_per_completion_token']:.2f}",
                f"{r['completion_tokens_per_second']:,.0f}",
                f"{r['model_flops_per_second'] / 1e9:.2f}",
                f"{r['matmul_peak_flops'] / 1e9:.1f}",
                f"{r['peak_ratio']:.1%}",
                f"{r['memory']['peak_mib']:.0f}",
                "full" if r["mode"] == "full" else r["mode"].replace("extrapolated from", "extrap."),
            ]
            for r in rows
        ],
    )
    errors = [abs(r["extrapolation_error"]) for r in rows if r["extrapolation_error"] is not None]
    notes = (
        f"steps = L/2, temperature {args.temperature}, {rows[0]['dtype']}; prompts of the demo task "
        f"(P = {rows[0]['prompt_length']}). fwd/token = denoising forward passes per completion token of one "
        "sequence. GFLOP/s counts matmul FLOPs of the model (analytic); 'of peak' divides by a dense matmul "
        "peak measured just before and just after each row (their mean). Peak memory: "
        + ("CUDA max allocated." if cuda else "process peak RSS (includes the Python/torch runtime).")
    )
    if skipped:
        notes += (
            " Skipped (one forward pass over --max-forward-gflop on this device): "
            + ", ".join(
                f"{s['model']} B*G={s['sequences']} L={s['gen_length']} block={s['block_length']} "
                f"({s['forward_gflop']:.0f} GFLOP/forward)"
                for s in skipped
            )
            + "."
        )
    if errors:
        notes += f" Full runs vs the extrapolation from their first iterations: median error {sorted(errors)[len(errors) // 2]:.0%}."
    markdown = (
        f"# Rollout throughput\n\nMachine: {common.machine_line(info)}\n\nCommand: `{common.command_line()}`\n\n"
        f"{table}\n\n{notes}\n"
    )
    payload = {
        "benchmark": "rollout_throughput",
        "machine": info,
        "command": common.command_line(),
        "quick": args.quick,
        "settings": {"budget_s": budget, "max_forward_gflop": max_gflop, "min_timed_iterations": min_timed},
        "rows": rows,
        "skipped": skipped,
        "seconds": time.perf_counter() - began,
    }
    common.write_results(args.out, "rollout_throughput", payload, markdown)
    print(markdown)
    return payload


if __name__ == "__main__":
    main()
