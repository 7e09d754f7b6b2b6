"""Faults in a running pipeline lose no work: the shrunk demo pipeline run in a subprocess on the hermetic
store, one fault per run, each run picking up what the previous one left.

1. The artifact store turns read-only while rewrite_traces saves its output: a clear error naming the
   artifact; the earlier steps' artifacts are intact, loadable, and reused (cached) by the next run.
2. SIGKILL during SFT (after step 5 of 6, last checkpoint at 4); the re-run resumes SFT from step 4 ...
3. ... and is itself SIGKILLed during IGPO (after step 3 of 4, last checkpoint at 2);
4. the next run resumes IGPO from step 2 and completes, with every metrics row present.
5. An uninterrupted run (fresh work dir) ends with bit-identical SFT and IGPO weights.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines"))
from shrink import shrunk_demo_config, write_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("run_faulty_pipeline.py")


def _config() -> dict:
    config = shrunk_demo_config()
    steps = config["steps"]
    steps["train_sft"]["parameters"]["config"].update(steps=6, checkpoint={"every_steps": 2, "keep_last": None})
    steps["train_grpo"]["parameters"]["config"].update(steps=1)
    steps["train_igpo"]["parameters"]["config"].update(steps=4, checkpoint={"every_steps": 2, "keep_last": None})
    return config


def _run(config_path: Path, work_dir: Path, *fault: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "IGPO_WORK_DIR": str(work_dir), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), str(config_path), *fault], check=False, cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def _latest_run():
    from zenml.client import Client

    return Client().list_pipeline_runs(sort_by="desc:created", size=1, hydrate=True).items[0]


def _statuses(run) -> dict[str, str]:
    from zenml.client import Client

    return {name: step.status.value for name, step in Client().get_pipeline_run(run.id).steps.items()}


def _latest_checkpoint(work_dir: Path, step_name: str) -> str:
    from igpo.checkpoint import latest_checkpoint

    (directory,) = work_dir.glob(f"{step_name}-*")
    return latest_checkpoint(directory / "checkpoints").name


def _weights(run, step_name: str, output: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    from zenml.client import Client

    path = Path(Client().get_pipeline_run(run.id).steps[step_name].outputs[output][0].load())
    state = {}
    for file in sorted(path.glob("*.safetensors")):
        state.update(load_file(str(file)))
    assert state, f"no safetensors in {path}"
    return state


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_faults_mid_pipeline_lose_no_work(tmp_path):
    from pipelines.stack import ensure_local_stack

    ensure_local_stack()
    config_path = write_config(_config(), tmp_path / "faults.yaml")
    work = tmp_path / "work"

    # 1. Artifact store read-only while rewrite_traces saves: clear error, earlier artifacts intact.
    out = _run(config_path, work, "--readonly-store", "rewritten_sft_table")
    assert out.returncode != 0
    log = out.stdout + out.stderr
    assert "Read-only file system" in log and "rewritten_sft_table" in log, log[-3000:]
    failed = _latest_run()
    statuses = _statuses(failed)
    assert statuses["prepare_base_model"] == statuses["ingest_datasets"] == "completed"
    assert statuses["rewrite_traces"] == "failed", statuses
    steps = failed.steps
    assert (Path(steps["prepare_base_model"].outputs["base_model"][0].load()) / "model.safetensors").is_file()
    assert len(steps["ingest_datasets"].outputs["sft_table"][0].load()) > 0

    # 2. SIGKILL in SFT after step 5: the last checkpoint is step 4. The earlier artifacts were reused.
    out = _run(config_path, work, "--kill-at", "train_sft:5")
    assert out.returncode == -signal.SIGKILL, (out.stdout + out.stderr)[-3000:]
    statuses = _statuses(_latest_run())
    assert statuses["prepare_base_model"] == statuses["ingest_datasets"] == "cached", statuses
    assert _latest_checkpoint(work, "train_sft") == "step-00000004"

    # 3. The re-run resumes SFT from step 4; SIGKILL in IGPO after step 3 (last checkpoint: step 2).
    out = _run(config_path, work, "--kill-at", "train_igpo:3")
    assert out.returncode == -signal.SIGKILL, (out.stdout + out.stderr)[-3000:]
    sft_step = _latest_run().steps["train_sft"]
    assert sft_step.run_metadata["sft"]["resumed_from"] == 4
    assert _latest_checkpoint(work, "train_igpo") == "step-00000002"

    # 4. The next run resumes IGPO from step 2 and completes; no metrics row is missing.
    out = _run(config_path, work)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    resumed = _latest_run()
    assert set(_statuses(resumed).values()) <= {"completed", "cached"}
    assert resumed.steps["train_igpo"].run_metadata["igpo"]["resumed_from"] == 2
    assert resumed.steps["train_igpo"].outputs["igpo_metrics"][0].load()["step"].tolist() == [1, 2, 3, 4]
    assert resumed.steps["train_sft"].outputs["sft_metrics"][0].load()["step"].tolist() == [1, 2, 3, 4, 5, 6]

    # 5. Uninterrupted reference run (fresh work dir, SFT not taken from cache): the same parameters.
    reference_config = _config()
    reference_config["steps"]["train_sft"]["enable_cache"] = False
    out = _run(write_config(reference_config, tmp_path / "reference.yaml"), tmp_path / "reference-work")
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    reference = _latest_run()
    assert reference.steps["train_igpo"].run_metadata["igpo"]["resumed_from"] is None
    assert _same(_weights(resumed, "train_sft", "sft_checkpoint"), _weights(reference, "train_sft", "sft_checkpoint"))
    assert _same(_weights(resumed, "train_igpo", "igpo_checkpoint"), _weights(reference, "train_igpo", "igpo_checkpoint"))
