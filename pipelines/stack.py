"""Set up, idempotently, the local ZenML stack the demo runs on, and make it active.

    python -m pipelines.stack

Local orchestrator and artifact store (ZenML's defaults) plus an MLflow experiment tracker whose tracking
store is a sqlite file under ``.cache/mlflow`` (MLflow 3 refuses its old file store). Analytics are turned
off in ZenML's global config (persistently, so a later plain ``zenml pipeline run`` without
``ZENML_ANALYTICS_OPT_IN=false`` sends nothing either). Re-running changes nothing when the stack already exists.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")

STACK_NAME = "igpo_local"
TRACKER_NAME = "igpo_mlflow"


def mlflow_tracking_uri(root: Path | None = None) -> str:
    """sqlite URI of the local MLflow store (absolute, so every step process finds the same file)."""
    root = Path(root or os.environ.get("ZENML_REPOSITORY_PATH") or Path.cwd()).resolve()
    db = root / ".cache" / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def opt_out_of_analytics() -> None:
    """Set ``analytics_opt_in: false`` in ZenML's global config (its config.yaml), as `zenml analytics opt-out`
    does; the environment variable alone lasts only as long as the shell that sets it."""
    from zenml.config.global_config import GlobalConfiguration

    GlobalConfiguration().analytics_opt_in = False  # the setter writes the config file


def ensure_local_stack(root: Path | None = None) -> str:
    """Turn analytics off, register the tracker and the stack if missing, activate the stack; returns the
    tracking URI."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    opt_out_of_analytics()
    client = Client()
    uri = mlflow_tracking_uri(root)
    trackers = client.list_stack_components(type=StackComponentType.EXPERIMENT_TRACKER, name=TRACKER_NAME)
    if trackers.total == 0:
        client.create_stack_component(
            name=TRACKER_NAME,
            flavor="mlflow",
            component_type=StackComponentType.EXPERIMENT_TRACKER,
            configuration={"tracking_uri": uri},
        )
    elif trackers.items[0].configuration.get("tracking_uri") != uri:
        client.update_stack_component(
            name_id_or_prefix=TRACKER_NAME,
            component_type=StackComponentType.EXPERIMENT_TRACKER,
            configuration={"tracking_uri": uri},
        )
    stacks = client.list_stacks(name=STACK_NAME)
    if stacks.total == 0:
        default = client.get_stack("default")
        client.create_stack(
            name=STACK_NAME,
            components={
                StackComponentType.ORCHESTRATOR: default.components[StackComponentType.ORCHESTRATOR][0].name,
                StackComponentType.ARTIFACT_STORE: default.components[StackComponentType.ARTIFACT_STORE][0].name,
                StackComponentType.EXPERIMENT_TRACKER: TRACKER_NAME,
            },
        )
    client.activate_stack(STACK_NAME)
    return uri


if __name__ == "__main__":
    tracking_uri = ensure_local_stack()
    print(f"active stack: {STACK_NAME} (local orchestrator, local artifact store, MLflow at {tracking_uri})")
