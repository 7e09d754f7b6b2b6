"""Step: GRPO RL (the IGPO loop with inpainting off, ``algorithm: grpo``), the paper's baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import step

from igpo.rl.config import RLConfig
from steps._rl import run_rl_step


@step
def train_grpo(
    checkpoint: Path, rl_table: pd.DataFrame, config: RLConfig, nproc: int | None = None
) -> tuple[Annotated[Path, "grpo_checkpoint"], Annotated[pd.DataFrame, "grpo_metrics"]]:
    """The GRPO checkpoint and one row of metrics per RL step; resumes after a crash. ``config.algorithm`` must
    be ``grpo``; several GPUs or ``nproc`` > 1 run DeepSpeed ranks (igpo.launch)."""
    output, table = run_rl_step(checkpoint, rl_table, config, nproc, algorithms=("grpo",),
                                checkpoint_name="grpo_checkpoint")
    return output, table  # a tuple literal: ZenML reads the return statement to count the outputs
