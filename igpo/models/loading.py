"""Loading a masked diffusion LM and the one interface the rest of the code uses to get its logits.

Real targets: LLaDA-8B-Base/Instruct and LLaDA-1.5 (logits aligned to positions) and Dream-v0-7B (logits
shifted by one: the token at position i is predicted by the output at i-1), loaded with the project's own
classes by the ``model_type`` of their ``config.json`` (``igpo.models.families``); nothing in their checkpoint
directories is executed. Other models load through transformers' Auto classes, with ``trust_remote_code``
passed only when the model config turns it on. ``DiffusionLM.logits`` hides the shift: it always returns
logits aligned to the positions asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from igpo.config_base import StrictConfig
from igpo.models.families import NATIVE_FAMILIES, family_of, register_native_families
from igpo.models.tiny import TinyModelConfig, save_tiny
from igpo.tokens import SpecialTokens

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# model_type values (lower-cased) of families whose logits are shifted by one position (AR-initialised dLLMs).
SHIFTED_MODEL_TYPES = frozenset(name for name, family in NATIVE_FAMILIES.items() if family.logits_shift)
register_native_families()


def _quiet_progress_bars_unless_on_a_terminal() -> None:
    """transformers draws bars while loading and saving weights; off a terminal (a ZenML step stores every
    redraw as a log record) they are turned off, as the project's own progress is (igpo.progress)."""
    import sys

    from transformers.utils import logging as hf_logging

    from igpo.progress import is_terminal

    if not is_terminal(sys.stderr):
        hf_logging.disable_progress_bar()


class ModelConfig(StrictConfig):
    """Which model to load and how."""

    name_or_path: str = Field(description="Hugging Face id (e.g. GSAI-ML/LLaDA-8B-Instruct) or local directory.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to pin; None for local dirs.")
    trust_remote_code: bool = Field(
        False,
        description="Run the model repository's own Python code, for families this project does not implement "
        "natively. LLaDA and Dream never need it and never run it (native classes); off by default.",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Parameter dtype.")
    logits_shift: Literal["auto", 0, 1] = Field(
        "auto",
        description="1 when position i is predicted at i-1 (Dream); 'auto' reads it from the config's model_type.",
    )
    auto_class: Literal["auto", "AutoModel", "AutoModelForCausalLM", "AutoModelForMaskedLM"] = Field(
        "auto",
        description="transformers Auto class for models outside the native families; 'auto' uses AutoModel for "
        "remote-code models that map it and AutoModelForCausalLM otherwise. LLaDA and Dream ignore it.",
    )


@dataclass
class DiffusionLM:
    """A loaded masked diffusion LM: the HF module, its tokenizer, special tokens and logit alignment."""

    model: torch.nn.Module
    tokenizer: Any
    tokens: SpecialTokens
    logits_shift: int = 0
    supports_logits_to_keep: bool = False

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def logits(
        self,
        input_ids: torch.Tensor,  # [N, T]
        attention_mask: torch.Tensor | None = None,  # [N, T], 1 = real token, 0 = left padding
        positions: torch.Tensor | None = None,  # [M] sorted positions whose logits are wanted
        **model_kwargs: Any,  # passed to the model as they are (the KV cache, position_ids, ...)
    ) -> torch.Tensor:
        """Logits aligned to positions: ``out[:, j]`` predicts the token at ``positions[j]`` (all if None).

        Only the wanted positions go through the LM head where the model supports ``logits_to_keep``,
        which matters at 126k vocabulary: the sampler asks for one block, not the whole sequence.
        Positions index ``input_ids`` (with a KV cache: the window fed, not the whole sequence).
        """
        wanted = positions if positions is not None else torch.arange(input_ids.shape[1], device=input_ids.device)
        # Shifted models predict position i from output i-1; position 0 has no predictor and reuses its own.
        source = (wanted - self.logits_shift).clamp_min(0)
        kwargs: dict[str, Any] = dict(model_kwargs)
        if attention_mask is not None and not bool(attention_mask.all()):
            kwargs["attention_mask"] = attention_mask
        if self.supports_logits_to_keep and positions is not None:
            out = self.model(input_ids=input_ids, logits_to_keep=source, **kwargs).logits  # [N, M, V]
            return out
        out = self.model(input_ids=input_ids, **kwargs).logits  # [N, T, V]
        return out[:, source]


def _wants_logits_to_keep(model: torch.nn.Module) -> bool:
    import inspect

    return "logits_to_keep" in inspect.signature(model.forward).parameters


def wrap_model(model: torch.nn.Module, tokenizer: Any, logits_shift: int | None = None) -> DiffusionLM:
    """Wrap an already-built HF model (the tiny model in tests, or one loaded elsewhere)."""
    if logits_shift is None:
        model_type = str(getattr(model.config, "model_type", "")).lower()
        logits_shift = 1 if model_type in SHIFTED_MODEL_TYPES else 0
    return DiffusionLM(
        model=model,
        tokenizer=tokenizer,
        tokens=SpecialTokens.from_tokenizer(tokenizer, model.config),
        logits_shift=logits_shift,
        supports_logits_to_keep=_wants_logits_to_keep(model),
    )


def model_type_of(name_or_path: str, revision: str | None = None) -> str | None:
    """The ``model_type`` of a checkpoint's ``config.json``, read as data (no code runs)."""
    from transformers import PreTrainedConfig

    config_dict, _ = PreTrainedConfig.get_config_dict(name_or_path, revision=revision)
    return config_dict.get("model_type")


def load_model(config: ModelConfig, device: str | torch.device = "cpu") -> DiffusionLM:
    """Load model and tokenizer from a Hugging Face id or a local directory, safetensors only. LLaDA and Dream
    (by ``model_type``) load with the native classes; anything else through transformers' Auto classes."""
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    _quiet_progress_bars_unless_on_a_terminal()
    shift = None if config.logits_shift == "auto" else int(config.logits_shift)
    family = family_of(model_type_of(config.name_or_path, config.revision))
    if family is not None:
        model = family.model_class.from_pretrained(
            config.name_or_path, revision=config.revision, dtype=DTYPES[config.dtype], use_safetensors=True
        )
        tokenizer = family.load_tokenizer(config.name_or_path, config.revision)
        return wrap_model(model.to(device), tokenizer, logits_shift=shift)
    common = {"revision": config.revision, "trust_remote_code": config.trust_remote_code}
    hf_config = AutoConfig.from_pretrained(config.name_or_path, **common)
    auto_class = config.auto_class
    if auto_class == "auto":
        auto_map = getattr(hf_config, "auto_map", None) or {}
        auto_class = "AutoModel" if config.trust_remote_code and "AutoModel" in auto_map else "AutoModelForCausalLM"
    model = getattr(transformers, auto_class).from_pretrained(
        config.name_or_path, dtype=DTYPES[config.dtype], use_safetensors=True, **common
    )
    tokenizer = AutoTokenizer.from_pretrained(config.name_or_path, **common)
    return wrap_model(model.to(device), tokenizer, logits_shift=shift)


# A model directory handed between pipeline steps carries this file: how to load what is in it.
MODEL_CARD = "igpo_model.json"


def save_model(lm: DiffusionLM, output_dir: str | Path, config: ModelConfig) -> Path:
    """Save weights (safetensors), tokenizer and the loading settings of ``config`` to ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _quiet_progress_bars_unless_on_a_terminal()
    lm.model.save_pretrained(output_dir, safe_serialization=True)
    return finish_model_dir(lm, output_dir, config)


def finish_model_dir(lm: DiffusionLM, output_dir: str | Path, config: ModelConfig) -> Path:
    """Add tokenizer and loading card to a directory that already holds the weights (a trainer's output)."""
    output_dir = Path(output_dir)
    lm.tokenizer.save_pretrained(output_dir)
    card = config.model_copy(update={"name_or_path": ".", "revision": None, "logits_shift": lm.logits_shift})
    (output_dir / MODEL_CARD).write_text(card.model_dump_json(indent=2))
    return output_dir


def save_model_reference(config: ModelConfig, output_dir: str | Path) -> Path:
    """A model directory that points at a hub id or a path instead of holding weights (an 8B base model
    need not be copied into the artifact store to be the start of a lineage)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / MODEL_CARD).write_text(config.model_dump_json(indent=2))
    return output_dir


def model_config_of(model_dir: str | Path) -> ModelConfig:
    """The ModelConfig a model directory was saved with; a plain HF directory loads with the defaults."""
    model_dir = Path(model_dir)
    card = model_dir / MODEL_CARD
    if not card.exists():
        return ModelConfig(name_or_path=str(model_dir))
    try:
        config = ModelConfig.model_validate_json(card.read_text())
    except ValueError as err:
        raise ValueError(f"{card}: not a valid model card: {err}") from err
    if config.name_or_path == ".":
        config = config.model_copy(update={"name_or_path": str(model_dir)})
    return config


def load_model_dir(model_dir: str | Path, device: str | torch.device = "cpu") -> DiffusionLM:
    """Load a model directory written by ``save_model`` / ``save_model_reference`` (or any HF directory)."""
    return load_model(model_config_of(model_dir), device)


class BaseModelConfig(StrictConfig):
    """The model a run starts from: the tiny dLLM built in-process, or a pretrained one by id or path."""

    source: Literal["tiny", "pretrained"] = Field(
        "tiny", description="'tiny': build the CPU demo model; 'pretrained': load `model` (LLaDA, Dream, ...)."
    )
    tiny: TinyModelConfig | None = Field(None, description="Size of the tiny model (source='tiny'); defaults if None.")
    model: ModelConfig | None = Field(None, description="The pretrained model (source='pretrained').")

    @model_validator(mode="after")
    def _source_matches(self) -> BaseModelConfig:
        if self.source == "pretrained" and self.model is None:
            raise ValueError("model: required when source is 'pretrained'")
        if self.source == "tiny" and self.model is not None:
            raise ValueError("model: only used when source is 'pretrained' (source is 'tiny')")
        return self


def prepare_base_model(config: BaseModelConfig, output_dir: str | Path) -> Path:
    """Write the base model directory: tiny weights + tokenizer, or a reference to the pretrained model."""
    if config.source == "tiny":
        out = save_tiny(output_dir, config.tiny)
        (Path(out) / MODEL_CARD).write_text(ModelConfig(name_or_path=".").model_dump_json(indent=2))
        return Path(out)
    assert config.model is not None
    return save_model_reference(config.model, output_dir)


def load_tokenizer(model_dir: str | Path) -> Any:
    """Only the tokenizer of a model directory (token budgets are measured with the target's tokenizer)."""
    from transformers import AutoTokenizer

    config = model_config_of(model_dir)
    family = family_of(model_type_of(config.name_or_path, config.revision))
    if family is not None:
        return family.load_tokenizer(config.name_or_path, config.revision)
    return AutoTokenizer.from_pretrained(
        config.name_or_path, revision=config.revision, trust_remote_code=config.trust_remote_code
    )
