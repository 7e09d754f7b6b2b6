"""Scheduled retraining: ingest (new data) -> rewrite -> SFT -> IGPO -> evaluate -> promote if better.

    python -m pipelines.retrain --config configs/llada_8b_igpo_k8s.yaml --cron "0 3 * * 0"
    python -m pipelines.retrain --config configs/llada_8b_igpo_k8s.yaml            # once, now

The YAML is the igpo_pipeline config (same step ids; the GRPO and base/SFT/GRPO evaluation entries are
not used here and ZenML ignores them). Its ``extra.promotion`` is the promotion rule
(``igpo.promotion.PromotionConfig``), checked here before anything is submitted. On the Kubernetes
orchestrator a cron ``Schedule`` becomes a CronJob that starts the orchestrator pod on every tick.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from zenml import pipeline

from igpo.promotion import PromotionConfig
from pipelines.config_check import check_step_configs
from pipelines.igpo import CACHE_POLICY
from steps.evaluate_benchmarks import evaluate_benchmarks
from steps.ingest_datasets import ingest_datasets
from steps.prepare_base_model import prepare_base_model
from steps.promote_model import promote_model
from steps.rewrite_traces import rewrite_traces
from steps.train_igpo import train_igpo
from steps.train_sft import train_sft

DEFAULT_CRON = "0 3 * * 0"  # Sundays 03:00 (cluster time zone)


@pipeline(enable_cache=True, cache_policy=CACHE_POLICY)
def retrain_pipeline() -> None:
    """ingest -> rewrite -> SFT -> IGPO -> evaluate -> promote (the model version, if it wins)."""
    base = prepare_base_model()
    # Never cached: a retraining run exists to pick up new rows; everything downstream of a new table re-runs.
    sft_table, rl_table, eval_table, _ = ingest_datasets.with_options(enable_cache=False)()
    rewritten, _ = rewrite_traces(sft_table, base)
    sft_checkpoint, _ = train_sft(base, rewritten)
    checkpoint, _ = train_igpo(sft_checkpoint, rl_table)
    scores, _ = evaluate_benchmarks(checkpoint, eval_table, model_name="sft+igpo", id="evaluate_igpo")
    promote_model(scores)
    check_step_configs()


def promotion_rule(config_path: str | Path) -> PromotionConfig:
    """The promotion rule of a run config (``extra.promotion``), validated."""
    document = yaml.safe_load(Path(config_path).read_text())
    rule = (document.get("extra") or {}).get("promotion")
    if rule is None:
        raise ValueError(f"{config_path}: extra.promotion is required for the retraining pipeline")
    return PromotionConfig.model_validate(rule)


def configured(config_path: str | Path, cron: str | None = None):
    """The retraining pipeline with the run config applied and, with ``cron``, a cron schedule."""
    from zenml.config.schedule import Schedule

    promotion_rule(config_path)
    options: dict = {"config_path": str(config_path)}
    if cron:
        options["schedule"] = Schedule(name="igpo-retrain", cron_expression=cron)
    return retrain_pipeline.with_options(**options)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="run config YAML (e.g. configs/llada_8b_igpo_k8s.yaml)")
    parser.add_argument("--cron", nargs="?", const=DEFAULT_CRON, default=None,
                        help=f"cron expression of the schedule (flag alone: {DEFAULT_CRON!r}); omit to run once now")
    arguments = parser.parse_args()
    configured(arguments.config, arguments.cron)()
