"""Model loading, the save/load round trip, and logits aligned to positions for shifted models."""

from __future__ import annotations

import pytest
import torch

from igpo.models import ModelConfig, load_model, wrap_model
from igpo.models.tiny import TinyModelConfig, save_tiny


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny"), TinyModelConfig(num_layers=2, hidden_size=32, head_dim=8))


def test_save_load_round_trip_gives_identical_logits(tiny_dir, tmp_path):
    lm = load_model(ModelConfig(name_or_path=str(tiny_dir)))
    x = torch.randint(10, 60, (2, 12), generator=torch.Generator().manual_seed(0))
    before = lm.logits(x)
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    again = load_model(ModelConfig(name_or_path=str(tmp_path)))
    assert torch.equal(before, again.logits(x))
    assert again.tokens == lm.tokens
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))


def test_model_is_bidirectional(tiny_dir):
    lm = load_model(ModelConfig(name_or_path=str(tiny_dir)))
    x = torch.randint(10, 60, (1, 8), generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[0, -1] = (y[0, -1] + 1) % 60
    assert not torch.allclose(lm.logits(x)[0, 0], lm.logits(y)[0, 0])  # the last token changes the first logit


def test_positions_select_the_same_logits_as_full_pass(tiny_dir):
    lm = load_model(ModelConfig(name_or_path=str(tiny_dir)))
    assert lm.supports_logits_to_keep
    x = torch.randint(10, 60, (2, 10), generator=torch.Generator().manual_seed(0))
    positions = torch.tensor([3, 4, 9])
    torch.testing.assert_close(lm.logits(x, positions=positions), lm.logits(x)[:, positions])


def test_shifted_model_logits_are_aligned_to_positions(tiny_dir):
    """Dream predicts position i from output i-1: the wrapper must hand back output i-1 for position i."""
    plain = load_model(ModelConfig(name_or_path=str(tiny_dir)))
    shifted = wrap_model(plain.model, plain.tokenizer, logits_shift=1)
    x = torch.randint(10, 60, (2, 10), generator=torch.Generator().manual_seed(0))
    raw = plain.logits(x)  # [2, 10, V], unshifted
    aligned = shifted.logits(x)
    torch.testing.assert_close(aligned[:, 1:], raw[:, :-1])
    torch.testing.assert_close(aligned[:, 0], raw[:, 0])
    positions = torch.tensor([4, 7])
    torch.testing.assert_close(shifted.logits(x, positions=positions), raw[:, positions - 1])


def test_dream_model_type_is_shifted_automatically(tiny_dir):
    plain = load_model(ModelConfig(name_or_path=str(tiny_dir)))
    plain.model.config.model_type = "Dream"
    assert wrap_model(plain.model, plain.tokenizer).logits_shift == 1


def test_trust_remote_code_is_off_unless_config_turns_it_on(tmp_path, monkeypatch):
    """A model outside the native families (a Gemma-3 here) loads through the Auto classes, without remote code
    unless the config turns it on (the native families never pass it: tests/igpo/models/test_loading.py)."""
    import transformers

    gemma_dir = save_tiny(tmp_path, TinyModelConfig(architecture="gemma3", num_layers=1, hidden_size=32, head_dim=8))

    seen = []
    real = transformers.AutoConfig.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", spy)
    assert ModelConfig(name_or_path="x").trust_remote_code is False
    load_model(ModelConfig(name_or_path=str(gemma_dir)))
    assert seen and all(flag is False for flag in seen)


def test_model_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="trust_remote"):
        ModelConfig(name_or_path="x", trust_remote=True)


def test_model_dir_round_trip_keeps_loading_settings(tiny_dir, tmp_path):
    from igpo.models import load_model_dir, model_config_of, save_model, save_model_reference

    config = ModelConfig(name_or_path=str(tiny_dir), logits_shift=1)
    lm = load_model(config)
    out = save_model(lm, tmp_path / "ckpt", config)
    again = load_model_dir(out)
    assert again.logits_shift == 1
    x = torch.randint(10, 60, (1, 6), generator=torch.Generator().manual_seed(0))
    assert torch.equal(lm.logits(x), again.logits(x))
    ref = save_model_reference(ModelConfig(name_or_path="GSAI-ML/LLaDA-8B-Instruct", trust_remote_code=True), tmp_path / "ref")
    assert model_config_of(ref).name_or_path == "GSAI-ML/LLaDA-8B-Instruct"
    assert model_config_of(ref).trust_remote_code is True
    (tmp_path / "ckpt" / "igpo_model.json").write_text("{not json")
    with pytest.raises(ValueError, match="igpo_model.json"):
        model_config_of(tmp_path / "ckpt")
