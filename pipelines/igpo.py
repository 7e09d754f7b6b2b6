"""The IGPO recipe as ZenML pipelines (DAG wiring only; every setting lives in the YAML config).

    zenml pipeline run pipelines.igpo.igpo_pipeline --config configs/demo_tiny_cpu.yaml
    zenml pipeline run pipelines.igpo.rl_pipeline --config configs/rl_tiny_cpu.yaml
    zenml pipeline run pipelines.igpo.evaluate_pipeline --config configs/evaluate_tiny_cpu.yaml

``igpo_pipeline`` is the paper's comparison: ingest -> rewrite -> SFT, then GRPO and IGPO from the same
SFT checkpoint and seed, and the base, SFT, SFT+GRPO and SFT+IGPO models evaluated alike, then a report.
The smaller pipelines run one stage on artifacts of an earlier run (by artifact name, latest version, or id;
``parameters:`` of their YAML). Each pipeline checks its YAML last (``check_step_configs``), before ZenML
compiles the run.
"""

from __future__ import annotations

from zenml import pipeline
from zenml.client import Client
from zenml.config.cache_policy import CachePolicy

from pipelines.config_check import check_step_configs
from steps.build_report import build_report
from steps.evaluate_benchmarks import evaluate_benchmarks
from steps.ingest_datasets import ingest_datasets
from steps.prepare_base_model import prepare_base_model
from steps.rewrite_traces import rewrite_traces
from steps.train_grpo import train_grpo
from steps.train_igpo import train_igpo
from steps.train_sft import train_sft

# ZenML's default key (step code, parameters, inputs) plus the project's code and numeric library versions
# (igpo.provenance): a change in igpo/ or a new transformers re-runs the steps instead of replaying old results.
CACHE_POLICY = CachePolicy(cache_func="igpo.provenance.code_fingerprint")


@pipeline(enable_cache=True, cache_policy=CACHE_POLICY)
def igpo_pipeline() -> None:
    """ingest -> rewrite -> SFT -> {GRPO, IGPO} -> evaluate {base, SFT, GRPO, IGPO} -> report."""
    base = prepare_base_model()
    sft_table, rl_table, eval_table, _ = ingest_datasets()
    rewritten, _ = rewrite_traces(sft_table, base)
    sft_checkpoint, _ = train_sft(base, rewritten)
    grpo_checkpoint, grpo_metrics = train_grpo(sft_checkpoint, rl_table)
    igpo_checkpoint, igpo_metrics = train_igpo(sft_checkpoint, rl_table)
    scores = {}
    for name, checkpoint in (("base", base), ("sft", sft_checkpoint), ("sft+grpo", grpo_checkpoint),
                             ("sft+igpo", igpo_checkpoint)):
        step_id = "evaluate_" + name.replace("sft+", "")
        scores[name], _ = evaluate_benchmarks(checkpoint, eval_table, model_name=name, id=step_id)
    build_report(scores["base"], scores["sft"], scores["sft+grpo"], scores["sft+igpo"], grpo_metrics, igpo_metrics)
    check_step_configs()


def _artifact(name_or_id: str):
    """An artifact version of an earlier run, by id or by name (latest version; looked up when the step runs)."""
    return Client().get_artifact_version(name_or_id)


@pipeline(enable_cache=True, cache_policy=CACHE_POLICY)
def rl_pipeline(checkpoint: str = "sft_checkpoint", rl_table: str = "rl_table") -> None:
    """IGPO only (``train_igpo``), from an existing checkpoint artifact and RL table artifact (names or ids)."""
    train_igpo(_artifact(checkpoint), _artifact(rl_table))
    check_step_configs()


@pipeline(enable_cache=True, cache_policy=CACHE_POLICY)
def evaluate_pipeline(
    checkpoint: str = "igpo_checkpoint", eval_table: str = "eval_table", model_name: str = "sft+igpo"
) -> None:
    """Evaluation only (``evaluate_benchmarks``), of an existing checkpoint artifact on an existing benchmark
    table artifact (names or ids)."""
    evaluate_benchmarks(_artifact(checkpoint), _artifact(eval_table), model_name=model_name)
    check_step_configs()
