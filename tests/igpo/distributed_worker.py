"""One rank of the multi-process test (launched by tests/igpo/test_distributed.py with torchrun, 2 ranks).

1. IGPO, DeepSpeed ZeRO-2, two steps with a checkpoint after each (all-wrong groups get inpainted and
   repaired); every rank writes its final parameters.
2. The same run resumed from the step-1 checkpoint in a fresh process state; final parameters written.
3. SFT under ZeRO-3, two steps, final model exported; every rank writes its gathered parameters.
Usage: torchrun --standalone --nproc_per_node=2 tests/igpo/distributed_worker.py OUT_DIR [llada|dream]
(the model family of the tiny model, LLaDA by default; tests/igpo/models/test_every_stage.py runs both).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from igpo.checkpoint import CheckpointConfig
from igpo.distributed import barrier, rank
from igpo.models import wrap_model
from igpo.models.dream import build_tiny_dream
from igpo.models.tiny import TinyModelConfig, build_tiny_model, build_tiny_tokenizer
from igpo.rl import RLConfig, train_rl
from igpo.sampler import SamplerConfig
from igpo.sft import SFTConfig, train_sft

TINY = TinyModelConfig(num_layers=2, hidden_size=32, head_dim=8, intermediate_size=64)
EXAMPLES = [
    {"question": f"{i}+{i}?", "answer": str(2 * i), "reasoning": f"we see {i} and {i}, sum them. The answer is {2 * i}"}
    for i in range(6)
]


def says_see(completions, **_):
    """Toy correctness: an untrained model never writes "see" unaided, the hints (from y*) often contain it."""
    return [1.0 if "see" in text else 0.0 for text in completions]


def flat(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone().contiguous() for name, p in module.named_parameters()}


def main(out: Path, family: str = "llada") -> None:
    torch.set_num_threads(1)
    tokenizer = build_tiny_tokenizer()
    me = rank()

    def lm():
        if family == "dream":  # grouped key/value heads, logits shifted by one
            model = build_tiny_dream(tokenizer, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                                     num_kv_heads=2, max_position_embeddings=256, rope_theta=10_000.0)
        else:
            model = build_tiny_model(tokenizer, TINY)
        return wrap_model(model.eval(), tokenizer)

    rl = RLConfig(
        steps=2, batch_size=2, group_size=4, mu=2, micro_batch_size=2, beta=0.05, learning_rate=1e-2, weight_decay=0.0,
        grad_clip=1.0, rollout=SamplerConfig(gen_length=16, block_length=8, steps=8, temperature=1.0), s_min=2, s_max=4,
        eta_low=0.8, eta_high=1.0,
        deepspeed_config={"zero_optimization": {"stage": 2}}, checkpoint=CheckpointConfig(every_steps=1, keep_last=None),
    )
    model = lm()
    save_file(flat(model.model), str(out / f"start-rank{me}.safetensors"))
    result = train_rl(model, EXAMPLES, rl, correctness_fn=says_see, checkpoint_dir=str(out / "rl"), progress=False)
    save_file(flat(model.model), str(out / f"rl-rank{me}.safetensors"))
    if me == 0:
        (out / "rl-metrics.json").write_text("[" + ",".join(m.model_dump_json() for m in result.metrics) + "]")
        import deepspeed.comm

        (out / "shm-op.txt").write_text(repr(deepspeed.comm.comm.cdb.shm_comm_op))

    # Resume: only the step-1 checkpoint, a fresh model, the same config.
    if me == 0:
        (out / "resume").mkdir()
        shutil.copytree(out / "rl" / "step-00000001", out / "resume" / "step-00000001")
    barrier()
    model = lm()
    resumed = train_rl(model, EXAMPLES, rl, correctness_fn=says_see, checkpoint_dir=str(out / "resume"), progress=False)
    assert resumed.resumed_from == 1, resumed.resumed_from
    save_file(flat(model.model), str(out / f"resumed-rank{me}.safetensors"))

    # SFT under ZeRO-3: parameters are partitioned, so gather them to compare.
    import deepspeed

    sft = SFTConfig(steps=2, batch_size=4, micro_batch_size=1, learning_rate=1e-2, deepspeed_config={"zero_optimization": {"stage": 3}})
    model = lm()
    train_sft(model, ["red", "blue", "green", "cyan"], ["apple 1", "sky 22", "grass 333", "sea 4444"], sft,
              progress=False, output_dir=out / "sft-final")
    with deepspeed.zero.GatheredParameters(list(model.model.parameters())):
        save_file(flat(model.model), str(out / f"sft3-rank{me}.safetensors"))
    barrier()


if __name__ == "__main__":
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    main(Path(sys.argv[1]), *sys.argv[2:3])
