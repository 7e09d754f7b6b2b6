"""Invalid configs are rejected at construction, before any compute, with a message naming the field; a
pipeline run with such a YAML fails before it is compiled, naming the step and the field."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from igpo.checkpoint import CheckpointConfig
from igpo.data.config import (
    DatasetSourceConfig,
    EvalSetConfig,
    IngestConfig,
    OpenAIBackendConfig,
    RewriteConfig,
)
from igpo.evaluate import EvalConfig
from igpo.models import ModelConfig
from igpo.rl.config import RLConfig
from igpo.sampler import SamplerConfig
from igpo.sft import SFTConfig

ROLLOUT = {"gen_length": 32, "block_length": 16, "steps": 4}

# (what is wrong, config class, values, text the error must contain: the field's name)
CASES = [
    ("wrong type", SFTConfig, {"steps": "many"}, "steps"),
    ("wrong type (nested)", RLConfig, {"rollout": {**ROLLOUT, "temperature": "hot"}}, "temperature"),
    ("negative learning rate", SFTConfig, {"learning_rate": -1e-3}, "learning_rate"),
    ("zero batch size", RLConfig, {"batch_size": 0}, "batch_size"),
    ("tau > 1", RLConfig, {"tau": 1.5}, "tau"),
    ("ratio out of range", RLConfig, {"lambda_": 2.0}, "lambda_"),
    ("prompt mask rate of 1", RLConfig, {"p_mask_prompt": 1.0}, "p_mask_prompt"),
    ("group_size < 2", RLConfig, {"group_size": 1}, "group_size"),
    ("eta_low > eta_high", RLConfig, {"eta_low": 0.7, "eta_high": 0.3}, "eta_low"),
    ("s_min > s_max", RLConfig, {"s_min": 8, "s_max": 4}, "s_min"),
    ("gen_length not a multiple of block_length", SamplerConfig, {"gen_length": 30, "block_length": 16}, "gen_length"),
    ("steps not a multiple of blocks", SamplerConfig, {"gen_length": 32, "block_length": 16, "steps": 5}, "steps"),
    ("gen_length/block_length inside the RL config", RLConfig, {"rollout": {**ROLLOUT, "gen_length": 40}}, "gen_length"),
    ("unknown key (typo)", RLConfig, {"learning_rat": 1e-5}, "learning_rat"),
    ("unknown nested key", SFTConfig, {"checkpoint": {"every_step": 5}}, "every_step"),
    ("unknown algorithm", RLConfig, {"algorithm": "ppo"}, "algorithm"),
    ("masking floor out of range", SFTConfig, {"eps": 0.0}, "eps"),
    ("negative checkpoint cadence", CheckpointConfig, {"every_steps": -1}, "every_steps"),
    ("max_nonfinite_in_a_row < 1", SFTConfig, {"max_nonfinite_in_a_row": 0}, "max_nonfinite_in_a_row"),
    ("missing local dataset file", DatasetSourceConfig, {"path": "/no/such/dir/MetaMathQA-395K.json"}, "path"),
    ("missing local dataset dir", EvalSetConfig, {"path": "./no-such-dir"}, "path"),
    ("no dataset source", IngestConfig, {}, "source"),
    ("source listed but not configured", IngestConfig, {"demo": {}, "sft_sources": ["openr1"]}, "sft_sources"),
    ("openai backend without a model", RewriteConfig, {"backend": "openai"}, "openai.model"),
    ("key pasted where its env var name goes", OpenAIBackendConfig, {"api_key_env": "sk-abc-123"}, "api_key_env"),
    ("template without {trace}", RewriteConfig, {"prompt_template": "Solve {question}"}, "prompt_template"),
    ("no benchmark", EvalConfig, {"benchmarks": []}, "benchmarks"),
    ("unknown dtype", ModelConfig, {"name_or_path": "x/y", "dtype": "float8"}, "dtype"),
]


@pytest.mark.parametrize(("config_class", "values", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_config_is_rejected_naming_the_field(config_class, values, field):
    with pytest.raises(ValidationError) as info:
        config_class(**values)
    assert field in str(info.value), str(info.value)


def test_at_least_ten_kinds_are_covered():
    assert len({c[0] for c in CASES}) >= 10


def test_key_pasted_into_a_config_is_not_echoed_back():
    with pytest.raises(ValidationError) as info:
        OpenAIBackendConfig(api_key_env="sk-" + "x" * 24)
    assert "x" * 24 not in str(info.value)


def test_hub_ids_and_existing_local_paths_stay_valid(tmp_path):
    assert DatasetSourceConfig(path="openai/gsm8k").path == "openai/gsm8k"
    assert DatasetSourceConfig(path="meta-math/MetaMathQA").path == "meta-math/MetaMathQA"
    local = tmp_path / "gsm8k.jsonl"
    local.write_text("")
    assert EvalSetConfig(path=str(local)).path == str(local)


@pytest.mark.slow
def test_pipeline_with_an_invalid_yaml_fails_before_any_step_runs(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines"))
    from shrink import shrunk_demo_config, write_config
    from zenml.client import Client

    from pipelines.config_check import InvalidConfigError
    from pipelines.igpo import igpo_pipeline
    from pipelines.stack import ensure_local_stack

    ensure_local_stack()
    config = shrunk_demo_config()
    config["steps"]["train_igpo"]["parameters"]["config"]["tau"] = 1.5
    runs_before = Client().list_pipeline_runs(size=1).total
    artifacts_before = Client().list_artifact_versions(size=1).total
    with pytest.raises(InvalidConfigError) as info:
        igpo_pipeline.with_options(config_path=str(write_config(config, tmp_path / "bad.yaml")))()
    # Checked by the pipeline function itself (pipelines/config_check.py), before ZenML's own input check,
    # whose message names only the step input ("Input validation failed for input 'config'").
    assert info.value.errors == ["train_igpo.config.tau: Input should be less than or equal to 1"]
    assert Client().list_pipeline_runs(size=1).total == runs_before  # no run was even created
    assert Client().list_artifact_versions(size=1).total == artifacts_before
