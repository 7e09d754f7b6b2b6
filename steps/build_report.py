"""Step: the run's report, shown as the artifact's visualization in the dashboard and logged to MLflow."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import step
from zenml.types import HTMLString

from igpo.report import build_report as _build_report
from igpo.report import results_table
from steps._io import active_mlflow, log_step_and_model_metadata


@step
def build_report(
    base_scores: pd.DataFrame,
    sft_scores: pd.DataFrame,
    grpo_scores: pd.DataFrame,
    igpo_scores: pd.DataFrame,
    grpo_metrics: pd.DataFrame,
    igpo_metrics: pd.DataFrame,
) -> tuple[Annotated[HTMLString, "report"], Annotated[pd.DataFrame, "score_table"], Annotated[str, "results"]]:
    """All scores in one table, the HTML report, and the plain-text results the demo prints."""
    scores = pd.concat([base_scores, sft_scores, grpo_scores, igpo_scores], ignore_index=True)
    curves = {"grpo": grpo_metrics, "igpo": igpo_metrics}
    page = _build_report(scores, curves)
    text = results_table(scores, curves)
    headline = {f"{r.model}/{r.benchmark}/{r.metric}": float(r.score) for r in scores.itertuples()}
    for run, df in curves.items():
        if "all_wrong_fraction" in df and len(df):
            headline[f"{run}/all_wrong_fraction"] = float(df["all_wrong_fraction"].mean())
    log_step_and_model_metadata({"scores": headline})
    if (mlflow := active_mlflow()) is not None:
        mlflow.log_text(page, "report.html")
    return HTMLString(page), scores, text
