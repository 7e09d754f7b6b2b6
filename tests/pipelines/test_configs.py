"""Every YAML in configs/ validates against the config models of the steps it configures."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def _step_config_models() -> dict[str, type[BaseModel]]:
    """Step invocation id -> the pydantic type of its ``config`` parameter, read from the pipeline's steps."""
    from steps.build_report import build_report
    from steps.evaluate_benchmarks import evaluate_benchmarks
    from steps.ingest_datasets import ingest_datasets
    from steps.prepare_base_model import prepare_base_model
    from steps.rewrite_traces import rewrite_traces
    from steps.train_igpo import train_igpo
    from steps.train_sft import train_sft

    def model_of(step) -> type[BaseModel] | None:
        return typing.get_type_hints(step.entrypoint).get("config")

    by_step = {
        "prepare_base_model": prepare_base_model, "ingest_datasets": ingest_datasets, "rewrite_traces": rewrite_traces,
        "train_sft": train_sft, "train_grpo": train_igpo, "train_igpo": train_igpo, "evaluate_base": evaluate_benchmarks,
        "evaluate_sft": evaluate_benchmarks, "evaluate_grpo": evaluate_benchmarks, "evaluate_igpo": evaluate_benchmarks,
        "build_report": build_report,
    }
    return {name: model_of(step) for name, step in by_step.items()}


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"demo_tiny_cpu.yaml", "llada_8b_igpo.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # relative paths in configs (deepspeed JSON) are relative to the repository root
    document = yaml.safe_load(path.read_text())
    models = _step_config_models()
    unknown = set(document.get("steps", {})) - set(models)
    assert not unknown, f"{path.name}: steps not in igpo_pipeline: {unknown}"
    for name, model in models.items():
        step = document["steps"].get(name, {})
        parameters = step.get("parameters", {})
        if model is None:
            assert "config" not in parameters
            continue
        assert "config" in parameters, f"{path.name}: step {name} has no config"
        model.model_validate(parameters["config"])
        if name in ("train_grpo", "train_igpo"):
            assert parameters["config"]["algorithm"] == name.removeprefix("train_")


def test_grpo_and_igpo_differ_only_in_algorithm():
    for path in CONFIGS:
        steps = yaml.safe_load(path.read_text())["steps"]
        grpo = dict(steps["train_grpo"]["parameters"]["config"])
        igpo = dict(steps["train_igpo"]["parameters"]["config"])
        grpo.pop("algorithm"), igpo.pop("algorithm")
        assert grpo == igpo, path.name


def test_invalid_config_fails_before_compute_naming_the_field(tmp_path):
    from igpo.rl.config import RLConfig

    with pytest.raises(ValueError, match="eta_low"):
        RLConfig(eta_low=0.7, eta_high=0.2)
