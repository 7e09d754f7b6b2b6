"""Step: IGPO RL (or DAPO's dynamic sampling, ``algorithm: dynamic``) from a checkpoint on prompts with y* traces."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import step

from igpo.rl.config import RLConfig
from steps._rl import run_rl_step


@step
def train_igpo(
    checkpoint: Path, rl_table: pd.DataFrame, config: RLConfig, nproc: int | None = None
) -> tuple[Annotated[Path, "igpo_checkpoint"], Annotated[pd.DataFrame, "igpo_metrics"]]:
    """The IGPO checkpoint and one row of metrics per RL step; resumes after a crash. ``config.algorithm`` is
    ``igpo`` or ``dynamic`` (GRPO is ``train_grpo``); several GPUs or ``nproc`` > 1 run DeepSpeed ranks."""
    output, table = run_rl_step(checkpoint, rl_table, config, nproc, algorithms=("igpo", "dynamic"),
                                checkpoint_name="igpo_checkpoint")
    return output, table  # a tuple literal: ZenML reads the return statement to count the outputs
