"""Masked diffusion LMs: loading (``loading``), the native model families (one module each) and the tiny
builder. The rest of the code imports from here."""

from igpo.models.loading import (
    DTYPES,
    MODEL_CARD,
    SHIFTED_MODEL_TYPES,
    BaseModelConfig,
    DiffusionLM,
    ModelConfig,
    finish_model_dir,
    load_model,
    load_model_dir,
    load_tokenizer,
    model_config_of,
    prepare_base_model,
    save_model,
    save_model_reference,
    wrap_model,
)

__all__ = [
    "DTYPES",
    "MODEL_CARD",
    "SHIFTED_MODEL_TYPES",
    "BaseModelConfig",
    "DiffusionLM",
    "ModelConfig",
    "finish_model_dir",
    "load_model",
    "load_model_dir",
    "load_tokenizer",
    "model_config_of",
    "prepare_base_model",
    "save_model",
    "save_model_reference",
    "wrap_model",
]
