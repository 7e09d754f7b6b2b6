"""Step: the model a run starts from (the tiny dLLM, or a reference to a pretrained one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from zenml import step

from igpo.models import BaseModelConfig
from igpo.models import prepare_base_model as _prepare
from steps._io import new_output_dir


@step
def prepare_base_model(config: BaseModelConfig) -> Annotated[Path, "base_model"]:
    """Write the base model directory (weights + tokenizer + igpo_model.json, or a reference card)."""
    return _prepare(config, new_output_dir("base-model"))
