"""Special token ids, read from the tokenizer and the model config; never written as literals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Names the supported model families give their special tokens, most specific first.
MASK_TOKEN_NAMES = ("<|mdm_mask|>", "<|mask|>", "[MASK]", "<mask>")
EOT_TOKEN_NAMES = ("<|eot_id|>", "<|im_end|>", "<end_of_turn>")


@dataclass(frozen=True)
class SpecialTokens:
    """The ids the masked-diffusion code needs.

    mask_id: the ``[MASK]`` token of the forward process. eos_id: end of sequence, also the padding
    of SFT responses (LLaDA convention). eot_id: end of turn in chat templates; a completion ends at the
    first eos or eot. pad_id: left padding of prompts in a batch.
    """

    mask_id: int
    eos_id: int
    eot_id: int
    pad_id: int

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end a completion (``completion_mask`` stops after the first of them)."""
        return tuple(sorted({self.eos_id, self.eot_id}))

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, model_config: Any | None = None) -> SpecialTokens:
        """Resolve ids from the tokenizer first, then the model config (LLaDA and Dream configs carry
        ``mask_token_id``), then well-known token names. Raises ValueError naming what is missing."""
        vocab = tokenizer.get_vocab()

        def by_name(names: tuple[str, ...]) -> int | None:
            return next((vocab[n] for n in names if n in vocab), None)

        def first(*candidates: int | None) -> int | None:
            return next((c for c in candidates if c is not None), None)

        config_mask = getattr(model_config, "mask_token_id", None) if model_config is not None else None
        mask_id = first(getattr(tokenizer, "mask_token_id", None), config_mask, by_name(MASK_TOKEN_NAMES))
        eos_id = first(
            getattr(tokenizer, "eos_token_id", None),
            getattr(model_config, "eos_token_id", None) if model_config is not None else None,
        )
        if isinstance(eos_id, list):
            eos_id = eos_id[0]
        missing = [name for name, value in (("mask", mask_id), ("eos", eos_id)) if value is None]
        if missing:
            raise ValueError(
                f"cannot find the {' and '.join(missing)} token id in tokenizer "
                f"{type(tokenizer).__name__} or the model config; a masked diffusion model needs both"
            )
        eot_id = first(by_name(EOT_TOKEN_NAMES), eos_id)
        pad_id = first(getattr(tokenizer, "pad_token_id", None), eos_id)
        return cls(mask_id=int(mask_id), eos_id=int(eos_id), eot_id=int(eot_id), pad_id=int(pad_id))
