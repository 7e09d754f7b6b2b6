"""The benchmarks' demo model: trained from the demo YAML's step configs, cached, and the demo's RL prompts."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import demo_model


def _shrunk_demo_yaml(tmp_path: Path) -> Path:
    config = yaml.safe_load(demo_model.DEMO_CONFIG.read_text())
    steps = config["steps"]
    steps["prepare_base_model"]["parameters"]["config"]["tiny"].update(
        num_layers=1, hidden_size=32, num_heads=4, head_dim=8, intermediate_size=64)
    steps["ingest_datasets"]["parameters"]["config"]["demo"].update(
        num_train=24, num_train_hard=12, num_test=8, num_test_hard=4)
    steps["train_sft"]["parameters"]["config"].update(steps=3, batch_size=4)
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_the_demo_model_is_trained_once_and_served_from_the_cache(tmp_path):
    path = _shrunk_demo_yaml(tmp_path)
    first = demo_model.demo_checkpoint(path, cache_dir=tmp_path / "cache")
    assert (first / "config.json").is_file() and (first / "igpo_model.json").is_file()
    stamp = (first / "config.json").stat().st_mtime_ns
    assert demo_model.demo_checkpoint(path, cache_dir=tmp_path / "cache") == first
    assert (first / "config.json").stat().st_mtime_ns == stamp  # not trained again


def test_the_demo_rl_prompts_mix_both_difficulties_and_the_sft_part_is_easy(tmp_path):
    import json

    path = _shrunk_demo_yaml(tmp_path)
    rl = {json.loads(r["metadata"])["difficulty"] for r in demo_model.demo_rl_rows(path)}
    test = {json.loads(r["metadata"])["difficulty"] for r in demo_model.demo_test_rows(path)}
    assert rl == test == {"easy", "hard"}
    assert demo_model.demo_rl_config(path)["algorithm"] == "igpo"
