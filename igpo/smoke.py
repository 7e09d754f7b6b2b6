"""The core smoke path, end to end on CPU: build the tiny dLLM and tokenizer, SFT briefly, generate with and
without inpainting hints, and print what happened.

    python -m igpo.smoke [--out DIR] [--steps N]

This is what ``make demo`` ran before the ZenML pipeline existed; it stays as a quick check that the core
works on a machine (about a minute on one CPU core).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from igpo.models import ModelConfig, load_model
from igpo.models.tiny import TinyModelConfig, save_tiny
from igpo.prompting import decode_completions, encode_prompts
from igpo.sampler import SamplerConfig, generate
from igpo.sft import SFTConfig, train_sft
from igpo.verify import is_correct


def _chain_problems(n: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """Small mod-10 addition chains with their step-by-step answers (question, trace, answer)."""
    rng = random.Random(seed)
    questions, traces, answers = [], [], []
    for _ in range(n):
        a, b, c = rng.randint(1, 9), rng.randint(1, 3), rng.randint(1, 3)
        s1, s2 = (a + b) % 10, (a + b + c) % 10
        questions.append(f"{a}+{b}+{c}")
        traces.append(f"{a}+{b}={s1},{s1}+{c}={s2} \\boxed{{{s2}}}")
        answers.append(str(s2))
    return questions, traces, answers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".cache/smoke", help="where the tiny model is saved")
    parser.add_argument("--steps", type=int, default=600, help="SFT steps")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    start = time.perf_counter()
    model_dir = save_tiny(Path(args.out) / "tiny-base", TinyModelConfig(num_layers=2, hidden_size=64, intermediate_size=128))
    lm = load_model(ModelConfig(name_or_path=str(model_dir)))
    n_params = sum(p.numel() for p in lm.model.parameters())
    print(f"built tiny dLLM: {n_params:,} parameters, vocabulary {len(lm.tokenizer)}, tokens {lm.tokens}")

    questions, traces, _ = _chain_problems(200, seed=0)
    sampler = SamplerConfig(gen_length=32, block_length=8, steps=32)
    sft = SFTConfig(steps=args.steps, batch_size=16, learning_rate=2e-3, pad_response_to=sampler.gen_length,
                    max_response_tokens=sampler.gen_length)
    result = train_sft(lm, questions, traces, sft)
    print(f"SFT: {args.steps} steps, loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}, "
          f"{result.tokens_per_second:,.0f} tokens/s")

    test_q, test_traces, test_a = _chain_problems(8, seed=1)
    ids, mask = encode_prompts(lm.tokenizer, test_q, lm.tokens.pad_id)
    plain = decode_completions(lm.tokenizer, generate(lm, ids, sampler, prompt_mask=mask), lm.tokens.stop_ids)

    # Inpainting: reveal the first 4 tokens of each ground-truth trace at their own positions.
    trace_ids = torch.full((len(test_q), sampler.gen_length), lm.tokens.mask_id)
    for row, trace in enumerate(test_traces):
        tokens = lm.tokenizer(trace, add_special_tokens=False).input_ids[: sampler.gen_length]
        trace_ids[row, : len(tokens)] = torch.tensor(tokens)
    hint_mask = torch.zeros_like(trace_ids, dtype=torch.bool)
    hint_mask[:, :4] = True
    hinted_ids = generate(lm, ids, sampler, prompt_mask=mask, hint_ids=trace_ids, hint_mask=hint_mask)
    hinted = decode_completions(lm.tokenizer, hinted_ids, lm.tokens.stop_ids)

    print(f"\n{'question':<8} {'plain generation':<28} {'with 4-token hint':<28} gold")
    for q, p, h, a in zip(test_q, plain, hinted, test_a):
        print(f"{q:<8} {p:<28} {h:<28} {a}")
    plain_acc = sum(is_correct(p, a) for p, a in zip(plain, test_a)) / len(test_a)
    hinted_acc = sum(is_correct(h, a) for h, a in zip(hinted, test_a)) / len(test_a)
    print(f"\naccuracy: plain {plain_acc:.0%}, hinted {hinted_acc:.0%}; "
          f"model saved in {model_dir}; {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
