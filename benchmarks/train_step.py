"""Training-step cost: seconds per RL step split by phase for GRPO and IGPO at the same batch, and SFT
tokens per second, each next to a matmul peak measured in the same run.

    python benchmarks/train_step.py                   # CPU defaults (about 7 minutes on 1 busy core)
    python benchmarks/train_step.py --device cuda     # GPU: also the ~50M model, bf16
    python benchmarks/train_step.py --quick           # smoke test, seconds

RL: ``igpo.rl.trainer.train_rl`` on demo-task prompts, B prompts x G completions per step with the reference
run's shape scaled down (steps = L/2, block 32, temperature 1.2, mu = 4 inner updates, beta = 0.01 so the
reference log-probs are part of the cost). The phase seconds are the trainer's own ``RLStepMetrics.seconds``;
the first step is a warm-up and is not counted. Both algorithms start from the same weights with the same
seed. By default the model is freshly initialised, so every group is all-wrong and IGPO's repair phase runs
an inpainting rollout for every group: the worst case of its cost (``--model-dir`` takes a trained
checkpoint instead; the all-wrong fraction is reported next to the timings).

SFT: ``igpo.sft.train_sft`` on the demo task (responses padded to 64 tokens), tokens (prompt + response + padding) per second from
``SFTStepMetrics``, first step not counted; achieved FLOP/s = 3 x the analytic forward FLOPs (forward +
backward) per second.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if os.environ.get("IGPO_CODE_ROOT"):  # a probe of another revision's igpo/ (see ``code_tree``)
    sys.path.insert(0, os.environ["IGPO_CODE_ROOT"])

from benchmarks import common

PHASES = ("rollout", "reward", "repair", "logprobs", "advantages", "update")


def demo_rows(num_steps: int, count: int, seed: int = 0) -> list[dict[str, Any]]:
    from igpo.data.config import DemoTaskConfig
    from igpo.data.demo_task import generate_demo_task

    train, _ = generate_demo_task(
        DemoTaskConfig(num_train=count, num_test=1, num_steps=num_steps, reasoning="concise", seed=seed)
    )
    return train.to_pylist()


def bench_rl(lm: Any, rows: list[dict[str, Any]], args: Any, device: str, dtype: Any) -> list[dict[str, Any]]:
    """One entry per algorithm: per-phase seconds (mean with 95% interval over the timed steps)."""
    from igpo.rl.config import RLConfig
    from igpo.rl.trainer import train_rl
    from igpo.sampler import SamplerConfig

    out = []
    for algorithm in ("grpo", "igpo"):
        policy = copy.deepcopy(lm)
        config = RLConfig(
            algorithm=algorithm,
            steps=args.rl_steps + 1,
            batch_size=args.batch_size,
            group_size=args.group_size,
            mu=args.mu,
            beta=args.beta,
            learning_rate=1e-5,
            s_min=3,
            s_max=6,
            rollout=SamplerConfig(
                gen_length=args.gen_length,
                block_length=args.block_length,
                steps=args.gen_length // 2,
                temperature=1.2,
            ),
            seed=0,
        )
        peak = common.matmul_peak(device, dtype)
        with common.PeakMemory(device) as memory:
            result = train_rl(policy, rows, config, progress=False)
        timed = result.metrics[1:]  # the first step warms up allocators and kernels
        phases = {p: common.interval([getattr(m.seconds, p) for m in timed]) for p in PHASES}
        totals = [sum(getattr(m.seconds, p) for p in PHASES) for m in timed]
        entry = {
            "algorithm": algorithm,
            "config": config.model_dump(mode="json"),
            "timed_steps": len(timed),
            "sequences_per_step": args.batch_size * args.group_size,
            "matmul_peak_flops": peak,
            "phase_seconds": phases,
            "step_seconds": common.interval(totals),
            "all_wrong_fraction": common.interval([m.all_wrong_fraction for m in timed]),
            "inpaint_attempts_per_step": common.interval([m.inpaint_attempts for m in timed]),
            "completion_tokens_per_step": common.interval(
                [m.completion_length * args.batch_size * args.group_size for m in timed]
            ),
            "memory": memory.as_dict(),
        }
        out.append(entry)
        print(
            f"  {algorithm}: {entry['step_seconds']['mean']:.2f} s/step ("
            + ", ".join(f"{p} {phases[p]['mean']:.2f}" for p in PHASES)
            + f"), all-wrong {entry['all_wrong_fraction']['mean']:.2f}",
            flush=True,
        )
    return out


def bench_sft(
    lm: Any, rows: list[dict[str, Any]], batch_size: int, steps: int, pad_to: int, device: str, dtype: Any
) -> dict[str, Any]:
    """SFT tokens per second over ``steps`` timed steps (after one warm-up step)."""
    from igpo.sft import SFTConfig, SFTStepMetrics, train_sft

    metrics: list[SFTStepMetrics] = []
    model = copy.deepcopy(lm)
    config = SFTConfig(
        steps=steps + 1,
        batch_size=batch_size,
        learning_rate=1e-4,
        max_response_tokens=pad_to,
        pad_response_to=pad_to,
        seed=0,
    )
    peak = common.matmul_peak(device, dtype)
    with common.PeakMemory(device) as memory:
        train_sft(
            model,
            [r["question"] for r in rows],
            [r["reasoning"] for r in rows],
            config,
            progress=False,
            on_step=lambda _, m: metrics.append(m),
        )
    timed = metrics[1:]
    tokens, seconds = sum(m.tokens for m in timed), sum(m.seconds for m in timed)
    shape = common.ModelShape.of(model.model)
    length = timed[0].tokens // batch_size  # every batch is padded to the same width here
    flops = 3 * shape.forward_flops(batch_size, length, length) * len(timed)  # forward + 2x backward
    return {
        "batch_size": batch_size,
        "sequence_length": length,
        "timed_steps": len(timed),
        "tokens_per_second": tokens / seconds,
        "step_seconds": common.interval([m.seconds for m in timed]),
        "model_flops_per_second": flops / seconds,
        "matmul_peak_flops": peak,
        "peak_ratio": flops / seconds / peak,
        "memory": memory.as_dict(),
    }


# ------------------------------------------------------------------------- one RL step per code revision
# Each probe runs in a fresh process (so its peak RSS is its own) against a chosen revision's igpo/ package:
# ``--compare REV`` measures REV and the working tree in one run, same settings, same machine.

LLADA_VOCAB = 126_464  # LLaDA-8B's vocabulary: at this size the [micro, L, V] float32 tensors of the
# log-prob passes (259 MB at micro-batch 8, L = 64) dominate an RL step's memory, as on the real model.
PROBE_LLADA = {"d_model": 128, "n_heads": 4, "n_layers": 2, "mlp_hidden_size": 512}


def probe_model(name: str) -> Any:
    """'tiny': the benchmarks' tiny model; 'llada-vocab': the native LLaDA class, 2 layers, d = 128, LLaDA's real 126,464-token vocabulary (about 33M
    parameters, almost all embedding and LM head; the character tokenizer drives it), random weights; or a
    model directory."""
    import torch

    from igpo.models import load_model_dir, wrap_model
    from igpo.models.llada import LLaDAModelLM, build_tiny_llada
    from igpo.models.tiny import build_tiny_tokenizer

    if name == "tiny":
        return common.build_model("tiny", "cpu")
    if name != "llada-vocab":
        return load_model_dir(name, "cpu")
    tokenizer = build_tiny_tokenizer()
    config = build_tiny_llada(tokenizer, **PROBE_LLADA).config
    config.vocab_size = config.embedding_size = LLADA_VOCAB
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LLaDAModelLM(config).eval()
    return wrap_model(model, tokenizer)


def run_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """One ``train_rl`` call as ``spec`` says, in this process: ``spec["rl"]`` holds the ``RLConfig`` fields,
    ``spec["rows_file"]`` the prompts (JSON), ``spec["model"]`` the model (``probe_model``). Returns the peak RSS
    rise, log-prob passes per step (with and without gradient), model forwards per step, and the phase seconds
    of the steps after the first."""
    import torch

    import igpo
    from igpo.rl import trainer
    from igpo.rl.config import RLConfig

    lm = probe_model(spec["model"])
    passes = {"no_grad": 0, "grad": 0}
    original = trainer.completion_logprobs

    def counting(*args: Any, **kwargs: Any) -> Any:
        passes["grad" if torch.is_grad_enabled() else "no_grad"] += 1
        return original(*args, **kwargs)

    trainer.completion_logprobs = counting
    forwards = [0]
    lm.model.register_forward_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    config = RLConfig(**spec["rl"])
    rows = json.loads(Path(spec["rows_file"]).read_text())
    with common.PeakMemory("cpu") as memory:
        result = trainer.train_rl(lm, rows, config, progress=False)
    steps = len(result.metrics)
    timed = result.metrics[1:] or result.metrics
    return {
        "igpo_package": str(Path(igpo.__file__).parent),
        "peak_rise_mib": memory.as_dict()["rise_mib"],
        "logprob_passes_per_step": {k: v / steps for k, v in passes.items()},
        "model_forwards_per_step": forwards[0] / steps,
        "phase_seconds": {p: sum(getattr(m.seconds, p) for m in timed) / len(timed) for p in PHASES},
        "step_seconds": sum(sum(getattr(m.seconds, p) for p in PHASES) for m in timed) / len(timed),
        "all_wrong_fraction": sum(m.all_wrong_fraction for m in timed) / len(timed),
        "completion_length": sum(m.completion_length for m in timed) / len(timed),
    }


def code_tree(rev: str, into: Path) -> tuple[Path, str]:
    """``rev``'s igpo/ package extracted under ``into`` (git archive), and the revision's short hash."""
    short = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], check=True, capture_output=True,
                           text=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "igpo"], check=True, capture_output=True).stdout
    target = into / short
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target, short


def probe(spec: dict[str, Any], code_root: Path | None) -> dict[str, Any]:
    """``run_probe(spec)`` in a fresh process, importing igpo/ from ``code_root`` (None: this tree)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec.get("threads", 1)))
    env.pop("IGPO_CODE_ROOT", None)
    if code_root is not None:
        env["IGPO_CODE_ROOT"] = str(code_root)
    done = subprocess.run([sys.executable, __file__, "--probe", json.dumps(spec)], env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"probe {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def revision_specs(model: str, quick: bool, rows_file: Path) -> list[dict[str, Any]]:
    """What ``--compare`` runs. 'llada-vocab': GRPO with mu = 1 and 2 (beta > 0: a reference pass too), the
    memory view. 'demo' or a model directory: GRPO and IGPO with the demo's RL config and prompts, the time view."""
    if model == "llada-vocab":
        rows_file.write_text(json.dumps(demo_rows(num_steps=3, count=256)))
        rollout = {"gen_length": 16 if quick else 64, "block_length": 8, "steps": 8 if quick else 32,
                   "temperature": 1.2}
        rl = {"algorithm": "grpo", "steps": 1 if quick else 2, "batch_size": 2, "group_size": 8,
              "micro_batch_size": 8, "beta": 0.01, "learning_rate": 1e-5, "s_min": 3, "s_max": 6, "seed": 0,
              "rollout": rollout}
        return [{"model": model, "rows_file": str(rows_file), "rl": rl | {"mu": mu}} for mu in ((1,) if quick else (1, 2))]
    from benchmarks import demo_model

    directory = str(demo_model.demo_checkpoint()) if model == "demo" else model
    rows_file.write_text(json.dumps(demo_model.demo_rl_rows()))
    rl = {k: v for k, v in demo_model.demo_rl_config().items() if k not in ("checkpoint", "progress")}
    rl["steps"] = 2 if quick else 4
    return [{"model": directory, "rows_file": str(rows_file), "rl": rl | {"algorithm": a}} for a in ("grpo", "igpo")]


def bench_revisions(rev: str, quick: bool, model: str = "llada-vocab") -> list[dict[str, Any]]:
    """``revision_specs`` run with ``rev``'s code and this tree's, each in a fresh process, alternating."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        old_root, short = code_tree(rev, Path(tmp))
        for spec in revision_specs(model, quick, Path(tmp) / "rows.json"):
            for label, root in ((short, old_root), ("this tree", None)):
                entry = {"code": label, **spec, **probe(spec, root)}
                out.append(entry)
                print(f"  {label} {spec['rl']['algorithm']} mu={spec['rl'].get('mu', 1)}: "
                      f"{entry['step_seconds']:.2f} s/step, peak +{entry['peak_rise_mib']:.0f} MiB, log-prob passes/step "
                      f"{entry['logprob_passes_per_step']}", flush=True)
    return out


def compare_revisions(args: Any) -> dict[str, Any]:
    """The ``--compare REV`` run: ``bench_revisions`` with the machine and command, as JSON and markdown
    (``rl_step_revisions`` for the LLaDA-vocabulary model, ``rl_step_revisions_demo`` for the demo model)."""
    info = common.machine_info("cpu")
    print(common.machine_line(info), flush=True)
    began = time.perf_counter()
    entries = bench_revisions(args.compare, args.quick, args.compare_model)
    payload = {"benchmark": "rl_step_revisions", "machine": info, "command": common.command_line(),
               "quick": args.quick, "model": args.compare_model,
               "compared": {"rev": args.compare, "label": args.compare_label}, "probes": entries,
               "seconds": time.perf_counter() - began}
    markdown = revisions_markdown(payload)
    name = "rl_step_revisions" + ("" if args.compare_model == "llada-vocab" else "_demo")
    common.write_results(args.out, name, payload, markdown)
    print(markdown)
    return payload


def revisions_markdown(payload: dict[str, Any]) -> str:
    entries, info = payload["probes"], payload["machine"]
    table = common.markdown_table(
        ["code", "algorithm", "mu", "s/step", "rollout s", "repair s", "logprobs s", "update s",
         "log-prob passes/step (no grad + grad)", "model forwards/step", "peak RSS rise MiB"],
        [
            [e["code"], e["rl"]["algorithm"].upper(), e["rl"].get("mu", 1), f"{e['step_seconds']:.2f}",
             *[f"{e['phase_seconds'][p]:.2f}" for p in ("rollout", "repair", "logprobs", "update")],
             f"{e['logprob_passes_per_step']['no_grad']:g} + {e['logprob_passes_per_step']['grad']:g}",
             f"{e['model_forwards_per_step']:g}", f"{e['peak_rise_mib']:.0f}"]
            for e in entries
        ],
    )
    first, compared = entries[0], payload.get("compared", {})
    rl, rollout = first["rl"], first["rl"]["rollout"]
    label = f" ({compared['label']})" if compared.get("label") else ""
    model = (
        "the native LLaDA class, 2 layers, d = 128, LLaDA's 126,464-token vocabulary, random weights, float32"
        if payload.get("model", "llada-vocab") == "llada-vocab"
        else "the demo's SFT model (benchmarks/demo_model.py: trained as make demo trains it) on the demo's RL prompts"
    )
    return (
        f"# One RL step, two code revisions\n\nMachine: {common.machine_line(info)}\n\nCommand: "
        f"`{payload['command']}`\n\n{table}\n\n`{first['code']}` is the revision compared with{label}. "
        f"B = {rl['batch_size']} x G = {rl['group_size']}, micro-batch {rl.get('micro_batch_size') or 'all'}, "
        f"L = {rollout['gen_length']}, block {rollout['block_length']}, {rollout['steps']} denoising steps, "
        f"T = {rollout['temperature']}, beta = {rl.get('beta')}, {rl['steps']} step(s) per run "
        f"({'' if rl['steps'] > 1 else 'no '}warm-up step excluded from the seconds); {model}. Each row is a fresh "
        "process: peak RSS rise over the whole train_rl call (rollouts, AdamW state, gradients and the reference "
        "copy included); log-prob passes = completion_logprobs calls per step (each one model forward over a "
        "micro-batch); model forwards include the rollouts'. The seconds are single runs on a shared machine (the "
        "load average is in the machine line): read the passes and the memory, not small time differences.\n"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=None, help="comma-separated tiny, medium (default: tiny on CPU, both on CUDA)"
    )
    parser.add_argument(
        "--rl-models", default=None, help="models timed in RL (default: tiny on CPU, both on CUDA)"
    )
    parser.add_argument(
        "--model-dir", default=None, help="start RL/SFT from this model directory instead of 'tiny'"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="prompts per RL step B (default 8)")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt G")
    parser.add_argument("--gen-length", type=int, default=None, help="completion length L (default 64)")
    parser.add_argument("--block-length", type=int, default=None, help="block length (default 32)")
    parser.add_argument("--mu", type=int, default=None, help="inner updates per RL step (default 4)")
    parser.add_argument(
        "--beta", type=float, default=0.01, help="KL weight (> 0 adds the reference log-probs)"
    )
    parser.add_argument(
        "--rl-steps", type=int, default=None, help="timed RL steps after one warm-up (default 3)"
    )
    parser.add_argument(
        "--sft-steps", type=int, default=None, help="timed SFT steps after one warm-up (default 5)"
    )
    parser.add_argument(
        "--dtype", default=None, help="float32 or bfloat16 (default: float32 on CPU, bfloat16 on CUDA)"
    )
    parser.add_argument(
        "--compare", default=None, metavar="REV",
        help="instead: one RL step's peak memory, log-prob passes and phase seconds with REV's igpo/ and with "
        "this tree's (each in a fresh process), written to rl_step_revisions.{json,md}",
    )
    parser.add_argument(
        "--compare-model", default="llada-vocab",
        help="with --compare: 'llada-vocab' (GRPO, mu 1 and 2: memory and passes) or 'demo' / a model directory "
        "(GRPO and IGPO with the demo's RL config: time by phase)",
    )
    parser.add_argument("--compare-label", default="", help="what the --compare revision is, for the result file")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)  # internal: one run_probe, JSON out
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    if args.probe:
        print(json.dumps(run_probe(json.loads(args.probe))))
        return {}
    if args.compare:
        return compare_revisions(args)
    from igpo.models import DTYPES, load_model_dir

    device = common.resolve_device(args.device)
    cuda = device.startswith("cuda")
    dtype = DTYPES[args.dtype or ("bfloat16" if cuda else "float32")]
    q = args.quick
    args.batch_size = args.batch_size or (2 if q else 8)
    args.group_size = 2 if q else args.group_size
    args.gen_length = args.gen_length or (16 if q else 64)
    args.block_length = args.block_length or (8 if q else 32)
    args.mu = args.mu or (1 if q else 4)
    args.rl_steps = args.rl_steps or (1 if q else 3)
    args.sft_steps = args.sft_steps or (1 if q else 5)
    default_models = "tiny,medium" if cuda else "tiny"
    sft_models = (args.models or ("tiny" if q else "tiny,medium" if not cuda else default_models)).split(",")
    rl_models = (args.rl_models or ("tiny" if q else default_models)).split(",")

    info = common.machine_info(device)
    print(common.machine_line(info), flush=True)
    began = time.perf_counter()
    rows = demo_rows(num_steps=3, count=256)
    payload: dict[str, Any] = {
        "benchmark": "train_step",
        "machine": info,
        "command": common.command_line(),
        "quick": q,
        "rl": [],
        "sft": [],
    }
    for name in dict.fromkeys(sft_models + rl_models):
        if args.model_dir:
            lm = load_model_dir(args.model_dir, device)
            lm.model.to(dtype)
            name = Path(args.model_dir).name
        else:
            lm = common.build_model(name, device, dtype)
        params = common.parameter_count(lm)
        print(f"{name}: {params / 1e6:.2f}M parameters", flush=True)
        if name in rl_models or args.model_dir:
            for entry in bench_rl(lm, rows, args, device, dtype):
                payload["rl"].append({"model": name, "parameters": params, **entry})
        if name in sft_models or args.model_dir:
            batch = 16 if name == "tiny" else (16 if cuda else 8)
            steps = args.sft_steps if (name == "tiny" or cuda or q) else min(args.sft_steps, 2)
            entry = bench_sft(lm, rows, 2 if q else batch, steps, 32 if q else 64, device, dtype)
            payload["sft"].append({"model": name, "parameters": params, **entry})
            print(
                f"  sft: {entry['tokens_per_second']:,.0f} tokens/s, {entry['peak_ratio']:.1%} of matmul peak",
                flush=True,
            )
        if args.model_dir:
            break
    info["load_average_1m_end"] = common.os.getloadavg()[0]
    payload["seconds"] = time.perf_counter() - began

    rl_table = common.markdown_table(
        ["model", "algorithm", "B x G", "step s", *PHASES, "all-wrong", "inpainted seqs"],
        [
            [
                e["model"],
                e["algorithm"].upper(),
                f"{e['config']['batch_size']} x {e['config']['group_size']}",
                common.fmt_interval(e["step_seconds"], 2),
                *[f"{e['phase_seconds'][p]['mean']:.2f}" for p in PHASES],
                f"{e['all_wrong_fraction']['mean']:.2f}",
                f"{e['inpaint_attempts_per_step']['mean']:.0f}",
            ]
            for e in payload["rl"]
        ],
    )
    sft_table = common.markdown_table(
        ["model", "params", "batch x length", "tokens/s", "s/step", "GFLOP/s", "of matmul peak"],
        [
            [
                e["model"],
                f"{e['parameters'] / 1e6:.1f}M",
                f"{e['batch_size']} x {e['sequence_length']}",
                f"{e['tokens_per_second']:,.0f}",
                common.fmt_interval(e["step_seconds"], 2),
                f"{e['model_flops_per_second'] / 1e9:.2f}",
                f"{e['peak_ratio']:.1%}",
            ]
            for e in payload["sft"]
        ],
    )
    rl0 = payload["rl"][0]["config"] if payload["rl"] else {}
    markdown = (
        f"# Training step\n\nMachine: {common.machine_line(info)}\n\nCommand: `{common.command_line()}`\n\n"
        f"## RL step (seconds per phase, mean over {args.rl_steps} timed steps; step s with 95% interval)\n\n"
        f"{rl_table}\n\nL = {rl0.get('rollout', {}).get('gen_length')}, block {rl0.get('rollout', {}).get('block_length')}, "
        f"steps L/2, T = 1.2, mu = {args.mu}, beta = {args.beta}. 'inpainted seqs' = IGPO's extra generated "
        "completions per step (G per all-wrong group).\n\n"
        f"## SFT\n\n{sft_table}\n\nGFLOP/s = 3 x analytic forward matmul FLOPs per second; the peak is a dense "
        "matmul measured just before each row.\n"
    )
    common.write_results(args.out, "train_step", payload, markdown)
    print(markdown)
    return payload


if __name__ == "__main__":
    main()
