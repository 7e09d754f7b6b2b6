"""The shipped configs shrunk to seconds: same pipelines, same keys, tiny step counts."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def shrunk_demo_config(rl_seed: int = 0) -> dict:
    config = yaml.safe_load((ROOT / "configs" / "demo_tiny_cpu.yaml").read_text())
    config = copy.deepcopy(config)
    steps = config["steps"]
    steps["prepare_base_model"]["parameters"]["config"]["tiny"].update(
        num_layers=1, hidden_size=32, num_heads=4, head_dim=8, intermediate_size=64
    )
    steps["ingest_datasets"]["parameters"]["config"]["demo"].update(num_train=24, num_train_hard=12, num_test=8,
                                                                         num_test_hard=4)
    steps["train_sft"]["parameters"]["config"].update(steps=6, batch_size=4, checkpoint={"every_steps": 3})
    for name in ("train_grpo", "train_igpo"):
        steps[name]["parameters"]["config"] = {**_shrink_rl(steps[name]["parameters"]["config"]), "seed": rl_seed}
    for name in ("evaluate_base", "evaluate_sft", "evaluate_grpo", "evaluate_igpo"):
        steps[name]["parameters"]["config"] = {
            "benchmarks": [{"name": "demo", "samples": 1, "limit": 4, "subsets_by": "difficulty",
                            "sampler": {"gen_length": 32, "block_length": 16, "steps": 4, "temperature": 0.0}}],
            "batch_size": 8,
        }
    return config


def write_config(config: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _shrink_rl(config: dict) -> dict:
    config = dict(config)
    config.update(steps=2, batch_size=2, group_size=2, checkpoint={"every_steps": 1},
                  rollout={"gen_length": 32, "block_length": 16, "steps": 4, "temperature": 1.0})
    return config


def shrunk_rl_config(checkpoint: str, rl_table: str) -> dict:
    """configs/rl_tiny_cpu.yaml shrunk like the demo, on the given artifacts (names or ids)."""
    config = yaml.safe_load((ROOT / "configs" / "rl_tiny_cpu.yaml").read_text())
    config["parameters"] = {"checkpoint": checkpoint, "rl_table": rl_table}
    step = config["steps"]["train_igpo"]["parameters"]
    step["config"] = _shrink_rl(step["config"])
    return config


def shrunk_evaluate_config() -> dict:
    """configs/evaluate_tiny_cpu.yaml (the latest igpo_checkpoint and eval_table) on 4 questions."""
    config = yaml.safe_load((ROOT / "configs" / "evaluate_tiny_cpu.yaml").read_text())
    config["steps"]["evaluate_benchmarks"]["parameters"]["config"]["benchmarks"][0].update(
        limit=4, sampler={"gen_length": 32, "block_length": 16, "steps": 4, "temperature": 0.0})
    return config
