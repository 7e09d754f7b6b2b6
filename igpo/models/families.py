"""The model families this project implements natively, by the ``model_type`` of their hub ``config.json``.

A checkpoint of one of these families loads with the project's own classes (``igpo/models/llada.py``,
``igpo/models/dream.py``): its ``config.json`` and safetensors are read as they are, its tokenizer files are
read as data, and nothing shipped in the checkpoint directory is executed, whatever ``trust_remote_code`` says
(``auto_map`` is ignored). Registering them with transformers' Auto classes also makes ``AutoModel`` /
``AutoConfig`` load these directories natively.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedConfig, PreTrainedModel

from igpo.models.dream import DreamConfig, DreamModel, load_dream_tokenizer
from igpo.models.llada import LLaDAConfig, LLaDAModelLM, load_llada_tokenizer


@dataclass(frozen=True)
class Family:
    """One natively implemented family: its classes, its tokenizer loader and its logit alignment."""

    name: str
    config_class: type[PreTrainedConfig]
    model_class: type[PreTrainedModel]
    load_tokenizer: Callable[[str, str | None], Any]  # (name_or_path, revision) -> fast tokenizer
    logits_shift: int  # 1: position i is predicted by the output at i-1 (AR-initialised Dream)


FAMILIES = (
    # GSAI-ML/LLaDA-8B-Base, LLaDA-8B-Instruct, LLaDA-1.5
    Family("LLaDA", LLaDAConfig, LLaDAModelLM, load_llada_tokenizer, 0),
    # Dream-org/Dream-v0-Base-7B, Dream-v0-Instruct-7B
    Family("Dream", DreamConfig, DreamModel, load_dream_tokenizer, 1),
)
# model_type (lower-cased: Dream's hub config says "Dream") -> family
NATIVE_FAMILIES: dict[str, Family] = {f.config_class.model_type.lower(): f for f in FAMILIES}


def family_of(model_type: str | None) -> Family | None:
    return NATIVE_FAMILIES.get(str(model_type or "").lower())


def register_native_families() -> None:
    """Map each family's model_type to its classes in transformers' Auto registries (idempotent)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    for family in FAMILIES:
        AutoConfig.register(family.config_class.model_type, family.config_class, exist_ok=True)
        AutoModel.register(family.config_class, family.model_class, exist_ok=True)
        AutoModelForCausalLM.register(family.config_class, family.model_class, exist_ok=True)
