"""A truncated or corrupted checkpoint met on resume: a clear error naming the file, and nothing in the
checkpoint directory is overwritten (tests/igpo/test_checkpoint.py covers load_checkpoint itself; this is
the trainer resuming from it)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from igpo.checkpoint import CheckpointConfig, CheckpointError
from igpo.models import wrap_model
from igpo.models.tiny import TinyModelConfig, build_tiny_model
from igpo.sft import SFTConfig, train_sft

QUESTIONS, ANSWERS = ["red", "blue", "green", "cyan"], ["apple 1", "sky 22", "grass 333", "sea 4444"]


def _lm(tokenizer):
    model = build_tiny_model(tokenizer, TinyModelConfig(num_layers=1, hidden_size=32, head_dim=8, intermediate_size=64))
    return wrap_model(model.eval(), tokenizer)


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _flip_bytes(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[:16] = b"\xff" * 16  # same size: only reading it can tell
    file.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("name", "damage"),
    [("model/model.safetensors", _truncate), ("optimizer.pt", _truncate), ("rng/rank-00000.safetensors", _flip_bytes),
     ("model/model.safetensors", _flip_bytes), ("trainer_state.json", _flip_bytes)],
)
def test_resuming_from_a_damaged_checkpoint_names_the_file_and_overwrites_nothing(tiny_tokenizer, tmp_path, name, damage):
    config = SFTConfig(steps=2, batch_size=2, max_response_tokens=16, checkpoint=CheckpointConfig(every_steps=1, keep_last=None))
    train_sft(_lm(tiny_tokenizer), QUESTIONS, ANSWERS, config, progress=False, checkpoint_dir=tmp_path)
    damage(tmp_path / "step-00000002" / name)
    before = _snapshot(tmp_path)
    longer = config.model_copy(update={"steps": 4})
    with pytest.raises(CheckpointError, match=name.split("/")[-1]):
        train_sft(_lm(tiny_tokenizer), QUESTIONS, ANSWERS, longer, progress=False, checkpoint_dir=tmp_path)
    assert _snapshot(tmp_path) == before
