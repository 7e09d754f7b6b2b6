"""igpo.launch: the trainers as 2 torchrun processes (CPU, gloo, DeepSpeed) started from one process."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from igpo.checkpoint import CheckpointConfig
from igpo.launch import DEFAULT_DEEPSPEED_CONFIG, launch_training, num_processes
from igpo.models import BaseModelConfig, load_model_dir, prepare_base_model
from igpo.models.tiny import TinyModelConfig
from igpo.rl import RLConfig
from igpo.sampler import SamplerConfig
from igpo.sft import SFTConfig

TINY = TinyModelConfig(num_layers=2, hidden_size=32, head_dim=8, intermediate_size=64)
TABLE = pd.DataFrame(
    [{"question": f"{i}+{i}?", "answer": str(2 * i), "reasoning": f"we see {i} and {i}, sum them. The answer is {2 * i}"}
     for i in range(6)]
)


def says_see(completions, **_):
    """Toy correctness (as in distributed_worker.py): hints from y* often contain "see", the raw model rarely."""
    return [1.0 if "see" in text else 0.0 for text in completions]


def test_num_processes():
    assert num_processes(3) == 3
    assert num_processes(None) == max(1, torch.cuda.device_count())
    with pytest.raises(ValueError, match="num_processes"):
        num_processes(0)


@pytest.mark.distributed
@pytest.mark.slow
def test_sft_in_two_processes(tmp_path, monkeypatch):
    """SFT with no deepspeed_config given (ZeRO-2 by default) as 2 gloo ranks launched from this process:
    a complete, loadable, trained model directory, rank 0's metrics, and resumable checkpoints."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    base = prepare_base_model(BaseModelConfig(source="tiny", tiny=TINY), tmp_path / "base")
    start = load_model_dir(base).model.state_dict()

    sft = SFTConfig(steps=2, batch_size=4, micro_batch_size=1, learning_rate=1e-2, max_response_tokens=64,
                    checkpoint=CheckpointConfig(every_steps=1))
    out = launch_training("sft", base, TABLE, sft, work_dir=tmp_path / "sft", nproc=2,
                          checkpoint_dir=tmp_path / "sft-ckpt", timeout=300)
    assert out.num_processes == 2 and out.output_dir.is_dir()
    assert (tmp_path / "sft" / "inputs" / "table.parquet").exists()
    assert '"stage": 2' in (tmp_path / "sft" / "inputs" / "config.json").read_text().replace("\n", "").replace("  ", "")
    assert [m["step"] for m in out.metrics] == [1, 2] and out.summary["final_loss"] is not None
    weights = load_file(str(out.output_dir / "model.safetensors"))
    trained = load_model_dir(out.output_dir).model.state_dict()  # tokenizer + card written too
    assert any(not torch.equal(trained[k], start[k]) for k in start if k in weights)
    assert any((tmp_path / "sft-ckpt").iterdir())  # checkpoints for a resume


@pytest.mark.distributed
@pytest.mark.slow
def test_rl_in_two_processes(tmp_path, monkeypatch):
    """IGPO under ZeRO-2 as 2 gloo ranks with a correctness function named by import path."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    base = prepare_base_model(BaseModelConfig(source="tiny", tiny=TINY), tmp_path / "base")
    start = load_model_dir(base).model.state_dict()
    rl = RLConfig(
        algorithm="igpo", steps=1, batch_size=2, group_size=4, mu=1, micro_batch_size=2, beta=0.0, learning_rate=1e-2,
        weight_decay=0.0, grad_clip=1.0, rollout=SamplerConfig(gen_length=16, block_length=8, steps=8, temperature=1.0),
        s_min=2, s_max=4, eta_low=0.8, eta_high=1.0, deepspeed_config=DEFAULT_DEEPSPEED_CONFIG,
    )
    rl_out = launch_training("rl", base, TABLE, rl, work_dir=tmp_path / "rl", nproc=2,
                             correctness_fn="tests.igpo.test_launch:says_see", timeout=300)
    assert [m["step"] for m in rl_out.metrics] == [1] and rl_out.summary["steps"] == 1
    after_rl = load_model_dir(rl_out.output_dir).model.state_dict()
    assert any(not torch.equal(after_rl[k], start[k]) for k in start)


def test_inputs_are_checked_before_launching(tmp_path):
    with pytest.raises(ValueError, match="reasoning"):
        launch_training("sft", tmp_path, TABLE.drop(columns=["reasoning"]), SFTConfig(steps=1), work_dir=tmp_path / "w")
    with pytest.raises(ValueError, match="kind"):
        launch_training("dpo", tmp_path, TABLE, SFTConfig(steps=1), work_dir=tmp_path / "w")


@pytest.mark.slow
def test_a_failing_rank_reports_its_log(tmp_path):
    with pytest.raises(RuntimeError, match=r"failed \(exit 1\)[\s\S]*no-such-model"):
        launch_training("sft", tmp_path / "no-such-model", TABLE, SFTConfig(steps=1), work_dir=tmp_path / "w", nproc=1,
                        timeout=120)
