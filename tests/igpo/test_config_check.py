"""igpo.config_check: one `step.config.path: message` line per error of a run config, did-you-mean for typos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from igpo.config_check import check_run_config, did_you_mean, field_names, format_loc
from igpo.data.config import IngestConfig, OpenAIBackendConfig, RewriteConfig
from igpo.evaluate import EvalConfig
from igpo.models import BaseModelConfig
from igpo.rl.config import RLConfig
from igpo.sft import SFTConfig

DEMO = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "demo_tiny_cpu.yaml").read_text())
MODELS = {"prepare_base_model": BaseModelConfig, "ingest_datasets": IngestConfig, "rewrite_traces": RewriteConfig,
          "train_sft": SFTConfig, "train_grpo": RLConfig, "train_igpo": RLConfig, "evaluate_sft": EvalConfig}


def _demo() -> dict:
    """A copy of the demo config without YAML aliases (its GRPO and IGPO sections are one object)."""
    return json.loads(json.dumps(DEMO))


def _config(document: dict, step: str) -> dict:
    return document["steps"][step]["parameters"]["config"]


def test_the_shipped_demo_config_has_no_error():
    assert check_run_config(_demo(), MODELS) == []


def test_a_cross_field_error_names_the_step_and_the_nested_field():
    document = _demo()
    _config(document, "train_grpo")["rollout"]["gen_length"] = 30
    assert check_run_config(document, MODELS) == [
        "train_grpo.config.rollout: gen_length (30) must be a multiple of block_length (16)"
    ]


@pytest.mark.parametrize(
    ("step", "path", "key", "expected"),
    [
        ("train_sft", (), "learning_rat", "train_sft.config.learning_rat: unknown key; did you mean 'learning_rate'?"),
        ("train_sft", ("checkpoint",), "every_step",
         "train_sft.config.checkpoint.every_step: unknown key; did you mean 'every_steps'?"),
        ("train_igpo", ("rollout",), "temprature",
         "train_igpo.config.rollout.temprature: unknown key; did you mean 'temperature'?"),
        ("prepare_base_model", ("tiny",), "num_layer",
         "prepare_base_model.config.tiny.num_layer: unknown key; did you mean 'num_layers'?"),
        ("train_sft", (), "zzz_unrelated", "train_sft.config.zzz_unrelated: unknown key"),
    ],
)
def test_an_unknown_key_suggests_the_closest_field(step, path, key, expected):
    document = _demo()
    section = _config(document, step)
    for part in path:
        section = section[part]
    section[key] = 1
    assert check_run_config(document, MODELS) == [expected]


def test_a_list_item_is_located_by_its_index_and_pydantic_noise_is_dropped():
    document = _demo()
    _config(document, "evaluate_sft")["benchmarks"][0] = {
        "name": "demo", "samples": 0, "sampler": {"gen_length": 32, "block_length": 16, "steps": 16, "temprature": 0.0},
    }
    # (pydantic also says the tuple is too short once its only item is invalid: not repeated here)
    assert check_run_config(document, MODELS) == [
        "evaluate_sft.config.benchmarks[0].samples: Input should be greater than or equal to 1",
        "evaluate_sft.config.benchmarks[0].sampler.temprature: unknown key; did you mean 'temperature'?",
    ]


def test_every_error_of_every_step_is_reported_in_step_order():
    document = _demo()
    _config(document, "ingest_datasets")["demo"]["num_train"] = "many"
    _config(document, "train_igpo")["tau"] = 1.5
    _config(document, "train_igpo")["eta_low"] = -0.1
    errors = check_run_config(document, MODELS)
    assert [e.split(":")[0] for e in errors] == [
        "ingest_datasets.config.demo.num_train", "train_igpo.config.eta_low", "train_igpo.config.tau",
    ], errors
    assert all("\n" not in e and len(e) < 200 for e in errors)


def test_a_model_validator_error_names_the_model_itself():
    document = _demo()
    _config(document, "train_igpo").update(eta_low=0.7, eta_high=0.3)
    assert check_run_config(document, MODELS) == ["train_igpo.config: eta_low (0.7) must not exceed eta_high (0.3)"]


def test_a_missing_config_suggests_a_misspelt_step_or_parameter():
    document = _demo()
    document["steps"]["train_igp0"] = document["steps"].pop("train_igpo")
    assert check_run_config(document, MODELS) == [
        "train_igpo.config: missing (steps.train_igpo.parameters.config in the YAML); did you mean 'train_igp0'?"
    ]
    document = _demo()
    params = document["steps"]["train_sft"]["parameters"]
    params["confg"] = params.pop("config")
    assert check_run_config(document, MODELS) == [
        "train_sft.config: missing (steps.train_sft.parameters.config in the YAML); did you mean 'confg'?"
    ]
    # Knowing the step's parameters, the typo itself is reported (once).
    assert check_run_config(document, MODELS, {"train_sft": ["base_model", "sft_table", "config", "nproc"]}) == [
        "train_sft.confg: unknown parameter of step train_sft; did you mean 'config'?"
    ]


def test_steps_of_other_pipelines_are_left_alone():
    assert check_run_config(_demo(), {"train_igpo": RLConfig}) == []


def test_a_document_of_the_wrong_shape_is_one_error():
    assert check_run_config(["not", "a", "mapping"], MODELS) == ["the run config must be a mapping of settings, got list"]
    assert check_run_config({"steps": ["x"]}, MODELS) == ["steps: must be a mapping of step name -> settings, got list"]
    assert check_run_config({"steps": {"train_sft": 3}}, {"train_sft": SFTConfig}) == [
        "steps.train_sft: must be a mapping of step settings, got int"
    ]


def test_a_wrong_type_names_the_field_and_never_echoes_the_value():
    secret = "sk-" + "x" * 24
    document = {"steps": {"train_sft": {"parameters": {"config": {"steps": secret}}}}}
    (error,) = check_run_config(document, {"train_sft": SFTConfig})
    assert error.startswith("train_sft.config.steps: Input should be a valid integer") and secret not in error
    document = {"steps": {"teacher": {"parameters": {"config": {"api_key_env": secret}}}}}
    (error,) = check_run_config(document, {"teacher": OpenAIBackendConfig})
    assert error.startswith("teacher.config.api_key_env:") and "x" * 24 not in error


def test_helpers():
    assert format_loc(("benchmarks", 0, "sampler")) == ".benchmarks[0].sampler" and format_loc(()) == ""
    assert did_you_mean("lerning_rate", ["learning_rate", "steps"]) == "; did you mean 'learning_rate'?"
    assert did_you_mean("qqq", ["learning_rate"]) == ""
    assert "temperature" in field_names(EvalConfig, ("benchmarks", 0, "sampler"))
    assert "every_steps" in field_names(SFTConfig, ("checkpoint",))
    assert field_names(SFTConfig, ("steps",)) == [] and field_names(SFTConfig, ("no_such",)) == []
