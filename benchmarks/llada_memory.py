"""Memory of one IGPO training step for LLaDA-8B at the reference run's settings, computed (not measured) from
the architecture: the native class is built on the meta device (no weights, no memory) with LLaDA-8B's
published config (``LLaDAConfig()``'s defaults), so parameter counts are exact; activations are an estimate.

    python benchmarks/llada_memory.py [--micro-batch 8] [--prompt 256] [--gen-length 256] [--gpus 8]

Assumptions, printed with the result: bf16 weights; LoRA r=128 on the 7 linear layers of every block (the LM
head and embeddings frozen); AdamW with fp32 master weights and moments for the adapters, sharded over the GPUs
by ZeRO-2 with the adapters' gradients; the reference model is the base with adapters disabled (no copy); the
LM head only at the completion positions (``logits_to_keep``) with the float32 log-softmax of that slice;
activations kept for backward per token and layer: the block's inputs and the matmul inputs/outputs of
attention and the gated MLP (SDPA keeps no T x T matrix), or only each block's input with gradient
checkpointing (plus one block recomputed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GiB = 1024**3


def estimate(micro_batch: int, prompt: int, gen_length: int, gpus: int, lora_r: int) -> dict[str, float]:
    import torch

    from igpo.models.llada import LLaDAConfig, LLaDAModelLM

    config = LLaDAConfig()
    with torch.device("meta"):
        model = LLaDAModelLM(config)
    params = sum(p.numel() for p in model.parameters())
    block_linears = [m for n, m in model.named_modules() if ".blocks." in n and isinstance(m, torch.nn.Linear)]
    lora = sum(lora_r * (m.in_features + m.out_features) for m in block_linears)
    d, hidden, layers, vocab = config.d_model, config.intermediate_size, config.n_layers, config.rows
    tokens = micro_batch * (prompt + gen_length)
    bf16, fp32 = 2, 4
    per_token_layer = (4 * d + d + 4 * hidden) * bf16  # norm in, q/k/v out, attention out; gate, up, act, product
    out = {
        "parameters (billions)": params / 1e9,
        "LoRA parameters (millions)": lora / 1e6,
        "weights, bf16": params * bf16 / GiB,
        "LoRA weights + grads (bf16, grads sharded)": (lora * bf16 + lora * bf16 / gpus) / GiB,
        "optimizer: fp32 master + 2 moments, ZeRO-2 sharded": lora * 3 * fp32 / gpus / GiB,
        "activations, no checkpointing": tokens * layers * per_token_layer / GiB,
        "activations, gradient checkpointing": (tokens * layers * d * bf16 + tokens * per_token_layer) / GiB,
        "logits at the completion (bf16 + fp32 log-softmax)": micro_batch * gen_length * vocab * (bf16 + fp32) / GiB,
    }
    fixed = sum(v for k, v in out.items() if k.startswith(("weights", "LoRA weights", "optimizer", "logits")))
    out["peak per GPU, no checkpointing"] = fixed + out["activations, no checkpointing"]
    out["peak per GPU, gradient checkpointing"] = fixed + out["activations, gradient checkpointing"]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=256, help="prompt tokens (GSM8K/MATH with the chat template)")
    parser.add_argument("--gen-length", type=int, default=256)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--lora-r", type=int, default=128)
    args = parser.parse_args(argv)
    result = estimate(args.micro_batch, args.prompt, args.gen_length, args.gpus, args.lora_r)
    print(f"LLaDA-8B IGPO step, computed from the architecture (not measured): micro-batch {args.micro_batch}, "
          f"prompt {args.prompt} + L {args.gen_length} tokens, LoRA r={args.lora_r}, bf16, ZeRO-2 on {args.gpus} GPUs")
    for name, value in result.items():
        unit = "" if "parameters (" in name else " GiB"
        print(f"  {name:55s} {value:8.2f}{unit}")


if __name__ == "__main__":
    main()
