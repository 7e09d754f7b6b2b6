"""Step: score one checkpoint on the configured benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import step

from igpo.evaluate import EvalConfig, evaluate_model
from igpo.models import load_model_dir
from steps._io import active_mlflow, log_step_and_model_metadata


@step
def evaluate_benchmarks(
    checkpoint: Path, eval_table: pd.DataFrame, config: EvalConfig, model_name: str
) -> tuple[Annotated[pd.DataFrame, "scores"], Annotated[pd.DataFrame, "samples"]]:
    """Scores table and per-sample table of ``checkpoint``; ``eval_table`` holds every benchmark, by ``source``."""
    import torch

    lm = load_model_dir(checkpoint, "cuda" if torch.cuda.is_available() else "cpu")
    tables = {name: group.reset_index(drop=True) for name, group in eval_table.groupby("source")}
    scores, samples = evaluate_model(lm, tables, config, model_name)
    headline = {f"{r.benchmark}/{r.metric}": float(r.score) for r in scores.itertuples()}
    log_step_and_model_metadata({f"scores/{model_name}": headline})
    if (mlflow := active_mlflow()) is not None:
        mlflow.log_metrics({f"{model_name}/{k}".replace("@", "_at_"): v for k, v in headline.items()})
    return scores, samples
