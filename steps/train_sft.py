"""Step: length-aligned masked-diffusion SFT of the base model on the (rewritten) SFT table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import step

from igpo.launch import num_processes
from igpo.models import finish_model_dir, load_model_dir, model_config_of
from igpo.sft import SFTConfig
from igpo.sft import train_sft as _train_sft
from steps._io import (
    MetricsLog,
    log_step_and_model_metadata,
    new_output_dir,
    resumable_work_dir,
    run_launched,
)


@step
def train_sft(
    base_model: Path, sft_table: pd.DataFrame, config: SFTConfig, nproc: int | None = None
) -> tuple[Annotated[Path, "sft_checkpoint"], Annotated[pd.DataFrame, "sft_metrics"]]:
    """The SFT checkpoint (safetensors directory) and the per-step loss table; resumes after a crash.
    With several GPUs (or ``nproc`` > 1) the trainer runs as one DeepSpeed rank per GPU (igpo.launch)."""
    import torch

    work_dir = resumable_work_dir(config)
    if (n := num_processes(nproc)) > 1:
        output, table, launched = run_launched("sft", base_model, sft_table, config, n, work_dir, "sft/")
        log_step_and_model_metadata({"sft": {**launched, "processes": n}})
        return output, table
    lm = load_model_dir(base_model, "cuda" if torch.cuda.is_available() else "cpu")
    output = new_output_dir("sft")
    metrics = MetricsLog(work_dir, "sft/")
    result = _train_sft(
        lm, sft_table["question"].tolist(), sft_table["reasoning"].tolist(), config,
        checkpoint_dir=work_dir / "checkpoints", output_dir=output, on_step=metrics,
    )
    finish_model_dir(lm, output, model_config_of(base_model))
    log_step_and_model_metadata({"sft": {"final_loss": result.losses[-1] if result.losses else None,
                                         "dropped": result.dropped, "truncated": result.truncated,
                                         "resumed_from": result.resumed_from}})
    return output, metrics.table()
