"""The settings SFT and RL share word for word: how the weights are trained (LoRA or full, DeepSpeed or plain
torch), checkpointed, and guarded against non-finite updates. ``TrainEngine.from_config`` reads them (with
each stage's own optimizer fields, whose defaults differ between SFT and RL)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from igpo.checkpoint import CheckpointConfig
from igpo.config_base import StrictConfig
from igpo.distributed import LoRAConfig


class TrainingRunConfig(StrictConfig):
    """Base of ``SFTConfig`` and ``RLConfig``."""

    lora: LoRAConfig | None = Field(None, description="Train LoRA adapters instead of every weight (None = full).")
    deepspeed_config: str | dict[str, Any] | None = Field(
        None, description="DeepSpeed JSON path (or dict) for multi-process ZeRO training; None = plain torch, one process."
    )
    checkpoint: CheckpointConfig = Field(CheckpointConfig(), description="Checkpoint cadence and resume.")
    max_nonfinite_in_a_row: int = Field(
        3, ge=1, description="Updates with a non-finite loss or gradient are skipped; stop after this many in a row."
    )
