"""The exact sampler against LLaDA's reference generation algorithm on the LLaDA architecture: the native class
(``igpo.models.llada``) with random weights and the real 126,464-token vocabulary, and optionally a trained demo
model directory.

    python benchmarks/llada_sampler.py                      # CPU default (6.5 minutes measured on 1 thread)
    python benchmarks/llada_sampler.py --model-dir DIR      # also the trained demo model (its prompts, L x1-x4)
    python benchmarks/llada_sampler.py --quick              # smoke test (well under a minute)

The reference (``reference_generate``) is LLaDA's published ``generate()`` re-implemented here from its
description (Nie et al. 2025, Appendix B; no code copied): semi-autoregressive blocks; at every step one full
forward over prompt + completion (logits at every position, none dropped); the logits cast to float64 and,
at T > 0, divided element-wise into ``exp(logits) / (-log U)^T`` with U uniform in float64 over the whole
vocabulary at every position (its ``add_gumbel_noise``), the argmax of that taken as the prediction; float64
softmax confidences of the predictions over the whole sequence; positions after the current block and
positions that are not masks get confidence -inf; each row commits its ``k`` most confident positions with
``torch.topk``, ``k`` from the per-step transfer counts of its masks in the block (``get_num_transfer_tokens``:
``count // steps`` each step, the remainder to the first steps). Like the original it does not exclude the
mask token from the candidates (``igpo.sampler`` does), which can only matter if a model predicts [MASK].

Modes of ``igpo.sampler.SamplerConfig`` timed next to it: exact with early exit off and on (``early_exit``,
when the installed sampler has the field), and the fast modes (prefix / dual KV cache, confidence threshold,
and threshold with a cache). Every mode of one setting runs once per repetition, in a fixed interleaved order,
on the same prompts with a fresh ``torch.Generator`` of the same seed; ratios are per repetition (reference
seconds / mode seconds), reported as mean with a 95% interval. Greedy (T = 0) token identity of each mode to
the reference is reported per row. On random weights no confidence reaches a 0.9 threshold (threshold decoding
commits one token per iteration: L forwards, its worst case) and stop tokens are as rare as any other token,
so early exit cannot end rows early there; the demo model (``--model-dir``) is where both act.

Random-weight model (default): d_model 512, 8 heads, 4 layers, MLP 1536, vocabulary 126,464 (untied LM head,
as LLaDA-8B): 143.2M parameters, 129.5M of them the embedding and the LM head. Its tokenizer
(``llada_tokenizer``) is character-level over printable ASCII with LLaDA's special tokens at LLaDA's ids (from
the model config) and filler tokens for the other ids, so any sampled id decodes.

Default settings, sized for at most about 12 minutes on one busy core (6.5 minutes measured at load 1.1) (one partial timing: a reference step costs
0.76 s at T = 0 and 3.1 s at T = 1.2, an exact step 0.36 s and 0.48 s): N = 2 random prompts of P = 32 tokens,
L = 64, block 32, 32 steps, T in {0, 1.2}, 3 repetitions; the fast modes at T = 1.2 only, without the threshold
alone (on random weights every threshold mode is its worst case; the cached ones show it). The demo model
(``--model-dir``): N = 16 of the demo's held-out questions (configs/demo_tiny_cpu.yaml, easy and hard) of
their most frequent prompt length (the reference takes no padding), L in {32, 64, 128},
block 16, steps L/2, every mode at both temperatures, with the fraction correct (the shared verifier).
``--quick``: the same model with d_model 64 and 2 layers (the real vocabulary), P = 8, L = 16, block 8.
"""

from __future__ import annotations

import os
import string
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

# LLaDA's special tokens and their ids relative to the config's (LLaDA-8B: bos 126080 = eos - 1; mask 126336;
# <|start_header_id|> 126346, <|end_header_id|> 126347, <|eot_id|> 126348 = mask + 10, 11, 12).
BOS, EOS, MASK = "<|startoftext|>", "<|endoftext|>", "<|mdm_mask|>"
START_HEADER, END_HEADER, EOT = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"
CHAT_TEMPLATE = (
    BOS + "{% for message in messages %}" + START_HEADER + "{{ message['role'] }}" + END_HEADER
    + "\n\n{{ message['content'] }}" + EOT + "{% endfor %}"
    "{% if add_generation_prompt %}" + START_HEADER + "assistant" + END_HEADER + "\n\n{% endif %}"
)

# The random-weight model (about 143M parameters with the real vocabulary).
MODEL_SHAPE = {"d_model": 512, "n_heads": 8, "n_layers": 4, "mlp_hidden_size": 1536}
QUICK_SHAPE = {"d_model": 64, "n_heads": 4, "n_layers": 2, "mlp_hidden_size": 128}


def llada_tokenizer(config: Any) -> Any:
    """A character-level tokenizer over ``config.rows`` ids: printable ASCII at 0..99, LLaDA's special tokens at
    the config's ``eos_token_id`` / ``mask_token_id`` (and bos, header and eot ids at LLaDA's offsets from them),
    a filler token ``<|rN|>`` for every other id. LLaDA's chat template. Stands in for LLaDA's BPE tokenizer where
    only the ids matter (the samplers and trainers read the special ids, never the words)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = {
        EOS: config.eos_token_id,
        BOS: config.eos_token_id - 1,
        MASK: config.mask_token_id,
        START_HEADER: config.mask_token_id + 10,
        END_HEADER: config.mask_token_id + 11,
        EOT: config.mask_token_id + 12,
    }
    chars = string.printable
    taken = set(specials.values())
    if len(taken) != len(specials) or max(taken) >= config.rows or min(taken) < len(chars):
        raise ValueError(f"special ids {specials} must be distinct, >= {len(chars)} and < {config.rows}")
    vocab = {f"<|r{i}|>": i for i in range(config.rows)}
    for i, c in enumerate(chars):
        del vocab[f"<|r{i}|>"]
        vocab[c] = i
    for token, i in specials.items():
        del vocab[f"<|r{i}|>"]
        vocab[token] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=EOS))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # newlines too
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, bos_token=BOS, mask_token=MASK, unk_token=EOS,
        additional_special_tokens=[START_HEADER, END_HEADER, EOT],
    )
    fast.chat_template = CHAT_TEMPLATE
    wrong = {t: (i, fast.convert_tokens_to_ids(t)) for t, i in specials.items() if fast.convert_tokens_to_ids(t) != i}
    assert not wrong, f"special tokens landed on other ids: {wrong}"
    return fast


def random_llada(shape: dict[str, int], vocab: int | None = None, seed: int = 0, device: str = "cpu") -> Any:
    """``DiffusionLM`` of a freshly initialised native LLaDA (PyTorch's default init under a forked RNG, as
    ``build_tiny_llada``) with LLaDA's special ids; ``vocab`` None = the real 126,464 rows."""
    import torch

    from igpo.models import wrap_model
    from igpo.models.llada import LLaDAConfig, LLaDAModelLM

    config = LLaDAConfig(**shape, max_sequence_length=4096, **scaled_vocab(vocab))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LLaDAModelLM(config)
    return wrap_model(model.to(device).eval(), llada_tokenizer(config))


def scaled_vocab(vocab: int | None) -> dict[str, int]:
    """Vocabulary size and special ids: LLaDA's own, or ``vocab`` rows with LLaDA's special ids at the same
    distance from the end of the vocabulary (mask = rows - 128, eos = rows - 383)."""
    from igpo.models.llada import LLaDAConfig

    real = LLaDAConfig()
    if vocab is None:
        return {}
    shift = real.rows - vocab
    return {
        "vocab_size": vocab, "embedding_size": vocab, "mask_token_id": real.mask_token_id - shift,
        "eos_token_id": real.eos_token_id - shift, "pad_token_id": real.pad_token_id - shift,
    }


# ----------------------------------------------------------------------------------------- reference algorithm


def transfer_counts(mask_counts: Any, steps: int) -> Any:
    """[N, steps] tokens to commit per step: ``count // steps`` each, one more for the first ``count % steps``."""
    import torch

    counts = (mask_counts // steps)[:, None].repeat(1, steps)
    for row, extra in enumerate((mask_counts % steps).tolist()):
        counts[row, :extra] += 1
    return counts.to(torch.long)


def gumbel_noise_float64(logits: Any, temperature: float, generator: Any) -> Any:
    """``exp(logits) / (-log U)^T`` in float64 over every position and the whole vocabulary; the logits as they
    are at T = 0. Its argmax is a sample of softmax(logits / T) (Gumbel-max in the exp domain)."""
    import torch

    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    uniform = torch.rand(logits.shape, generator=generator, dtype=torch.float64, device=logits.device)
    return logits.exp() / (-torch.log(uniform)) ** temperature


def reference_generate(
    model: Any,  # the HF module (called with input_ids only: the reference knows no padding or cache)
    prompt_ids: Any,  # [N, P]
    mask_id: int,
    gen_length: int,
    block_length: int,
    steps: int,
    temperature: float,
    generator: Any,
) -> Any:
    """LLaDA's reference low-confidence remasking (see the module docstring); returns the completions [N, L]."""
    import torch

    n, p = prompt_ids.shape
    x = torch.cat([prompt_ids, torch.full((n, gen_length), mask_id, dtype=torch.long, device=prompt_ids.device)], 1)
    num_blocks = gen_length // block_length
    steps_per_block = steps // num_blocks
    with torch.no_grad():
        for k in range(num_blocks):
            hi = p + (k + 1) * block_length
            counts = transfer_counts((x[:, hi - block_length : hi] == mask_id).sum(1), steps_per_block)  # [N, S]
            for s in range(steps_per_block):
                masked = x == mask_id  # [N, P+L]
                logits = model(input_ids=x).logits  # [N, P+L, V]: every position
                x0 = gumbel_noise_float64(logits, temperature, generator).argmax(-1)  # [N, P+L]
                probs = torch.softmax(logits.to(torch.float64), dim=-1)  # [N, P+L, V]
                confidence = probs.gather(-1, x0[..., None]).squeeze(-1)  # [N, P+L]
                confidence[:, hi:] = -torch.inf
                x0 = torch.where(masked, x0, x)
                confidence = torch.where(masked, confidence, torch.full_like(confidence, -torch.inf))
                transfer = torch.zeros_like(masked)
                for row in range(n):
                    _, chosen = torch.topk(confidence[row], k=int(counts[row, s]))
                    transfer[row, chosen] = True
                x[transfer] = x0[transfer]
    return x[:, p:]


# ----------------------------------------------------------------------------------------------- modes


def has_early_exit() -> bool:
    from igpo.sampler import SamplerConfig

    return "early_exit" in SamplerConfig.model_fields


def mode_configs(
    gen_length: int, block_length: int, steps: int, threshold: float, fast: bool, threshold_alone: bool = True
) -> dict[str, Any]:
    """name -> SamplerConfig fields (temperature is set per run); 'reference' is the re-implementation above.
    ``threshold_alone``: also the threshold without a cache (left out on random weights, where every threshold
    mode runs its worst case of one token per iteration and the cached ones show that cost already)."""
    exact: dict[str, Any] = {"gen_length": gen_length, "block_length": block_length, "steps": steps}
    modes: dict[str, Any] = {"reference": None}
    if has_early_exit():
        modes["exact, early exit off"] = {**exact, "early_exit": False}
        modes["exact, early exit on"] = {**exact, "early_exit": True}
    else:
        modes["exact"] = exact
    if fast:
        modes["prefix cache"] = {**exact, "cache": "prefix"}
        modes["dual cache"] = {**exact, "cache": "dual"}
        if threshold_alone:
            modes[f"threshold {threshold}"] = {**exact, "threshold": threshold}
        modes[f"prefix + threshold {threshold}"] = {**exact, "cache": "prefix", "threshold": threshold}
        modes[f"dual + threshold {threshold}"] = {**exact, "cache": "dual", "threshold": threshold}
    return modes


def run_mode(lm: Any, counter: common.ForwardCounter, prompts: Any, mask: Any, fields: Any, temperature: float,
             seed: int, reference_steps: tuple[int, int, int]) -> dict[str, Any]:
    """One generation: seconds, forwards, completions [N, L]."""
    import torch

    from igpo.sampler import SamplerConfig, generate

    generator = torch.Generator(device=prompts.device).manual_seed(seed)
    before = counter.calls
    start = time.perf_counter()
    if fields is None:
        if mask is not None and not bool(mask.all()):
            raise ValueError("the reference takes no padding mask: give it prompts of equal length")
        gen_length, block_length, steps = reference_steps
        out = reference_generate(lm.model, prompts, lm.tokens.mask_id, gen_length, block_length, steps,
                                 temperature, generator)
    else:
        config = SamplerConfig(**fields, temperature=temperature)
        out = generate(lm, prompts, config, generator, prompt_mask=mask)
    common.synchronize(str(prompts.device))
    return {"seconds": time.perf_counter() - start, "forwards": counter.calls - before, "completions": out}


def compare(
    lm: Any, prompts: Any, mask: Any, modes_by_temperature: dict[float, dict[str, Any]], repetitions: int,
    reference_steps: tuple[int, int, int], seed: int, verify: Any = None,
) -> dict[str, Any]:
    """Every (temperature, mode) once per repetition, interleaved; per-mode seconds, forwards, ratios to the
    reference and token identity to the reference and to the first exact mode (same seed)."""
    import torch

    runs: dict[tuple[float, str], list[dict[str, Any]]] = {
        (t, m): [] for t, modes in modes_by_temperature.items() for m in modes
    }
    with common.ForwardCounter(lm) as counter:
        for rep in range(repetitions):
            for t, modes in modes_by_temperature.items():
                for name, fields in modes.items():
                    run = run_mode(lm, counter, prompts, mask, fields, t, seed, reference_steps)
                    runs[(t, name)].append(run)
                    print(f"  rep {rep + 1}/{repetitions} T={t} {name}: {run['seconds']:.2f} s, "
                          f"{run['forwards']} forwards", flush=True)
    n, length = prompts.shape[0], reference_steps[0]
    from igpo.rl.loss import completion_mask

    def text(completions: Any) -> Any:
        """The completion up to and including its first stop token (-1 after it): what decoding, rewards and
        the loss read; early exit changes only what comes after."""
        return torch.where(completion_mask(completions, lm.tokens.stop_ids), completions, -1)

    out: dict[str, Any] = {}
    for t, modes in modes_by_temperature.items():
        baseline = next(m for m in modes if m != "reference")
        ref = runs[(t, "reference")]
        rows = {}
        for name in modes:
            mine = runs[(t, name)]
            completions = text(mine[0]["completions"])
            exact_text, reference_text = text(runs[(t, baseline)][0]["completions"]), text(ref[0]["completions"])
            entry: dict[str, Any] = {
                "seconds": common.interval([r["seconds"] for r in mine]),
                "forwards": mine[0]["forwards"],
                "completion_tokens_per_second": common.interval([n * length / r["seconds"] for r in mine]),
                "speedup_over_reference": common.interval(
                    [a["seconds"] / b["seconds"] for a, b in zip(ref, mine, strict=True)]
                ),
                "speedup_over_exact": common.interval(
                    [a["seconds"] / b["seconds"] for a, b in zip(runs[(t, baseline)], mine, strict=True)]
                ),
                "rows_identical_to_reference": _rows_equal(completions, reference_text),
                "rows_identical_to_exact": _rows_equal(completions, exact_text),
                "token_agreement_with_exact": float((completions == exact_text).float().mean()),
                "rows_same_across_repetitions": all(torch.equal(text(r["completions"]), completions) for r in mine[1:]),
                "stop_tokens": int(
                    torch.isin(mine[0]["completions"], torch.tensor(lm.tokens.stop_ids)).sum()
                ),
            }
            if verify is not None:
                entry["correct_fraction"] = verify(mine[0]["completions"])
            rows[name] = entry
        out[str(t)] = rows
    return out


def _rows_equal(a: Any, b: Any) -> int:
    return int((a == b).all(dim=1).sum())


# ------------------------------------------------------------------------------------------------- main


def random_prompts(lm: Any, rows: int, length: int, seed: int) -> Any:
    """[rows, length] ids drawn from the ordinary tokens (below every special id), no padding."""
    import torch

    low = min(lm.tokens.mask_id, lm.tokens.eos_id, lm.tokens.eot_id, lm.tokens.pad_id) - 1
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, low, (rows, length), generator=generator)


def bench_random(args: Any) -> dict[str, Any]:
    lm = random_llada(QUICK_SHAPE if args.quick else MODEL_SHAPE)
    params = common.parameter_count(lm)
    print(f"random-weight LLaDA: {params / 1e6:.1f}M parameters, vocabulary {lm.model.config.rows}", flush=True)
    prompts = random_prompts(lm, args.rows, args.prompt_length, args.seed)
    modes = {t: mode_configs(args.gen_length, args.block_length, args.steps, args.threshold,
                             t in args.fast_temperatures, threshold_alone=False) for t in args.temperatures}
    results = compare(lm, prompts, None, modes, args.repetitions,
                      (args.gen_length, args.block_length, args.steps), args.seed)
    return {
        "model": "random-weight native LLaDA", "shape": QUICK_SHAPE if args.quick else MODEL_SHAPE,
        "vocabulary": lm.model.config.rows, "parameters": params, "rows": args.rows,
        "prompt_length": args.prompt_length, "gen_length": args.gen_length, "block_length": args.block_length,
        "steps": args.steps, "results": results,
    }


def bench_demo(args: Any) -> list[dict[str, Any]]:
    """The trained demo model on its test prompts of one length (the reference takes no padding), at the
    demo's generation length and longer ones."""
    import torch

    from benchmarks.demo_model import demo_test_rows
    from igpo.models import load_model_dir
    from igpo.prompting import encode_prompts
    from igpo.rl.rewards import correctness_reward

    lm = load_model_dir(args.model_dir, "cpu")
    lm.model.eval()
    rows = demo_test_rows()  # the demo's held-out questions, easy and hard
    _, mask = encode_prompts(lm.tokenizer, [r["question"] for r in rows], lm.tokens.pad_id)
    lengths = mask.sum(1)  # [rows]
    common_length = int(torch.mode(lengths).values)  # the most frequent prompt length: no padding needed
    chosen = [rows[i] for i in (lengths == common_length).nonzero().squeeze(1)[: args.demo_rows].tolist()]
    prompts, _ = encode_prompts(lm.tokenizer, [r["question"] for r in chosen], lm.tokens.pad_id)
    answers = [r["answer"] for r in chosen]

    def verify(completions: torch.Tensor) -> float:
        from igpo.prompting import decode_completions

        texts = decode_completions(lm.tokenizer, completions, lm.tokens.stop_ids)
        return sum(correctness_reward(texts, answers)) / len(texts)

    out = []
    for gen_length in args.demo_gen_lengths:
        steps = gen_length // 2
        print(f"demo model {Path(args.model_dir).name}: L = {gen_length}, block {args.demo_block_length}", flush=True)
        modes = {t: mode_configs(gen_length, args.demo_block_length, steps, args.threshold, fast=True)
                 for t in args.temperatures}
        results = compare(lm, prompts, None, modes, args.repetitions,
                          (gen_length, args.demo_block_length, steps), args.seed, verify)
        out.append({"model": str(args.model_dir), "parameters": common.parameter_count(lm), "rows": len(answers),
                    "prompt_length": prompts.shape[1], "gen_length": gen_length,
                    "block_length": args.demo_block_length, "steps": steps, "results": results})
    return out


def table(entry: dict[str, Any]) -> str:
    rows = []
    for t, modes in entry["results"].items():
        for name, e in modes.items():
            rows.append([
                t, name, common.fmt_interval(e["seconds"], 2), e["forwards"],
                f"{e['completion_tokens_per_second']['mean']:,.1f}", common.fmt_interval(e["speedup_over_reference"], 2),
                common.fmt_interval(e["speedup_over_exact"], 2), f"{e['rows_identical_to_reference']}/{entry['rows']}",
                f"{e['rows_identical_to_exact']}/{entry['rows']}", f"{e['token_agreement_with_exact']:.3f}",
                e["stop_tokens"], f"{e['correct_fraction']:.2f}" if "correct_fraction" in e else "-",
            ])
    return common.markdown_table(
        ["T", "mode", "seconds", "forwards", "tokens/s", "x reference", "x exact", "= reference", "= exact",
         "token agreement", "stop tokens", "correct"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="sequences per generation N (default 2)")
    parser.add_argument("--prompt-length", type=int, default=None, help="prompt tokens P (default 32)")
    parser.add_argument("--gen-length", type=int, default=None, help="completion length L (default 64; --quick 16)")
    parser.add_argument("--block-length", type=int, default=32, help="block length (default 32; --quick 8)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default L / 2)")
    parser.add_argument("--threshold", type=float, default=0.9, help="confidence threshold of the fast modes")
    parser.add_argument("--repetitions", type=int, default=None, help="interleaved repetitions (default 3)")
    parser.add_argument("--temperatures", default="0,1.2", help="comma-separated temperatures")
    parser.add_argument(
        "--fast-temperatures", default="1.2",
        help="random-weight model: temperatures at which the fast modes run too ('' = none; the demo model: all)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model-dir", default=None,
        help="also a trained demo model: a directory, or 'demo' (benchmarks/demo_model.py: trained as make demo does)",
    )
    parser.add_argument(
        "--demo-only", action="store_true",
        help="only the --model-dir model, written to llada_sampler_demo.{json,md} (the random-weight run is kept)",
    )
    parser.add_argument("--demo-gen-lengths", default="32,64,128", help="demo model: completion lengths")
    parser.add_argument("--demo-block-length", type=int, default=16, help="demo model: block length")
    parser.add_argument("--demo-rows", type=int, default=16, help="demo model: test prompts N (of one length)")
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    if args.device != "cpu":
        raise SystemExit("llada_sampler.py runs on CPU (its defaults are sized for one core)")
    q = args.quick
    args.rows = args.rows or 2
    args.prompt_length = args.prompt_length or (8 if q else 32)
    args.gen_length = args.gen_length or (16 if q else 64)
    args.block_length = 8 if q and args.block_length == 32 else args.block_length
    args.steps = args.steps or args.gen_length // 2
    args.repetitions = args.repetitions or (1 if q else 3)
    args.temperatures = [float(t) for t in args.temperatures.split(",")]
    args.fast_temperatures = [float(t) for t in args.fast_temperatures.split(",") if t]
    args.demo_gen_lengths = [int(x) for x in args.demo_gen_lengths.split(",")]
    if args.demo_only and not args.model_dir:
        raise SystemExit("--demo-only needs --model-dir")
    if args.model_dir == "demo":
        from benchmarks import demo_model

        args.model_dir = demo_model.demo_checkpoint()
    args.model_dir = Path(args.model_dir) if args.model_dir else None

    info = common.machine_info(args.device)
    print(common.machine_line(info), flush=True)
    began = time.perf_counter()
    payload: dict[str, Any] = {
        "benchmark": "llada_sampler", "machine": info, "command": common.command_line(), "quick": q,
        "early_exit_available": has_early_exit(), "threshold": args.threshold,
        "temperatures": args.temperatures, "repetitions": args.repetitions,
        "random": None if args.demo_only else bench_random(args),
        "demo": bench_demo(args) if args.model_dir else [],
    }
    info["load_average_1m_end"] = os.getloadavg()[0]
    payload["seconds"] = time.perf_counter() - began
    sections = []
    if (r := payload["random"]) is not None:
        sections.append(
            f"## Random-weight native LLaDA ({r['parameters'] / 1e6:.1f}M parameters, vocabulary {r['vocabulary']:,})"
            f"\n\nN = {r['rows']}, P = {r['prompt_length']}, L = {r['gen_length']}, block {r['block_length']}, "
            f"{r['steps']} steps, {args.repetitions} interleaved repetitions.\n\n{table(r)}"
        )
    for d in payload["demo"]:
        sections.append(
            f"## Demo model `{Path(d['model']).name}` ({d['parameters'] / 1e6:.2f}M parameters)\n\nN = {d['rows']}, "
            f"P = {d['prompt_length']}, L = {d['gen_length']}, block {d['block_length']}, {d['steps']} steps.\n\n"
            f"{table(d)}"
        )
    markdown = (
        f"# Exact sampler vs LLaDA's reference algorithm\n\nMachine: {common.machine_line(info)}\n\n"
        f"Command: `{common.command_line()}`\n\n" + "\n\n".join(sections) + "\n\n"
        "seconds: mean [95% interval] over repetitions; x reference / x exact: per-repetition ratio of the "
        "reference's (the first exact mode's) seconds to the mode's; = reference / = exact: rows identical up to "
        "and including their first stop token, i.e. the text, rewards and completion_mask (early exit fills only "
        "what comes after; same seed: meaningful at T = 0, and between exact modes at any T); token agreement: "
        "over those positions; stop tokens: eos/eot "
        "in the completions of the first repetition. On random weights early exit cannot trigger (no row commits "
        "a stop before its end) and no confidence reaches the threshold (one token per iteration).\n"
    )
    common.write_results(args.out, "llada_sampler_demo" if args.demo_only else "llada_sampler", payload, markdown)
    print(markdown)
    return payload


if __name__ == "__main__":
    main()
