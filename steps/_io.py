"""What every step shares: a scratch directory for directory artifacts, tables in and out, MLflow logging."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd


def new_output_dir(name: str) -> Path:
    """A fresh local directory for a directory artifact; ZenML's Path materializer archives it on return."""
    return Path(tempfile.mkdtemp(prefix=f"igpo-{name}-"))


def active_mlflow() -> Any | None:
    """The mlflow module when the running step has an MLflow experiment tracker, else None."""
    from zenml.client import Client

    if _step_context() is None:
        return None
    tracker = Client().active_stack.experiment_tracker
    if tracker is None or tracker.flavor != "mlflow":
        return None
    import mlflow

    return mlflow if mlflow.active_run() is not None else None


def numeric_metrics(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numeric entries of a (nested) metrics dict, nested keys joined by '/'."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(numeric_metrics(value, f"{prefix}{key}/"))
            continue
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, (int, float)) and math.isfinite(float(value)):
            out[f"{prefix}{key}"] = float(value)
    return out


def log_step_and_model_metadata(metadata: dict[str, Any]) -> None:
    """Metadata on the running step, and on the run's ZenML Model version when the pipeline has one."""
    from zenml import log_metadata

    context = _step_context()
    if context is None:  # called through .entrypoint(), outside a pipeline run
        return
    log_metadata(metadata)
    if context.model_version is not None:
        log_metadata(metadata, infer_model=True)


def log_artifact_metadata(output_name: str, metadata: dict[str, Any]) -> None:
    """Metadata on one output artifact of the running step (skipped outside a pipeline run)."""
    from zenml import log_metadata

    if _step_context() is not None:
        log_metadata(metadata, artifact_name=output_name, infer_artifact=True)


def _step_context() -> Any | None:
    from zenml import get_step_context

    try:
        return get_step_context()
    except RuntimeError:
        return None


def resumable_work_dir(config: Any) -> Path:
    """A directory for a training step's checkpoints that is the same every time the step runs with the same
    inputs and config, so a re-run after a crash resumes instead of starting over.

    Keyed by the step name, the config, and the ids of the input artifacts. Lives under
    ``$IGPO_WORK_DIR`` if set, else next to the local artifact store.
    """
    import hashlib
    import os

    from zenml.client import Client

    context = _step_context()
    step_name = context.step_name if context else "entrypoint"
    inputs = sorted(
        f"{name}={artifact.id}"
        for name, artifacts in (context.inputs.items() if context else ())
        for artifact in (artifacts if isinstance(artifacts, list) else [artifacts])
    )
    key = hashlib.sha256("\n".join([step_name, config.model_dump_json(), *inputs]).encode()).hexdigest()[:16]
    root = os.environ.get("IGPO_WORK_DIR")
    if root is None:
        store = Client().active_stack.artifact_store.path
        root = os.path.join(store, "igpo-work") if "://" not in store else os.path.join(tempfile.gettempdir(), "igpo-work")
    path = Path(root) / f"{step_name}-{key}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def mlflow_step_logger(prefix: str = ""):
    """An ``on_step(step, metrics)`` callback logging a pydantic metrics model to MLflow, or None without MLflow."""
    mlflow = active_mlflow()
    if mlflow is None:
        return None

    def on_step(step: int, metrics: Any) -> None:
        values = numeric_metrics(metrics.model_dump() if hasattr(metrics, "model_dump") else dict(metrics))
        mlflow.log_metrics({f"{prefix}{k}": v for k, v in values.items()}, step=step)

    return on_step


class MetricsLog:
    """Per-step metrics appended to ``<work_dir>/metrics.jsonl`` as they arrive, so a run resumed after a crash
    still reports every step (a step redone after the crash keeps its latest record). Also forwards each record
    to MLflow when the step has an MLflow tracker."""

    def __init__(self, work_dir: Path, mlflow_prefix: str) -> None:
        self.path = Path(work_dir) / "metrics.jsonl"
        self.mlflow = mlflow_step_logger(mlflow_prefix)

    def __call__(self, step: int, metrics: Any) -> None:
        import json

        record = {"step": step, **numeric_metrics(metrics.model_dump())}
        with self.path.open("a") as sink:
            sink.write(json.dumps(record) + "\n")
        if self.mlflow is not None:
            self.mlflow(step, metrics)

    def table(self) -> pd.DataFrame:
        if not self.path.exists():
            return pd.DataFrame()
        records = pd.read_json(self.path, lines=True)
        return records.drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)


def run_launched(kind: str, model_dir: Path, table: pd.DataFrame, config: Any, nproc: int, work_dir: Path,
                 mlflow_prefix: str) -> tuple[Path, pd.DataFrame, dict[str, Any]]:
    """Run the trainer as ``nproc`` DeepSpeed ranks (igpo.launch); returns (model dir, metrics table, summary)."""
    from igpo.launch import launch_training

    run = launch_training(kind, model_dir, table, config, work_dir=work_dir / "launch", nproc=nproc,
                          checkpoint_dir=work_dir / "checkpoints")
    if (log_mlflow := mlflow_step_logger(mlflow_prefix)) is not None:
        for record in run.metrics:
            log_mlflow(record["step"], record)
    metrics = pd.DataFrame([{**numeric_metrics(r), "step": r["step"]} for r in run.metrics])
    return run.output_dir, metrics, run.summary
