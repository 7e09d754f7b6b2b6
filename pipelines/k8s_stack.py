"""Register, idempotently, the Kubernetes GPU stack the pipeline scales out to, and optionally activate it.

    python -m pipelines.k8s_stack \\
        --kubernetes-context my-gpu-cluster --namespace igpo \\
        --artifact-path s3://igpo-artifacts/zenml --s3-endpoint https://minio.example.com \\
        --mlflow-uri https://mlflow.example.com --registry-uri registry.example.com/igpo \\
        [--image-builder local|kaniko] [--activate]

Components (ZenML 0.98 flavors): ``kubernetes`` orchestrator, ``s3`` artifact store (any S3-compatible
endpoint: AWS, MinIO, Ceph, R2), ``mlflow`` experiment tracker on a remote tracking server, ``default``
container registry, ``local`` (Docker on the submitting machine) or ``kaniko`` (in-cluster) image builder.

Credentials never appear in a component's configuration: the components hold ``{{secret.key}}``
references to ZenML secrets, which this script creates or updates from environment variables when they
are set, and otherwise expects to exist (``zenml secret create ...``):

| ZenML secret | keys | environment variables read |
|---|---|---|
| ``igpo_s3`` | ``aws_access_key_id``, ``aws_secret_access_key`` | ``IGPO_S3_ACCESS_KEY_ID``, ``IGPO_S3_SECRET_ACCESS_KEY`` |
| ``igpo_mlflow`` | ``username``, ``password`` | ``IGPO_MLFLOW_USERNAME``, ``IGPO_MLFLOW_PASSWORD`` |
| ``teacher_api`` | ``api_key`` (rewrite step) | ``TEACHER_API_KEY`` |

Cluster and registry access go through the machine's kubeconfig context and Docker login, or better a
service connector (``--connector NAME``: a ZenML service connector, e.g. of type ``kubernetes-cluster``,
``aws`` or ``gcp``, registered beforehand with ``zenml service-connector register``), which is then
connected to the orchestrator and the container registry. The stack's components need the ``kubernetes``
and ``s3`` ZenML integrations: ``requirements/install.sh .venv k8s``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass

os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")

STACK_NAME = "igpo_k8s"
ORCHESTRATOR = "igpo_k8s_orchestrator"
ARTIFACT_STORE = "igpo_s3_store"
TRACKER = "igpo_mlflow_k8s"  # the name the k8s configs' steps use (experiment_tracker: igpo_mlflow_k8s)
REGISTRY = "igpo_registry"
IMAGE_BUILDER = "igpo_image_builder"

SECRETS: dict[str, dict[str, str]] = {
    "igpo_s3": {"aws_access_key_id": "IGPO_S3_ACCESS_KEY_ID", "aws_secret_access_key": "IGPO_S3_SECRET_ACCESS_KEY"},
    "igpo_mlflow": {"username": "IGPO_MLFLOW_USERNAME", "password": "IGPO_MLFLOW_PASSWORD"},
    "teacher_api": {"api_key": "TEACHER_API_KEY"},
}


@dataclass(frozen=True)
class K8sStackSpec:
    """Where things are; no credentials."""

    kubernetes_context: str | None
    namespace: str
    artifact_path: str
    s3_endpoint: str | None
    mlflow_uri: str
    registry_uri: str
    image_builder: str = "local"
    connector: str | None = None
    stack_name: str = STACK_NAME


def component_configs(spec: K8sStackSpec) -> dict[str, tuple[str, str, dict]]:
    """``{component type: (name, flavor, configuration)}`` of the stack; secrets only as references."""
    orchestrator = {"kubernetes_namespace": spec.namespace, "pass_zenml_token_as_secret": True}
    if spec.kubernetes_context and not spec.connector:
        orchestrator["kubernetes_context"] = spec.kubernetes_context
    store = {"path": spec.artifact_path, "key": "{{igpo_s3.aws_access_key_id}}",
             "secret": "{{igpo_s3.aws_secret_access_key}}"}
    if spec.s3_endpoint:
        store["client_kwargs"] = {"endpoint_url": spec.s3_endpoint}
    tracker = {"tracking_uri": spec.mlflow_uri, "tracking_username": "{{igpo_mlflow.username}}",
               "tracking_password": "{{igpo_mlflow.password}}"}
    builder: dict = {}
    if spec.image_builder == "kaniko":
        builder = {"kubernetes_context": spec.kubernetes_context, "kubernetes_namespace": spec.namespace}
    elif spec.image_builder != "local":
        raise ValueError(f"image_builder must be 'local' or 'kaniko', got {spec.image_builder!r}")
    return {
        "orchestrator": (ORCHESTRATOR, "kubernetes", orchestrator),
        "artifact_store": (ARTIFACT_STORE, "s3", store),
        "experiment_tracker": (TRACKER, "mlflow", tracker),
        "container_registry": (REGISTRY, "default", {"uri": spec.registry_uri}),
        "image_builder": (IMAGE_BUILDER, spec.image_builder, builder),
    }


def sync_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Create or update the ZenML secrets whose environment variables are all set; returns their names."""
    from zenml.client import Client

    environ = os.environ if environ is None else environ
    client, written = Client(), []
    for name, keys in SECRETS.items():
        if not all(environ.get(var) for var in keys.values()):
            continue
        values = {key: environ[var] for key, var in keys.items()}
        try:
            client.get_secret(name)
            client.update_secret(name, add_or_update_values=values)
        except KeyError:
            client.create_secret(name, values=values)
        written.append(name)
    return written


def register_k8s_stack(spec: K8sStackSpec, activate: bool = False) -> str:
    """Register (or update) every component and the stack; returns the stack name."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    components = {}
    for type_name, (name, flavor, configuration) in component_configs(spec).items():
        component_type = StackComponentType(type_name)
        existing = client.list_stack_components(type=component_type, name=name)
        if existing.total == 0:
            client.create_stack_component(name=name, flavor=flavor, component_type=component_type,
                                          configuration=configuration)
        else:
            client.update_stack_component(name_id_or_prefix=name, component_type=component_type,
                                          configuration=configuration)
        if spec.connector and component_type in (StackComponentType.ORCHESTRATOR, StackComponentType.CONTAINER_REGISTRY):
            client.update_stack_component(name_id_or_prefix=name, component_type=component_type, connector_id=spec.connector)
        components[component_type] = name
    if client.list_stacks(name=spec.stack_name).total == 0:
        client.create_stack(name=spec.stack_name, components=components)
    else:
        client.update_stack(name_id_or_prefix=spec.stack_name, component_updates={k: [v] for k, v in components.items()})
    if activate:
        client.activate_stack(spec.stack_name)
    return spec.stack_name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-context", help="kubeconfig context of the cluster (not needed with --connector)")
    parser.add_argument("--namespace", default="igpo")
    parser.add_argument("--artifact-path", required=True, help="s3://bucket/prefix")
    parser.add_argument("--s3-endpoint", help="endpoint URL of an S3-compatible store (omit for AWS S3)")
    parser.add_argument("--mlflow-uri", required=True, help="remote MLflow tracking server URL")
    parser.add_argument("--registry-uri", required=True, help="container registry URI, e.g. registry.example.com/igpo")
    parser.add_argument("--image-builder", choices=["local", "kaniko"], default="local")
    parser.add_argument("--connector", help="ZenML service connector for the cluster and the registry")
    parser.add_argument("--stack-name", default=STACK_NAME)
    parser.add_argument("--activate", action="store_true")
    args = parser.parse_args(argv)
    written = sync_secrets()
    spec = K8sStackSpec(args.kubernetes_context, args.namespace, args.artifact_path, args.s3_endpoint, args.mlflow_uri,
                        args.registry_uri, args.image_builder, args.connector, args.stack_name)
    name = register_k8s_stack(spec, activate=args.activate)
    missing = [s for s in SECRETS if s not in written]
    print(f"stack {name} registered{' and active' if args.activate else ''}; secrets written from the environment: "
          f"{written or 'none'}; make sure these exist: {missing or 'none'}")


if __name__ == "__main__":
    main()
