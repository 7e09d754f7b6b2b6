"""Special token ids come from the tokenizer and the model config, never from literals."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from igpo.tokens import SpecialTokens


def test_ids_from_tiny_tokenizer(tiny_tokenizer):
    tokens = SpecialTokens.from_tokenizer(tiny_tokenizer)
    assert tokens.mask_id == tiny_tokenizer.convert_tokens_to_ids("<|mdm_mask|>")
    assert tokens.eos_id == tiny_tokenizer.eos_token_id
    assert tokens.eot_id == tiny_tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert tokens.pad_id == tiny_tokenizer.pad_token_id
    assert set(tokens.stop_ids) == {tokens.eos_id, tokens.eot_id}


class _Tok:
    """A tokenizer without a mask token, like LLaDA's, whose mask id lives in the model config."""

    mask_token_id = None
    eos_token_id = 126081
    pad_token_id = None

    def get_vocab(self):
        return {"<|eot_id|>": 126348, "<|endoftext|>": 126081}


def test_mask_id_from_model_config_when_tokenizer_has_none():
    tokens = SpecialTokens.from_tokenizer(_Tok(), SimpleNamespace(mask_token_id=126336, eos_token_id=126081))
    assert tokens == SpecialTokens(mask_id=126336, eos_id=126081, eot_id=126348, pad_id=126081)


def test_missing_mask_id_is_a_clear_error():
    with pytest.raises(ValueError, match="mask"):
        SpecialTokens.from_tokenizer(_Tok(), SimpleNamespace())
