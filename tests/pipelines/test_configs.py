"""Every YAML in configs/ validates against the config models of the steps of the pipeline it runs (the same
check `zenml pipeline run` makes before anything runs, ``pipelines.config_check``)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
# configs/<pipeline>_<model>_<hardware>.yaml; the demo and LLaDA configs (and retrain's) are igpo_pipeline's.
PIPELINE_OF_PREFIX = {"rl": "rl_pipeline", "evaluate": "evaluate_pipeline"}


def pipeline_of(path: Path):
    from pipelines import igpo

    return getattr(igpo, PIPELINE_OF_PREFIX.get(path.name.split("_")[0], "igpo_pipeline"))


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"demo_tiny_cpu.yaml", "llada_8b_igpo.yaml", "rl_tiny_cpu.yaml",
                                         "evaluate_tiny_cpu.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates(path, monkeypatch):
    from pipelines.config_check import check_config_file

    monkeypatch.chdir(ROOT)  # relative paths in configs (deepspeed JSON) are relative to the repository root
    pipeline = pipeline_of(path).with_options(config_path=str(path))
    pipeline.prepare()  # runs the pipeline function, which ends with the check: raises InvalidConfigError
    assert check_config_file(path, pipeline.invocations.values()) == []
    document = yaml.safe_load(path.read_text())
    unknown = set(document.get("steps", {})) - set(pipeline.invocations)
    assert not unknown, f"{path.name}: steps not in {pipeline.name}: {unknown}"
    assert set(document.get("parameters") or {}) <= set(inspect.signature(pipeline.entrypoint).parameters)
    for name in {"train_grpo", "train_igpo"} & set(document["steps"]):
        assert document["steps"][name]["parameters"]["config"]["algorithm"] == name.removeprefix("train_")


def test_grpo_and_igpo_differ_only_in_algorithm():
    for path in CONFIGS:
        steps = yaml.safe_load(path.read_text())["steps"]
        if "train_grpo" not in steps:
            continue
        grpo = dict(steps["train_grpo"]["parameters"]["config"])
        igpo = dict(steps["train_igpo"]["parameters"]["config"])
        grpo.pop("algorithm"), igpo.pop("algorithm")
        assert grpo == igpo, path.name


def test_the_rl_config_is_the_demos_igpo_run_with_another_seed():
    demo = yaml.safe_load((ROOT / "configs" / "demo_tiny_cpu.yaml").read_text())["steps"]
    rl = yaml.safe_load((ROOT / "configs" / "rl_tiny_cpu.yaml").read_text())["steps"]
    demo_igpo, rl_igpo = dict(demo["train_igpo"]["parameters"]["config"]), dict(rl["train_igpo"]["parameters"]["config"])
    assert demo_igpo.pop("seed") != rl_igpo.pop("seed") and demo_igpo == rl_igpo


def test_invalid_config_fails_before_compute_naming_the_field(tmp_path):
    from igpo.rl.config import RLConfig

    with pytest.raises(ValueError, match="eta_low"):
        RLConfig(eta_low=0.7, eta_high=0.2)
