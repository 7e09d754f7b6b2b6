"""Checkpoints: atomic, latest complete one wins, pruning, RNG round trip, clear errors on bad files."""

from __future__ import annotations

import json

import pytest
import torch

from igpo.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from igpo.distributed import TrainEngine
from igpo.models import wrap_model
from igpo.models.tiny import TinyModelConfig, build_tiny_model


def _engine(module):
    return TrainEngine(module, learning_rate=1e-2, betas=(0.9, 0.99), weight_decay=0.1, grad_clip=1.0,
                       warmup_steps=3, micro_batches_per_update=1, micro_batch_size=1)


def _train_one_step(engine, lm):
    ids = torch.randint(10, 90, (2, 8), generator=torch.Generator().manual_seed(0))
    loss = lm.model(input_ids=ids).logits.float().logsumexp(-1).mean()
    engine.backward(loss, boundary=True)


@pytest.fixture
def saved(tiny_lm, tmp_path):
    engine = _engine(tiny_lm.model)
    _train_one_step(engine, tiny_lm)
    generators = {"sample": torch.Generator().manual_seed(5)}
    torch.rand(3, generator=generators["sample"])
    path = save_checkpoint(tmp_path, 7, engine, generators, {"note": "x"}, tokenizer=tiny_lm.tokenizer)
    return path, engine, generators


def test_round_trip_restores_weights_optimizer_schedule_and_generators(saved, tiny_tokenizer):
    path, engine, generators = saved
    expected_draw = torch.rand(4, generator=generators["sample"])
    tiny = TinyModelConfig(num_layers=2, hidden_size=32, head_dim=8, intermediate_size=64, seed=1)
    other = wrap_model(build_tiny_model(tiny_tokenizer, tiny), tiny_tokenizer)  # different initial weights
    other_engine = _engine(other.model)
    fresh_generators = {"sample": torch.Generator().manual_seed(99)}
    state = load_checkpoint(path, other_engine, fresh_generators)
    assert state["step"] == 7 and state["note"] == "x" and state["world_size"] == 1
    assert torch.equal(torch.rand(4, generator=fresh_generators["sample"]), expected_draw)
    for (n, a), (_, b) in zip(engine.module.named_parameters(), other.model.named_parameters()):
        assert torch.equal(a, b), n
    assert other_engine.scheduler.state_dict() == engine.scheduler.state_dict()
    saved_state, loaded_state = engine.optimizer.state_dict()["state"], other_engine.optimizer.state_dict()["state"]
    assert all(torch.equal(saved_state[k]["exp_avg"], loaded_state[k]["exp_avg"]) for k in saved_state)
    assert (path / "model" / "tokenizer.json").is_file() and (path / "model" / "model.safetensors").is_file()


def test_latest_ignores_incomplete_and_temporary_directories(saved, tmp_path):
    path, engine, generators = saved
    (tmp_path / ".tmp-step-00000009").mkdir()  # a crash while writing step 9
    (tmp_path / "step-00000010").mkdir()  # no manifest: incomplete
    assert latest_checkpoint(tmp_path) == path
    later = save_checkpoint(tmp_path, 9, engine, generators)  # replaces the stale temp dir
    assert latest_checkpoint(tmp_path) == later and not (tmp_path / ".tmp-step-00000009").exists()
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_keep_last_prunes_older_checkpoints(saved, tmp_path):
    _, engine, generators = saved
    for step in (8, 9, 10):
        save_checkpoint(tmp_path, step, engine, generators, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000009", "step-00000010"]


@pytest.mark.parametrize("name", ["model/model.safetensors", "optimizer.pt", "rng/rank-00000.safetensors"])
def test_truncated_file_is_named(saved, tiny_lm, name):
    path, _, generators = saved
    file = path / name
    file.write_bytes(file.read_bytes()[:-20])
    with pytest.raises(CheckpointError, match=name.split("/")[-1]):
        load_checkpoint(path, _engine(tiny_lm.model), generators)


@pytest.mark.parametrize("name", ["model/model.safetensors", "optimizer.pt", "scheduler.pt"])
def test_corrupted_file_of_the_right_size_is_named(saved, tiny_lm, name):
    path, _, generators = saved
    file = path / name
    data = bytearray(file.read_bytes())
    data[:16] = b"\xff" * 16  # the header / pickle opcode is garbage now
    file.write_bytes(bytes(data))
    verify_checkpoint(path)  # sizes still match ...
    with pytest.raises(CheckpointError, match=name.split("/")[-1]):  # ... reading does not
        load_checkpoint(path, _engine(tiny_lm.model), generators)


def test_missing_file_and_missing_manifest_are_named(saved, tiny_lm):
    path, _, generators = saved
    (path / "scheduler.pt").unlink()
    with pytest.raises(CheckpointError, match="scheduler.pt is missing"):
        load_checkpoint(path, _engine(tiny_lm.model), generators)
    (path / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest.json"):
        load_checkpoint(path, _engine(tiny_lm.model), generators)


def test_resuming_with_another_world_size_is_refused(saved, tiny_lm):
    path, _, generators = saved
    state_file = path / "trainer_state.json"
    state = json.loads(state_file.read_text()) | {"world_size": 8}
    state_file.write_text(json.dumps(state))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["trainer_state.json"] = state_file.stat().st_size
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="8 ranks"):
        load_checkpoint(path, _engine(tiny_lm.model), generators)
