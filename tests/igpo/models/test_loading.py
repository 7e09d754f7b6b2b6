"""load_model picks the native LLaDA / Dream classes by model_type, never runs code shipped with a checkpoint,
reads a hub id from the Hugging Face cache, and reloads what the project saves."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from igpo.models import ModelConfig, load_model, load_model_dir, load_tokenizer, save_model
from igpo.models.dream import DreamModel
from igpo.models.families import NATIVE_FAMILIES
from igpo.models.llada import LLaDAModelLM

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hub_checkpoints"
FAMILIES = {"llada": LLaDAModelLM, "dream": DreamModel}
HUB_IDS = {"llada": "GSAI-ML/LLaDA-8B-Instruct", "dream": "Dream-org/Dream-v0-Instruct-7B"}


def _checkpoint_with_booby_trapped_remote_code(family: str, tmp_path: Path) -> tuple[Path, Path]:
    """The fixture checkpoint plus the remote-code files its config.json's auto_map names, each of which
    would create ``sentinel`` when imported."""
    directory = tmp_path / family
    shutil.copytree(FIXTURES / family / "checkpoint", directory)
    sentinel = tmp_path / "remote_code_ran"
    trap = f"open({str(sentinel)!r}, 'w').write('ran')\nraise RuntimeError('remote code executed')\n"
    for module in ("configuration", "modeling", "tokenization"):
        (directory / f"{module}_{family}.py").write_text(trap)
    return directory, sentinel


@pytest.mark.parametrize("trust_remote_code", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_native_class_by_model_type_and_no_checkpoint_code_runs(family, trust_remote_code, tmp_path):
    directory, sentinel = _checkpoint_with_booby_trapped_remote_code(family, tmp_path)
    lm = load_model(ModelConfig(name_or_path=str(directory), trust_remote_code=trust_remote_code))
    assert type(lm.model) is FAMILIES[family]
    assert lm.logits_shift == NATIVE_FAMILIES[family].logits_shift
    assert lm.supports_logits_to_keep
    assert lm.tokenizer.is_fast  # hint offsets need a fast tokenizer (Dream's hub tokenizer is slow only)
    assert lm.tokens.mask_id == lm.model.config.mask_token_id
    assert load_tokenizer(directory).is_fast
    assert not sentinel.exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_hub_id_loads_natively_from_the_hub_cache(family, tmp_path, monkeypatch):
    """``load_model("GSAI-ML/LLaDA-8B-Instruct")``: the id resolves through the Hugging Face cache (laid out
    here by hand, offline, as a download would leave it) to the native class."""
    import huggingface_hub.constants as hub_constants

    repo = HUB_IDS[family]
    cache = tmp_path / "hub"
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    shutil.copytree(FIXTURES / family / "checkpoint", snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    lm = load_model(ModelConfig(name_or_path=repo))
    assert type(lm.model) is FAMILIES[family]
    local = load_model(ModelConfig(name_or_path=str(FIXTURES / family / "checkpoint")))
    ids = torch.tensor([[1, 2, 3, lm.tokens.mask_id]])
    with torch.no_grad():
        assert torch.equal(lm.logits(ids), local.logits(ids))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_saved_model_directory_reloads_natively_and_identically(family, tmp_path):
    lm = load_model(ModelConfig(name_or_path=str(FIXTURES / family / "checkpoint")))
    saved = save_model(lm, tmp_path / "saved", ModelConfig(name_or_path="unused"))
    config = (saved / "config.json").read_text()
    assert "auto_map" not in config
    again = load_model_dir(saved)
    assert type(again.model) is FAMILIES[family]
    assert again.tokens == lm.tokens and again.logits_shift == lm.logits_shift
    ids = lm.tokenizer("1+1=2 [MASK]", return_tensors="pt")["input_ids"]
    assert again.tokenizer("1+1=2 [MASK]", return_tensors="pt")["input_ids"].tolist() == ids.tolist()
    with torch.no_grad():
        assert torch.equal(again.logits(ids), lm.logits(ids))


def test_bfloat16_loads_in_bfloat16():
    lm = load_model(ModelConfig(name_or_path=str(FIXTURES / "llada" / "checkpoint"), dtype="bfloat16"))
    assert next(lm.model.parameters()).dtype == torch.bfloat16
