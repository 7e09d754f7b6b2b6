"""Run a trainer as N processes (``torchrun --nproc_per_node=N``) from inside one process, e.g. a ZenML step.

A step holds its inputs in memory (a model directory, a table, a config model); the N ranks need them in
files. ``launch_training`` writes them to a work directory (``inputs/table.parquet``, ``inputs/config.json``,
``inputs/launch.json``), starts ``python -m torch.distributed.run --standalone --nproc_per_node=N -m
igpo.launch WORK_DIR``, waits, and returns the output directory the ranks wrote: a complete model
directory (weights via ``save_pretrained``, tokenizer, loading card), the LoRA adapters merged when
``lora.merge_on_save`` is set (else the adapter alone), ZeRO-3 shards already gathered by the trainers.
Per-step metrics come back as rows (rank 0 writes them to ``metrics.jsonl``, appended across relaunches; the latest record of a step wins), so the caller can
log them after the run.

Every rank runs ``igpo.sft.train_sft`` or ``igpo.rl.trainer.train_rl`` with the same arguments and a
``deepspeed_config`` (several processes train only under DeepSpeed; when the config has none and N > 1,
ZeRO-2 is used). Checkpoints go to ``checkpoint_dir``, so a relaunch after a crash resumes.

Single node only: ``--standalone`` runs a local rendezvous; several pods are not wired (see
containers/README.md). The process count defaults to ``torch.cuda.device_count()`` (1 without GPUs).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from pydantic import BaseModel

log = logging.getLogger(__name__)

Kind = Literal["sft", "rl"]
DEFAULT_DEEPSPEED_CONFIG: dict[str, Any] = {"zero_optimization": {"stage": 2}}
_LOG_TAIL = 6000


@dataclasses.dataclass(frozen=True)
class LaunchResult:
    """What the ranks left behind: the final model directory, rank 0's per-step metrics, the trainer's summary."""

    output_dir: Path
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    num_processes: int
    log_file: Path


def num_processes(requested: int | None = None) -> int:
    """``requested`` if set, else one process per visible GPU, else 1."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"num_processes must be >= 1, got {requested}")
        return requested
    return max(1, torch.cuda.device_count())


def launch_training(
    kind: Kind,
    model_dir: str | Path,
    table: pd.DataFrame,
    config: BaseModel,
    *,
    work_dir: str | Path,
    nproc: int | None = None,
    checkpoint_dir: str | Path | None = None,
    correctness_fn: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> LaunchResult:
    """Train ``model_dir`` on ``table`` with ``config`` (``SFTConfig`` for ``kind='sft'``, ``RLConfig`` for
    ``'rl'``) in ``nproc`` processes; returns the model directory written under ``work_dir/output``.

    ``correctness_fn`` ("module:function") replaces the RL correctness reward (default: the shared
    verifier). Raises ``RuntimeError`` with the tail of the ranks' log when the launch fails.
    """
    if kind not in ("sft", "rl"):
        raise ValueError(f"kind must be 'sft' or 'rl', got {kind!r}")
    needed = {"sft": ("question", "reasoning"), "rl": ("question", "answer")}[kind]
    missing = [column for column in needed if column not in table.columns]
    if missing:
        raise ValueError(f"{kind} table lacks columns {missing} (has {list(table.columns)})")
    n = num_processes(nproc)
    work = Path(work_dir).resolve()
    inputs, output = work / "inputs", work / "output"
    inputs.mkdir(parents=True, exist_ok=True)
    (work / "result.json").unlink(missing_ok=True)  # metrics.jsonl is kept: a relaunch that resumes appends to it

    updates: dict[str, Any] = {}
    ds_config = getattr(config, "deepspeed_config", None)
    if ds_config is None and n > 1:
        log.info("%d processes and no deepspeed_config: using ZeRO-2", n)
        updates["deepspeed_config"] = DEFAULT_DEEPSPEED_CONFIG
    elif isinstance(ds_config, str) and Path(ds_config).is_file():
        updates["deepspeed_config"] = str(Path(ds_config).resolve())  # the ranks may run elsewhere
    config = config.model_copy(update=updates)

    table.reset_index(drop=True).to_parquet(inputs / "table.parquet")
    (inputs / "config.json").write_text(config.model_dump_json(indent=2))
    spec = {
        "kind": kind,
        "model_dir": str(Path(model_dir).resolve()),
        "output_dir": str(output),
        "checkpoint_dir": str(Path(checkpoint_dir).resolve()) if checkpoint_dir is not None else None,
        "correctness_fn": correctness_fn,
    }
    (inputs / "launch.json").write_text(json.dumps(spec, indent=2))

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
               "-m", "igpo.launch", str(work)]
    log_file = work / "launch.log"
    log.info("launching %d %s processes: %s (log: %s)", n, kind, " ".join(command), log_file)
    with open(log_file, "w") as sink:
        run = subprocess.run(command, env=_child_env(env), stdout=sink, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    if run.returncode != 0:
        tail = log_file.read_text(errors="replace")[-_LOG_TAIL:]
        raise RuntimeError(f"{kind} training in {n} processes failed (exit {run.returncode}); log {log_file}:\n{tail}")
    metrics_file = work / "metrics.jsonl"
    records = [json.loads(line) for line in metrics_file.read_text().splitlines()] if metrics_file.exists() else []
    metrics = sorted({record["step"]: record for record in records}.values(), key=lambda r: r["step"])  # last wins
    summary = json.loads((work / "result.json").read_text())
    return LaunchResult(output_dir=output, metrics=metrics, summary=summary, num_processes=n, log_file=log_file)


def _child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    # The ranks import this package from wherever the caller does (an editable install, or /app in an image).
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")
    env.update(extra or {})
    return env


# ------------------------------------------------------------------------------------------ the worker


def _resolve(name: str) -> Callable[..., Any]:
    module, _, attr = name.partition(":")
    if not attr:
        raise ValueError(f"correctness_fn must be 'module:function', got {name!r}")
    return getattr(importlib.import_module(module), attr)


def run_worker(work_dir: str | Path) -> None:
    """One rank: load the inputs ``launch_training`` wrote, train, and (rank 0) write the model directory,
    ``metrics.jsonl`` and ``result.json``."""
    from igpo.distributed import barrier, is_main_process
    from igpo.models import finish_model_dir, load_model_dir, model_config_of

    work = Path(work_dir)
    spec = json.loads((work / "inputs" / "launch.json").read_text())
    table = pd.read_parquet(work / "inputs" / "table.parquet")
    config_json = (work / "inputs" / "config.json").read_text()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device: str = f"cuda:{local_rank}"
    else:
        device = "cpu"
    lm = load_model_dir(spec["model_dir"], device)
    metrics_file = work / "metrics.jsonl"

    def on_step(step: int, metrics: BaseModel) -> None:  # rank 0 only (the trainers' contract)
        with open(metrics_file, "a") as sink:
            sink.write(json.dumps({"step": step, **metrics.model_dump()}) + "\n")

    common = {"checkpoint_dir": spec["checkpoint_dir"], "output_dir": spec["output_dir"], "on_step": on_step,
              "progress": True}
    if spec["kind"] == "sft":
        from igpo.sft import SFTConfig, train_sft

        result = train_sft(lm, table["question"].tolist(), table["reasoning"].tolist(),
                           SFTConfig.model_validate_json(config_json), **common)
        summary = {"final_loss": result.losses[-1] if result.losses else None, "dropped": result.dropped,
                   "truncated": result.truncated, "resumed_from": result.resumed_from,
                   "tokens_per_second": result.tokens_per_second}
    else:
        from igpo.rl.config import RLConfig
        from igpo.rl.trainer import train_rl

        extra = {"correctness_fn": _resolve(spec["correctness_fn"])} if spec["correctness_fn"] else {}
        result = train_rl(lm, table.to_dict("records"), RLConfig.model_validate_json(config_json), **common, **extra)
        summary = {"resumed_from": result.resumed_from, "steps": len(result.metrics)}
    if is_main_process():
        finish_model_dir(lm, spec["output_dir"], model_config_of(spec["model_dir"]))
        (work / "result.json").write_text(json.dumps(summary))
    barrier()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    run_worker(sys.argv[1])
