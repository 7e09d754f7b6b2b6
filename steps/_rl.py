"""The body the two RL steps share: ``train_grpo`` and ``train_igpo`` run the same loop (``igpo.rl.trainer``)
and differ only in the names of their outputs, so "the latest igpo_checkpoint" is never a GRPO model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from igpo.launch import num_processes
from igpo.models import finish_model_dir, load_model_dir, model_config_of
from igpo.rl.config import RLConfig
from igpo.rl.trainer import train_rl
from steps._io import (
    MetricsLog,
    log_artifact_metadata,
    log_step_and_model_metadata,
    new_output_dir,
    resumable_work_dir,
    run_launched,
)


def run_rl_step(
    checkpoint: Path, rl_table: pd.DataFrame, config: RLConfig, nproc: int | None, *,
    algorithms: tuple[str, ...], checkpoint_name: str,
) -> tuple[Path, pd.DataFrame]:
    """The RL checkpoint and one row of metrics per RL step (flattened); resumes after a crash. ``algorithms``
    are those whose checkpoint may carry this step's output names. With several GPUs (or ``nproc`` > 1) the
    trainer runs as one DeepSpeed rank per GPU (igpo.launch)."""
    import torch

    if config.algorithm not in algorithms:
        raise ValueError(f"config.algorithm: {config.algorithm!r} cannot be trained by the step that outputs "
                         f"{checkpoint_name!r} (allowed: {', '.join(algorithms)})")
    work_dir = resumable_work_dir(config)
    if (n := num_processes(nproc)) > 1:
        output, table, launched = run_launched("rl", checkpoint, rl_table, config, n, work_dir, f"{config.algorithm}/")
        resumed_from = launched["resumed_from"]
    else:
        lm = load_model_dir(checkpoint, "cuda" if torch.cuda.is_available() else "cpu")
        output = new_output_dir(config.algorithm)
        metrics = MetricsLog(work_dir, f"{config.algorithm}/")
        result = train_rl(lm, rl_table.to_dict("records"), config, checkpoint_dir=str(work_dir / "checkpoints"),
                          output_dir=str(output), on_step=metrics)
        finish_model_dir(lm, output, model_config_of(checkpoint))
        table, resumed_from = metrics.table(), result.resumed_from
    summary = {k: float(table[k].mean()) for k in ("all_wrong_fraction", "zero_advantage_fraction", "accuracy") if k in table}
    log_step_and_model_metadata({config.algorithm: {**summary, "resumed_from": resumed_from}})
    log_artifact_metadata(checkpoint_name, {"algorithm": config.algorithm})
    return output, table
