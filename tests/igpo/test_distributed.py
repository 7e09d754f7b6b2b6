"""Distribution: the DeepSpeed config checks, the data shards, and a real 2-process ZeRO-2/ZeRO-3 run on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from igpo.distributed import batch_indices, rank_shard, resolve_deepspeed_config, stream_seed
from igpo.rl import RLConfig

REPO = Path(__file__).resolve().parents[2]
REFERENCE_ADAMW = {"learning_rate": 5e-7, "betas": (0.9, 0.99), "weight_decay": 0.1}


@pytest.mark.parametrize("name", ["zero2.json", "zero3.json"])
def test_shipped_configs_are_the_reference_run(name):
    rl = RLConfig(deepspeed_config=str(REPO / "configs" / "deepspeed" / name), micro_batch_size=8)
    # 8 GPUs, 64 prompts x 8 completions: 64 sequences per GPU in micro-batches of 8 -> 8 accumulation steps.
    local = rl.batch_size // 8 * rl.group_size
    config = resolve_deepspeed_config(
        rl.deepspeed_config, micro_batch_size=8, gradient_accumulation_steps=local // 8, world=8, grad_clip=rl.grad_clip,
        learning_rate=rl.learning_rate, betas=rl.betas, weight_decay=rl.weight_decay,
    )
    assert config["train_batch_size"] == 512 and config["gradient_accumulation_steps"] == 8
    assert config["bf16"]["enabled"] and config["gradient_clipping"] == 0.2
    assert config["zero_optimization"]["stage"] == int(name[4]) and "optimizer" not in config


def test_config_contradictions_are_errors():
    base = dict(micro_batch_size=2, gradient_accumulation_steps=3, world=2, grad_clip=0.2, **REFERENCE_ADAMW)
    filled = resolve_deepspeed_config({"train_batch_size": "auto"}, **base)
    assert (filled["train_batch_size"], filled["train_micro_batch_size_per_gpu"], filled["gradient_accumulation_steps"]) == (12, 2, 3)
    assert filled["zero_allow_untested_optimizer"] is True
    with pytest.raises(ValueError, match="train_batch_size = 512"):
        resolve_deepspeed_config({"train_batch_size": 512}, **base)
    with pytest.raises(ValueError, match="gradient_clipping"):
        resolve_deepspeed_config({"gradient_clipping": 1.0}, **base)
    with pytest.raises(ValueError, match="optimizer.params.lr"):
        resolve_deepspeed_config({"optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}}, **base)
    with pytest.raises(ValueError, match="scheduler"):
        resolve_deepspeed_config({"scheduler": {"type": "WarmupLR"}}, **base)


def test_batches_are_epoch_permutations_split_over_ranks():
    seen = [i for step in range(5) for i in batch_indices(10, 4, step, seed=3)]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert seen[:10] != seen[10:20]  # a fresh order per epoch
    assert batch_indices(10, 4, 2, seed=3) == seen[8:12]  # a pure function of the step
    batch = batch_indices(10, 4, 0, seed=3)
    assert rank_shard(batch, 0, 2) + rank_shard(batch, 1, 2) == batch
    with pytest.raises(ValueError, match="ranks"):
        rank_shard(batch, 0, 3)
    assert len({stream_seed(0, s, r) for s in range(4) for r in range(8)}) == 32


@pytest.mark.distributed
@pytest.mark.slow
def test_two_process_zero2_rl_and_zero3_sft(tmp_path):
    """torchrun, 2 CPU ranks, gloo: IGPO under ZeRO-2 (two steps, checkpoint each), resumed from step 1,
    and SFT under ZeRO-3. Ranks end identical, different from the start; the resumed run matches."""
    from safetensors.torch import load_file

    env = os.environ | {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tests" / "igpo" / "distributed_worker.py"), str(tmp_path)]
    run = subprocess.run(command, check=False, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]

    def load(name):
        return load_file(str(tmp_path / name))

    start, rank0, rank1 = load("start-rank0.safetensors"), load("rl-rank0.safetensors"), load("rl-rank1.safetensors")
    assert rank0.keys() == rank1.keys() == start.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # ZeRO-2 kept the replicas identical
    assert all(not torch.equal(rank0[k], start[k]) for k in rank0)  # and every parameter trained
    metrics = json.loads((tmp_path / "rl-metrics.json").read_text())
    assert [m["step"] for m in metrics] == [1, 2]
    assert sum(m["inpaint_attempts"] for m in metrics) > 0 and sum(m["completions_replaced"] for m in metrics) > 0
    assert (tmp_path / "shm-op.txt").read_text() == "None"  # the shared-memory op was never built
    for r in (0, 1):  # resumed from the step-1 checkpoint: the same end point on both ranks
        resumed = load(f"resumed-rank{r}.safetensors")
        assert all(torch.equal(resumed[k], rank0[k]) for k in rank0)
    sft0, sft1 = load("sft3-rank0.safetensors"), load("sft3-rank1.safetensors")
    assert all(torch.equal(sft0[k], sft1[k]) and not torch.equal(sft0[k], start[k]) for k in sft0)
    exported = load_file(str(tmp_path / "sft-final" / "model.safetensors"))  # ZeRO-3 weights gathered on save
    assert all(torch.equal(exported[k], sft0[k]) for k in exported)
