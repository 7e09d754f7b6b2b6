"""Where a trainer runs: one process with plain torch, or N processes under DeepSpeed ZeRO-2/3.

Both trainers (``igpo.sft.train_sft``, ``igpo.rl.trainer.train_rl``) talk to a ``TrainEngine`` only:
``engine.forward_model`` is what they call, ``engine.backward(loss, boundary)`` accumulates gradients
and steps the optimizer at the end of an update, ``engine.save``/``engine.load`` hold the optimizer
side of a checkpoint (``igpo.checkpoint`` does the rest).

Launch with ``torchrun --nproc_per_node=N`` (or the ``deepspeed`` launcher) and set ``deepspeed_config``
in the trainer config; every rank builds the same model, DeepSpeed shards optimizer state (ZeRO-2) and
parameters (ZeRO-3) and averages gradients over ranks. The optimizer is always a torch ``AdamW`` handed
to ``deepspeed.initialize`` (DeepSpeed's own fused/CPU Adam JIT-compile C++ for minutes on a machine
without prebuilt ops), and the learning-rate schedule is a torch ``LambdaLR`` that DeepSpeed steps.

On CPU (``DS_ACCELERATOR=cpu``) DeepSpeed uses gloo, and its ``TorchBackend`` JIT-compiles a
shared-memory all-reduce op (``deepspeed_shm_comm``, about 70 s) the first time a process group is made.
That op only serves DeepSpeed's inference all-reduce, so ``prepare_deepspeed`` marks it incompatible in
``deepspeed.ops.__compatible_ops__`` (the dict ``build_shm_op`` consults; DeepSpeed keeps it as a
module-level cache meant to persist edits) and training uses plain gloo collectives.

LoRA (peft) lives here as well because both trainers apply it the same way before the engine is built.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from igpo.config_base import StrictConfig

log = logging.getLogger(__name__)

# DeepSpeed keys that our trainer config decides; a JSON may leave them out, write "auto", or repeat
# the same value (anything else is a contradiction and an error).
_DERIVED_KEYS = ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size", "gradient_clipping")


class NonFiniteLossError(RuntimeError):
    """Too many updates in a row had a non-finite loss or gradient (each one was skipped)."""


class LoRAConfig(StrictConfig):
    """LoRA adapters through peft (reference run: r = 128, alpha = 64 on every linear layer)."""

    r: int = Field(128, ge=1, description="Rank of the adapters.")
    alpha: int = Field(64, ge=1, description="LoRA alpha; the update is scaled by alpha / r.")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout on the adapter input (draws from torch's global RNG; 0 keeps runs exact)."
    )
    target_modules: str | list[str] = Field(
        "all-linear",
        description="peft target_modules: 'all-linear' (every linear layer but the LM head), a list of module names "
        "(matched as name suffixes; the LM head is never adapted, so LLaDA's block 'ff_out' does not catch its "
        "head 'model.transformer.ff_out'), or a regex string (full match, taken as it is).",
    )
    seed: int = Field(0, description="Seed of the adapter initialisation (drawn under a forked RNG).")
    merge_on_save: bool = Field(
        True,
        description="At the end of training merge the adapters into the base weights (the trained model and its "
        "saved directory are a plain model); False keeps the peft model and saves the adapter alone. "
        "Intermediate checkpoints always hold the adapter alone. Not possible under ZeRO-3.",
    )


def apply_lora(module: torch.nn.Module, config: LoRAConfig) -> torch.nn.Module:
    """Wrap ``module`` in a peft ``PeftModel`` with fresh adapters; only the adapters are trainable.

    A list of names never adapts the LM head, as 'all-linear' does not: peft matches names by suffix, and
    LLaDA calls both a block's down projection and its LM head ``ff_out``."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=config.target_modules,
        exclude_modules=_lm_head_matched_by(module, config.target_modules), bias="none",
    )
    # Adapter init draws from the global RNG: fork it so the caller's RNG state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return get_peft_model(module, lora)


def _lm_head_matched_by(module: torch.nn.Module, target_modules: str | list[str]) -> list[str] | None:
    """[the LM head's module name] when a list of target names would match it (peft: equal, or a suffix after
    a dot), else None (peft warns about an exclusion that excludes nothing)."""
    if isinstance(target_modules, str) or not hasattr(module, "get_output_embeddings"):
        return None
    head = module.get_output_embeddings()
    name = next((n for n, m in module.named_modules() if m is head), None) if head is not None else None
    if name and any(name == t or name.endswith(f".{t}") for t in target_modules):
        return [name]
    return None


def is_peft(module: torch.nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(module, PeftModel)


# ----------------------------------------------------------------------------------------------- ranks


def world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (identity in one process). Returns a new tensor."""
    out = values.clone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM)
    return out


def batch_indices(num_examples: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Example indices of the global batch at ``step`` (0-based): consecutive slices of a fresh random
    permutation per epoch. A pure function of (seed, step), so resuming needs no sampler state."""
    out = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, num_examples)
        out.append(_epoch_permutation(num_examples, seed, epoch)[offset])
    return out


@functools.lru_cache(maxsize=4)
def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> tuple[int, ...]:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return tuple(torch.randperm(num_examples, generator=generator).tolist())


def rank_shard(indices: list[int], rank_index: int, world: int) -> list[int]:
    """This rank's contiguous share of a global batch (its size must divide by the world size)."""
    if len(indices) % world:
        raise ValueError(f"a global batch of {len(indices)} does not split over {world} ranks")
    size = len(indices) // world
    return indices[rank_index * size : (rank_index + 1) * size]


def stream_seed(seed: int, stream: int, rank_index: int | None = None) -> int:
    """Seed of one named random stream of one rank: ranks and streams never share a sequence."""
    rank_index = rank() if rank_index is None else rank_index
    return seed * 1_000_003 + rank_index * 1_009 + stream


def prepare_deepspeed() -> Any:
    """Import deepspeed, switch off the shared-memory comm op on CPU (see module docstring), and create
    the process group if the launcher set one up. Returns the ``deepspeed`` module."""
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() == "cpu":
        # Read by deepspeed.comm.torch.build_shm_op: an incompatible op is skipped instead of JIT-compiled.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend=get_accelerator().communication_backend_name(), verbose=False)
    return deepspeed


def resolve_deepspeed_config(
    source: str | Path | dict[str, Any],
    *,
    micro_batch_size: int,
    gradient_accumulation_steps: int,
    world: int,
    grad_clip: float,
    learning_rate: float,
    betas: tuple[float, float],
    weight_decay: float,
) -> dict[str, Any]:
    """The DeepSpeed config dict to initialise with, checked against the trainer config.

    Batch sizes and gradient clipping come from the trainer; a JSON value of "auto" (or no key) is filled
    in, a number must agree. An ``optimizer`` section documents the reference run and must agree with
    the trainer's AdamW settings; it is then removed because a torch optimizer is passed instead. A
    ``scheduler`` section is refused: the schedule is the trainer's.
    """
    where = str(source) if not isinstance(source, dict) else "deepspeed_config"
    if isinstance(source, dict):
        config = json.loads(json.dumps(source))  # a deep copy
    else:
        try:
            config = json.loads(Path(source).read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"deepspeed_config: cannot read {source}: {err}") from err
    derived = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "train_batch_size": micro_batch_size * gradient_accumulation_steps * world,
        "gradient_clipping": grad_clip,
    }
    for key in _DERIVED_KEYS:
        given = config.get(key, "auto")
        if given != "auto" and float(given) != float(derived[key]):
            raise ValueError(
                f"{where}: {key} = {given} contradicts the trainer config, which gives {derived[key]} "
                f"(micro batch {micro_batch_size} x accumulation {gradient_accumulation_steps} x {world} ranks)"
            )
        config[key] = derived[key]
    optimizer = config.pop("optimizer", None)
    if optimizer is not None:
        if str(optimizer.get("type", "")).lower() not in ("adamw", "adam"):
            raise ValueError(f"{where}: optimizer.type must be AdamW (a torch AdamW is passed), got {optimizer.get('type')}")
        params = optimizer.get("params", {})
        expected = {"lr": learning_rate, "betas": list(betas), "weight_decay": weight_decay}
        for key, value in expected.items():
            if key in params and params[key] != "auto" and params[key] != value:
                raise ValueError(f"{where}: optimizer.params.{key} = {params[key]} contradicts the trainer config ({value})")
    if "scheduler" in config:
        raise ValueError(f"{where}: remove the scheduler section; the trainer's warmup_steps sets the schedule")
    config.setdefault("zero_allow_untested_optimizer", True)  # a torch AdamW counts as "untested" for ZeRO
    config.setdefault("steps_per_print", 10**9)
    config.setdefault("wall_clock_breakdown", False)
    return config


# ---------------------------------------------------------------------------------------------- engine


class TrainEngine:
    """Optimizer, schedule and gradient accumulation for one trainable module, in one process or under
    DeepSpeed. ``backward(loss, boundary)`` is called once per micro-batch; ``boundary=True`` on the last
    micro-batch of an update makes it clip, step the optimizer and the schedule, and zero the gradients.
    Losses are expected to be already normalised over the whole update (no further scaling is done).

    An update whose loss (any micro-batch, any rank) or global gradient norm is non-finite is skipped:
    no optimizer or schedule step, gradients dropped, ``skipped_updates`` counted. After
    ``max_nonfinite_in_a_row`` skipped updates in a row, ``backward`` raises ``NonFiniteLossError``.
    Ranks agree: the loss flag is summed over ranks at the update boundary, and DeepSpeed's own step skips
    on a non-finite global gradient norm (its ``skipped_steps``), which is the same on every rank. Under
    DeepSpeed an update with a non-finite loss but finite gradients cannot be undone (DeepSpeed has stepped
    already); it is counted as skipped all the same."""

    @classmethod
    def from_config(cls, module: torch.nn.Module, config: Any, micro_batches_per_update: int,
                    micro_batch_size: int) -> TrainEngine:
        """The engine an SFT or RL config describes: the shared ``igpo.train_config.TrainingRunConfig`` fields
        plus the stage's optimizer fields (``learning_rate``, ``betas``, ``weight_decay``, ``grad_clip``,
        ``warmup_steps``)."""
        return cls(
            module, learning_rate=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay,
            grad_clip=config.grad_clip, warmup_steps=config.warmup_steps,
            micro_batches_per_update=micro_batches_per_update, micro_batch_size=micro_batch_size,
            deepspeed_config=config.deepspeed_config,
            merge_lora_on_save=config.lora is not None and config.lora.merge_on_save,
            max_nonfinite_in_a_row=config.max_nonfinite_in_a_row,
        )

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        learning_rate: float,
        betas: tuple[float, float],
        weight_decay: float,
        grad_clip: float,
        warmup_steps: int,
        micro_batches_per_update: int,
        micro_batch_size: int,
        deepspeed_config: str | Path | dict[str, Any] | None = None,
        merge_lora_on_save: bool = False,
        max_nonfinite_in_a_row: int = 3,
    ):
        self.module = module
        self.merge_lora_on_save = merge_lora_on_save
        self.grad_clip = grad_clip
        self.micro_batches_per_update = micro_batches_per_update
        self._micro_step = 0
        self.last_grad_norm = 0.0
        self.max_nonfinite_in_a_row = max_nonfinite_in_a_row
        self.skipped_updates = 0  # over the whole run (restored on resume through nonfinite_state)
        self.nonfinite_in_a_row = 0
        self._nonfinite_loss = False  # some micro-batch of the current update had a non-finite loss
        self._trainable = trainable = [p for p in module.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("the module has no trainable parameter")
        self.optimizer = torch.optim.AdamW(trainable, lr=learning_rate, betas=betas, weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _Warmup(warmup_steps))
        self.deepspeed_engine = None
        self.zero_stage = 0
        if deepspeed_config is None:
            if world_size() > 1:
                raise RuntimeError(
                    f"WORLD_SIZE is {world_size()} but no deepspeed_config is set: "
                    "several processes train only under DeepSpeed"
                )
            self.forward_model: torch.nn.Module = module
            return
        deepspeed = prepare_deepspeed()
        config = resolve_deepspeed_config(
            deepspeed_config,
            micro_batch_size=micro_batch_size,
            gradient_accumulation_steps=micro_batches_per_update,
            world=world_size(),
            grad_clip=grad_clip,
            learning_rate=learning_rate,
            betas=betas,
            weight_decay=weight_decay,
        )
        self.zero_stage = int(config.get("zero_optimization", {}).get("stage", 0))
        if self.zero_stage == 3 and merge_lora_on_save and is_peft(module):
            raise ValueError("lora.merge_on_save cannot merge partitioned ZeRO-3 weights; set it to false (adapter only)")
        engine, _, _, _ = deepspeed.initialize(
            model=module, optimizer=self.optimizer, lr_scheduler=self.scheduler, config=config
        )
        self.deepspeed_engine = engine
        self.forward_model = engine

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def backward(self, loss: torch.Tensor, boundary: bool) -> None:
        """Accumulate ``loss``'s gradient; on the update's last micro-batch, step (or skip, see class doc)."""
        expected_boundary = (self._micro_step + 1) % self.micro_batches_per_update == 0
        if boundary != expected_boundary:
            raise RuntimeError(
                f"update boundary after micro-batch {self._micro_step + 1} does not match "
                f"{self.micro_batches_per_update} micro-batches per update"
            )
        self._micro_step += 1
        self._nonfinite_loss |= not bool(torch.isfinite(loss.detach()).all())
        if boundary:  # collective once per update: every rank learns whether any rank's loss was non-finite
            local_bad = torch.tensor([float(self._nonfinite_loss)], device=loss.device)
            self._nonfinite_loss = bool(all_reduce_sum(local_bad).item() > 0)
        if self.deepspeed_engine is not None:
            skipped_before = self.deepspeed_engine.skipped_steps
            self.deepspeed_engine.backward(loss, scale_wrt_gas=False)
            self.deepspeed_engine.step()  # DeepSpeed steps the optimizer only at its accumulation boundary
            if boundary:
                norm = self.deepspeed_engine.get_global_grad_norm()
                self.last_grad_norm = float(norm) if norm is not None else 0.0
                # DeepSpeed skips on a non-finite global norm (same on every rank); a non-finite loss with
                # finite gradients cannot be undone there, but it is counted alike on every rank.
                skipped = self.deepspeed_engine.skipped_steps > skipped_before or not math.isfinite(self.last_grad_norm)
                self._end_update(skipped or self._nonfinite_loss)
            return
        loss.backward()
        if boundary:
            self.last_grad_norm = float(torch.nn.utils.clip_grad_norm_(self._trainable, self.grad_clip))
            skipped = self._nonfinite_loss or not math.isfinite(self.last_grad_norm)
            if not skipped:
                self.optimizer.step()
                self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self._end_update(skipped)

    def _end_update(self, skipped: bool) -> None:
        self._nonfinite_loss = False
        if not skipped:
            self.nonfinite_in_a_row = 0
            return
        self.skipped_updates += 1
        self.nonfinite_in_a_row += 1
        log.warning(
            "non-finite loss or gradient norm (%s): update skipped (%d in a row, %d in all)",
            self.last_grad_norm, self.nonfinite_in_a_row, self.skipped_updates,
        )
        if self.nonfinite_in_a_row >= self.max_nonfinite_in_a_row:
            raise NonFiniteLossError(
                f"{self.nonfinite_in_a_row} updates in a row had a non-finite loss or gradient "
                f"(max_nonfinite_in_a_row = {self.max_nonfinite_in_a_row}); stopping. The last complete "
                "checkpoint is untouched; lower the learning rate or check the data before resuming."
            )

    def nonfinite_state(self) -> dict[str, int]:
        """The skip counters, for the trainer state of a checkpoint."""
        return {"skipped_updates": self.skipped_updates, "nonfinite_in_a_row": self.nonfinite_in_a_row}

    def restore_nonfinite_state(self, state: dict[str, Any]) -> None:
        self.skipped_updates = int(state.get("skipped_updates", 0))
        self.nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))

    # -- checkpoint hooks (called by igpo.checkpoint on every rank) --------------------------------

    def merge_lora(self) -> None:
        """Fold the LoRA adapters into the base weights, in place, on every rank (training is over):
        ``self.module`` becomes the plain model. A no-op without adapters; refused under ZeRO-3."""
        if not is_peft(self.module):
            return
        if self.zero_stage == 3:
            raise ValueError("cannot merge LoRA into partitioned ZeRO-3 weights; save the adapter instead")
        self.module = self.module.merge_and_unload()

    def finish(self, output_dir: str | Path | None, tokenizer: Any = None) -> torch.nn.Module:
        """End of training: eval mode, LoRA merged if the config asks for it, weights written to ``output_dir``
        (if given); returns the trained module (plain after a merge, else as trained)."""
        self.module.eval()
        if self.merge_lora_on_save:
            self.merge_lora()
        if output_dir is not None:
            self.save_model(Path(output_dir), tokenizer)
        return self.module

    def save_model(self, directory: Path, tokenizer: Any = None) -> None:
        """Write the weights with ``save_pretrained`` (safetensors): the adapter alone for a peft model,
        the full model otherwise. Collective under ZeRO-3 (parameters are gathered); rank 0 writes."""
        state_dict = None
        if self.deepspeed_engine is not None and self.zero_stage == 3:
            state_dict = self.deepspeed_engine._zero3_consolidated_16bit_state_dict()
        if not is_main_process():
            return
        kwargs = {"state_dict": state_dict} if state_dict is not None else {}
        self.module.save_pretrained(directory, **kwargs)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)

    def save_state(self, directory: Path, tokenizer: Any = None) -> None:
        """What ``load`` restores. One process: the weights (``model/``, safetensors) and the optimizer and
        schedule as torch tensors-only state dicts (read back with ``weights_only=True``). Under DeepSpeed:
        DeepSpeed's own sharded checkpoint alone (it holds the weights too; every rank writes)."""
        if self.deepspeed_engine is not None:
            self.deepspeed_engine.save_checkpoint(str(directory / "deepspeed"), tag="state", save_latest=False)
            return
        self.save_model(directory / "model", tokenizer)
        torch.save(self.optimizer.state_dict(), directory / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), directory / "scheduler.pt")

    def load(self, directory: Path) -> None:
        """Restore weights, optimizer and schedule from a checkpoint directory written by this class."""
        from igpo.checkpoint import CheckpointError, load_weights, read_torch_state

        if self.deepspeed_engine is not None:
            path, _ = self.deepspeed_engine.load_checkpoint(
                str(directory / "deepspeed"), tag="state", load_optimizer_states=True, load_lr_scheduler_states=True
            )
            if path is None:
                raise CheckpointError(f"{directory / 'deepspeed'}: DeepSpeed found no checkpoint to load")
            return
        load_weights(self.module, directory / "model")
        self.optimizer.load_state_dict(read_torch_state(directory / "optimizer.pt"))
        self.scheduler.load_state_dict(read_torch_state(directory / "scheduler.pt"))


class _Warmup:
    """Linear warm-up to the base learning rate over ``warmup_steps`` optimizer steps, then constant.
    A class (not a lambda) so LambdaLR's state_dict carries it as plain data."""

    def __init__(self, warmup_steps: int):
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return 1.0
        return min(1.0, (step + 1) / self.warmup_steps)

