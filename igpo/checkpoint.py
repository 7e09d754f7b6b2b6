"""Checkpoints every N steps and exact resume, shared by the SFT and RL trainers.

A checkpoint is a directory ``<root>/step-<8 digits>/``::

    manifest.json            written last: step, files and their byte sizes; its presence = complete
    trainer_state.json       step, world size and whatever the trainer adds (plain JSON)
    model/                   one process: save_pretrained (safetensors), the full model or the peft adapter alone
    optimizer.pt, scheduler.pt   one process: tensors-only state dicts, read with weights_only=True
    deepspeed/state/...      under DeepSpeed instead of the three above: its own sharded checkpoint (weights + ZeRO state)
    rng/rank-<5 digits>.safetensors   every torch.Generator of that rank (and torch's global RNG states)

Atomicity: everything is written into ``<root>/.tmp-step-...`` and renamed to ``step-...`` only after
the manifest is on disk, so a crash never leaves a half checkpoint that ``latest_checkpoint`` would pick.
Loading first checks every file of the manifest exists with its recorded size, and any read error is
raised as ``CheckpointError`` naming the file.

Under DeepSpeed every rank writes into the same directory (a shared filesystem across nodes), rank 0
writes the manifest and renames; the other ranks wait at barriers. DeepSpeed reads its own files with
``torch.load(weights_only=False)``; those are files this code wrote, inside a verified checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from igpo.config_base import StrictConfig
from igpo.distributed import barrier, is_main_process, is_peft, rank, world_size

if TYPE_CHECKING:
    from igpo.distributed import TrainEngine

_STEP_DIR = re.compile(r"^step-(\d{8})$")
MANIFEST = "manifest.json"


class CheckpointConfig(StrictConfig):
    """When to write checkpoints and whether to resume from the latest one."""

    every_steps: int = Field(
        0, ge=0, description="Write a checkpoint every N steps (SFT: optimizer steps, RL: rollout batches) and at the last; 0 = never."
    )
    keep_last: int | None = Field(2, ge=1, description="Complete checkpoints to keep (older ones are deleted); None keeps all.")
    resume: bool = Field(True, description="Continue from the latest complete checkpoint in the directory if one exists.")

    def due(self, done: int, total: int, last: bool = False) -> bool:
        """Whether to write a checkpoint after ``done`` of ``total`` steps (``last``: the run stops here early)."""
        return bool(self.every_steps) and (done % self.every_steps == 0 or done == total or last)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, truncated or unreadable file (named in the message)."""


def step_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def latest_checkpoint(root: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under ``root`` (temp dirs and dirs without a
    manifest are ignored), or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    complete = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / MANIFEST).is_file()]
    return max(complete, key=lambda p: int(_STEP_DIR.match(p.name).group(1)), default=None)


def save_checkpoint(
    root: str | Path,
    step: int,
    engine: TrainEngine,
    generators: Mapping[str, torch.Generator],
    state: Mapping[str, Any] | None = None,
    keep_last: int | None = None,
    tokenizer: Any = None,
) -> Path:
    """Write ``step-<step>`` under ``root`` atomically; collective (every rank calls it). Returns its path."""
    root = Path(root)
    final, tmp = step_dir(root, step), root / f".tmp-{step_dir(root, step).name}"
    if is_main_process():
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():  # left over by a crash while writing this same step
            shutil.rmtree(tmp)
        (tmp / "rng").mkdir(parents=True)
    barrier()
    engine.save_state(tmp, tokenizer)
    save_rng(tmp / "rng" / f"rank-{rank():05d}.safetensors", generators)
    barrier()
    if is_main_process():
        trainer_state = {"step": step, "world_size": world_size(), **dict(state or {})}
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2, sort_keys=True))
        files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        _write_synced(tmp / MANIFEST, json.dumps({"step": step, "files": files}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _prune(root, keep_last)
    barrier()
    return final


def load_checkpoint(
    path: str | Path, engine: TrainEngine, generators: Mapping[str, torch.Generator]
) -> dict[str, Any]:
    """Restore weights, optimizer, schedule and this rank's generators from ``path``; returns the
    trainer state (``step`` and what the trainer saved). Raises CheckpointError naming a bad file."""
    path = Path(path)
    manifest = verify_checkpoint(path)
    state = _read_json(path / "trainer_state.json")
    if state.get("world_size") != world_size():
        raise CheckpointError(
            f"{path / 'trainer_state.json'}: written by {state.get('world_size')} ranks, resuming with {world_size()}; "
            "the per-rank data shards and random streams would not line up"
        )
    try:
        engine.load(path)
    except CheckpointError:
        raise
    except Exception as err:  # torch / DeepSpeed errors name no file of ours
        raise CheckpointError(f"{path}: cannot restore the model or optimizer state: {err}") from err
    load_rng(path / "rng" / f"rank-{rank():05d}.safetensors", generators)
    assert manifest["step"] == state["step"]
    return state


def verify_checkpoint(path: str | Path) -> dict[str, Any]:
    """Check that the manifest exists and every file it lists has its recorded size; returns it."""
    path = Path(path)
    manifest = _read_json(path / MANIFEST)
    for name, size in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint file {file} is missing")
        if file.stat().st_size != size:
            actual = file.stat().st_size
            raise CheckpointError(f"checkpoint file {file} is truncated or changed: {actual} bytes, manifest says {size}")
    return manifest


# ---------------------------------------------------------------------------------------- pieces


def save_rng(file: Path, generators: Mapping[str, torch.Generator]) -> None:
    """Generator states (uint8 tensors) as safetensors; torch's global CPU/CUDA states ride along
    because peft's LoRA dropout, if enabled, draws from them."""
    from safetensors.torch import save_file

    tensors = {f"generator.{name}": g.get_state() for name, g in generators.items()}
    tensors["global.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["global.cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(file))


def load_rng(file: Path, generators: Mapping[str, torch.Generator]) -> None:
    tensors = read_safetensors(file)
    for name, g in generators.items():
        key = f"generator.{name}"
        if key not in tensors:
            raise CheckpointError(f"{file}: no state for generator '{name}'")
        g.set_state(tensors[key])
    torch.set_rng_state(tensors["global.cpu"])
    if "global.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["global.cuda"])


def load_weights(module: torch.nn.Module, directory: Path) -> None:
    """Load weights written by ``save_pretrained`` back into ``module`` in place: the adapter of a peft
    model, or every safetensors shard of a full model (tied weights are restored through their twin)."""
    if is_peft(module):
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(module, read_safetensors(directory / "adapter_model.safetensors"))
        if getattr(result, "unexpected_keys", None):
            raise CheckpointError(f"{directory / 'adapter_model.safetensors'}: unexpected keys {result.unexpected_keys[:5]}")
        return
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory}: no .safetensors weight file")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(read_safetensors(file))
    result = module.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise CheckpointError(f"{directory}: weights for unknown parameters {result.unexpected_keys[:5]}")
    own = module.state_dict()
    loaded_ptrs = {own[k].data_ptr() for k in state if k in own}
    untied = [k for k in result.missing_keys if own[k].data_ptr() not in loaded_ptrs]
    if untied:
        raise CheckpointError(f"{directory}: no weights for {untied[:5]}")


def read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not file.is_file():
        raise CheckpointError(f"checkpoint file {file} is missing")
    try:
        return load_file(str(file))
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint file {file}: {err}") from err


def read_torch_state(file: Path) -> Any:
    if not file.is_file():
        raise CheckpointError(f"checkpoint file {file} is missing")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint file {file}: {err}") from err


def _read_json(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise CheckpointError(f"checkpoint file {file} is missing (an incomplete checkpoint has no manifest)")
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read checkpoint file {file}: {err}") from err


def _write_synced(file: Path, text: str) -> None:
    with open(file, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _prune(root: Path, keep_last: int | None) -> None:
    if keep_last is None:
        return
    complete = sorted(
        (p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / MANIFEST).is_file()), key=lambda p: p.name
    )
    for old in complete[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
