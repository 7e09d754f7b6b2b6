"""The settings SFT and RL share word for word: how the weights are trained (LoRA or full, DeepSpeed or plain
torch), checkpointed, guarded against non-finite updates, and how progress is reported. ``TrainEngine.from_config``
reads them (with each stage's own optimizer fields, whose defaults differ between SFT and RL)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from igpo.checkpoint import CheckpointConfig
from igpo.config_base import StrictConfig
from igpo.distributed import LoRAConfig
from igpo.progress import ProgressMode


class TrainingRunConfig(StrictConfig):
    """Base of ``SFTConfig`` and ``RLConfig``."""

    lora: LoRAConfig | None = Field(None, description="Train LoRA adapters instead of every weight (None = full).")
    deepspeed_config: str | dict[str, Any] | None = Field(
        None, description="DeepSpeed JSON path (or dict) for multi-process ZeRO training; None = plain torch, one process."
    )
    checkpoint: CheckpointConfig = Field(CheckpointConfig(), description="Checkpoint cadence and resume.")
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute each transformer block's activations in the backward pass instead of storing them "
        "(igpo.models.recompute): much less activation memory for about one more forward of compute.",
    )
    max_nonfinite_in_a_row: int = Field(
        3, ge=1, description="Updates with a non-finite loss or gradient are skipped; stop after this many in a row."
    )
    progress: ProgressMode = Field(
        "auto",
        description="Progress report of the training loop: 'bar' (tqdm), 'log' (an INFO log line every "
        "log_every_steps steps and a final one), 'off'; 'auto' = a bar on an interactive terminal, log lines "
        "otherwise (a ZenML step, a pod, a redirected stream).",
    )
    log_every_steps: int = Field(
        10, ge=1, description="Steps between two progress log lines (progress 'log', or 'auto' without a terminal)."
    )
