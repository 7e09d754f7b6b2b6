"""The whole pipeline end to end on the shipped demo config (shrunk), on a hermetic local stack with MLflow:
the run succeeds, a second run is fully cached, changing only the RL section re-runs only RL and what
depends on it, lineage is queryable, MLflow holds the training metrics. Then the smaller pipelines on its
artifacts, with the shipped rl and evaluate configs (shrunk)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from shrink import shrunk_demo_config, shrunk_evaluate_config, shrunk_rl_config, write_config

pytestmark = pytest.mark.slow

RL_AND_DEPENDENTS = {"train_igpo", "evaluate_igpo", "build_report"}


@pytest.fixture(scope="module")
def stack():
    from pipelines.stack import ensure_local_stack

    return ensure_local_stack()


def _unique(config: dict) -> dict:
    """Seeds no other test uses: the session's store is shared, so another test's identical run would
    otherwise serve this one's first run from cache."""
    steps = config["steps"]
    steps["prepare_base_model"]["parameters"]["config"]["tiny"]["seed"] = 4242
    steps["ingest_datasets"]["parameters"]["config"]["demo"]["seed"] = 4242
    return config


def _run(config: dict, path: Path):
    from pipelines.igpo import igpo_pipeline

    write_config(config, path)
    return igpo_pipeline.with_options(config_path=str(path))()


def _statuses(run) -> dict[str, str]:
    from zenml.client import Client

    run = Client().get_pipeline_run(run.id)
    return {name: step.status.value for name, step in run.steps.items()}


def test_pipeline_end_to_end_cache_lineage_and_mlflow(stack, tmp_path):
    from zenml.client import Client

    config = _unique(shrunk_demo_config())
    first = _run(config, tmp_path / "first.yaml")
    statuses = _statuses(first)
    assert set(statuses.values()) == {"completed"}, statuses

    # Lineage: the checkpoint evaluated as sft+igpo was produced by this run's train_igpo step.
    run = Client().get_pipeline_run(first.id)
    evaluated = run.steps["evaluate_igpo"].inputs["checkpoint"]
    evaluated = evaluated[0] if isinstance(evaluated, list) else evaluated
    producer = Client().get_run_step(evaluated.producer_step_run_id)
    assert producer.name == "train_igpo" and producer.pipeline_run_id == run.id
    scores = run.steps["build_report"].outputs["score_table"][0].load()
    assert set(scores["model"]) == {"base", "sft", "sft+grpo", "sft+igpo"}
    assert "all-wrong" in run.steps["build_report"].outputs["results"][0].load()

    # The run registered a Model version carrying its checkpoints and scores.
    version = Client().get_model_version("igpo_demo", run.model_version.number)
    linked = {a.artifact.name for a in Client().list_artifact_versions(model_version_id=version.id, size=100).items}
    assert {"sft_checkpoint", "grpo_checkpoint", "igpo_checkpoint", "score_table", "report"} <= linked, linked
    assert version.run_metadata.get("scores"), version.run_metadata.keys()

    # MLflow holds the per-step training metrics.
    import mlflow

    mlflow.set_tracking_uri(stack)
    runs = mlflow.search_runs(search_all_experiments=True)
    metric_columns = {c for c in runs.columns if c.startswith("metrics.")}
    assert {"metrics.igpo/all_wrong_fraction", "metrics.grpo/reward", "metrics.sft/loss"} <= metric_columns

    # Unchanged config: everything from cache.
    second = _run(config, tmp_path / "second.yaml")
    assert set(_statuses(second).values()) == {"cached"}

    # Only the IGPO section changed: only IGPO and what depends on it re-runs.
    changed = _unique(shrunk_demo_config())
    changed["steps"]["train_igpo"]["parameters"]["config"]["learning_rate"] = 1e-4
    third = _statuses(_run(changed, tmp_path / "third.yaml"))
    assert {n for n, s in third.items() if s == "completed"} == RL_AND_DEPENDENTS, third
    assert {n for n, s in third.items() if s == "cached"} == set(third) - RL_AND_DEPENDENTS

    # rl_pipeline: IGPO again from this run's SFT checkpoint (by id), a new version of igpo_checkpoint ...
    outputs = {name: step.outputs for name, step in run.steps.items()}
    sft_checkpoint = outputs["train_sft"]["sft_checkpoint"][0]
    rl_table = outputs["ingest_datasets"]["rl_table"][0]
    rl_config = shrunk_rl_config(str(sft_checkpoint.id), str(rl_table.id))
    rl_run = Client().get_pipeline_run(_run_pipeline("rl_pipeline", rl_config, tmp_path / "rl.yaml").id)
    assert _statuses(rl_run) == {"train_igpo": "completed"}
    assert _one(rl_run.steps["train_igpo"].inputs["checkpoint"]).id == sft_checkpoint.id
    rl_checkpoint = rl_run.steps["train_igpo"].outputs["igpo_checkpoint"][0]
    assert rl_checkpoint.name == "igpo_checkpoint" and rl_checkpoint.run_metadata["algorithm"] == "igpo"
    # ... which evaluate_pipeline picks as the latest igpo_checkpoint (by name, as the shipped config does).
    evaluate_run = Client().get_pipeline_run(
        _run_pipeline("evaluate_pipeline", shrunk_evaluate_config(), tmp_path / "evaluate.yaml").id)
    assert _one(evaluate_run.steps["evaluate_benchmarks"].inputs["checkpoint"]).id == rl_checkpoint.id
    scores = evaluate_run.steps["evaluate_benchmarks"].outputs["scores"][0].load()
    assert set(scores["model"]) == {"sft+igpo"} and scores.loc[0, "benchmark"] == "demo"
    assert scores.loc[0, "n_questions"] == 4  # the 4 questions, then each difficulty among them (subsets_by)
    assert set(scores["benchmark"][1:]) <= {"demo/easy", "demo/hard"} and scores["n_questions"][1:].sum() == 4


def _one(artifacts):
    return artifacts[0] if isinstance(artifacts, list) else artifacts


def _run_pipeline(name: str, config: dict, path: Path):
    from pipelines import igpo

    write_config(config, path)
    return getattr(igpo, name).with_options(config_path=str(path))()
