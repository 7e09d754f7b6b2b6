"""The Kubernetes Job and CronJob manifests ZenML would submit for the k8s configs, captured without a cluster.

The stack of pipelines/k8s_stack.py is registered in the hermetic ZenML store with a kubeconfig whose only
context points nowhere (the local artifact store stands in for S3: the s3 flavor needs s3fs to load). The
retraining pipeline is compiled with configs/llada_8b_igpo_k8s.yaml and a cron schedule; then:

- the orchestrator CronJob comes from the orchestrator's own submission code (``_submit_orchestrator_job``)
  with the Kubernetes API call intercepted;
- the step Jobs are built with the same ZenML functions and arguments its in-cluster entrypoint uses
  (``kubernetes_orchestrator_entrypoint.start_step_job``), from each step's merged settings.

Every manifest is validated with ``kubernetes-validate --strict`` (the Kubernetes OpenAPI schema) and
checked for the image, GPU requests, the schedule, and the absence of secrets.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

import pytest
import yaml

pytest.importorskip("kubernetes", reason="the zenml kubernetes integration needs the kubernetes client")

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "llada_8b_igpo_k8s.yaml"
IMAGE = "registry.example.com/igpo/igpo:retrain-test"
CRON = "0 3 * * 0"
GPU_STEPS = {"train_sft": "8", "train_igpo": "8", "evaluate_igpo": "1"}
SECRET_VALUES = ("s3-key-id-value", "s3-secret-value", "mlflow-password-value", "teacher-key-value")
KUBECONFIG = {
    "apiVersion": "v1", "kind": "Config", "current-context": "igpo-offline",
    "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}}],
    "contexts": [{"name": "igpo-offline", "context": {"cluster": "nowhere", "user": "nobody", "namespace": "igpo"}}],
    "users": [{"name": "nobody", "user": {"token": "not-a-real-token"}}],
}


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    """{"cronjob": dict, "<step>": job dict} for the retraining pipeline on the k8s stack."""
    tmp = tmp_path_factory.mktemp("k8s")
    (tmp / "kubeconfig").write_text(yaml.safe_dump(KUBECONFIG))
    patch = pytest.MonkeyPatch()
    patch.setenv("KUBECONFIG", str(tmp / "kubeconfig"))
    patch.setenv("IGPO_S3_ACCESS_KEY_ID", SECRET_VALUES[0])
    patch.setenv("IGPO_S3_SECRET_ACCESS_KEY", SECRET_VALUES[1])
    patch.setenv("IGPO_MLFLOW_USERNAME", "igpo")
    patch.setenv("IGPO_MLFLOW_PASSWORD", SECRET_VALUES[2])
    patch.setenv("TEACHER_API_KEY", SECRET_VALUES[3])
    patch.chdir(ROOT)
    try:
        yield _capture(tmp)
    finally:
        patch.undo()


def _capture(tmp: Path) -> dict[str, dict]:
    from kubernetes import client as k8s_client
    from zenml.client import Client
    from zenml.enums import StackComponentType
    from zenml.integrations.kubernetes import kube_utils, manifest_utils
    from zenml.integrations.kubernetes.orchestrators.kubernetes_orchestrator import KubernetesOrchestrator

    from pipelines import k8s_stack
    from pipelines.retrain import configured

    spec = k8s_stack.K8sStackSpec(
        kubernetes_context="igpo-offline", namespace="igpo", artifact_path="s3://igpo-artifacts/zenml",
        s3_endpoint="https://minio.example.com", mlflow_uri="https://mlflow.example.com",
        registry_uri="registry.example.com/igpo", stack_name="igpo_k8s_test",
    )
    assert set(k8s_stack.sync_secrets()) == set(k8s_stack.SECRETS)
    k8s_stack.register_k8s_stack(spec)
    client = Client()
    # Registered as the script does it, with secret references only:
    for type_name, (name, _, _) in k8s_stack.component_configs(spec).items():
        stored = json.dumps(client.get_stack_component(StackComponentType(type_name), name).configuration)
        assert not any(value in stored for value in SECRET_VALUES), name
    # Run on a copy whose artifact store is local (no s3fs here) and whose orchestrator skips that check.
    client.update_stack_component(ORCH := k8s_stack.ORCHESTRATOR, StackComponentType.ORCHESTRATOR,
                                  configuration={"skip_local_validations": True})
    local_store = client.get_stack("default").components[StackComponentType.ARTIFACT_STORE][0].name
    client.create_stack(name="igpo_k8s_offline", components={
        StackComponentType.ORCHESTRATOR: ORCH, StackComponentType.ARTIFACT_STORE: local_store,
        StackComponentType.EXPERIMENT_TRACKER: k8s_stack.TRACKER,
        StackComponentType.CONTAINER_REGISTRY: k8s_stack.REGISTRY, StackComponentType.IMAGE_BUILDER: k8s_stack.IMAGE_BUILDER,
    })
    client.activate_stack("igpo_k8s_offline")

    pipeline = configured(CONFIG, cron=CRON)
    pipeline.prepare()  # records the step invocations, as a run does before compiling
    snapshot, schedule, _ = pipeline._compile(**pipeline._run_args)  # what pipeline() would compile
    assert schedule is not None and schedule.cron_expression == CRON
    orchestrator = client.active_stack.orchestrator
    assert isinstance(orchestrator, KubernetesOrchestrator)

    # The orchestrator CronJob, through the orchestrator's own submission code; the API call is intercepted.
    created: dict[str, object] = {}

    class BatchApi:
        def create_namespaced_cron_job(self, body, namespace):
            created["cronjob"], created["namespace"] = body, namespace
            return SimpleNamespace(metadata=SimpleNamespace(name=body.metadata.name))

    fake_snapshot = SimpleNamespace(
        id=uuid4(), project_id=uuid4(), pipeline_configuration=snapshot.pipeline_configuration,
        step_configurations=snapshot.step_configurations, schedule=schedule, build=None,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KubernetesOrchestrator, "_k8s_batch_api", property(lambda self: BatchApi()))
        mp.setattr(KubernetesOrchestrator, "_k8s_core_api", property(lambda self: None))  # only used for the secret
        # Skips creating ZenML's default service account in the cluster; its name is what it would use.
        mp.setattr(KubernetesOrchestrator, "_get_service_account_name", lambda self, settings: "zenml-service-account")
        mp.setattr(KubernetesOrchestrator, "get_image", lambda self, snapshot, step_name=None: IMAGE)
        get_settings = KubernetesOrchestrator.get_settings  # the fake snapshot's settings are the compiled one's
        mp.setattr(KubernetesOrchestrator, "get_settings",
                   lambda self, container: get_settings(self, snapshot if container is fake_snapshot else container))
        mp.setattr(kube_utils, "create_or_update_secret", lambda **kwargs: created.setdefault("token_secret", kwargs))
        orchestrator._submit_orchestrator_job(snapshot=fake_snapshot, command=["python", "-m", "zenml.entrypoints"],
                                              args=["--snapshot_id", str(fake_snapshot.id)],
                                              environment={"ZENML_STORE_API_TOKEN": "zenml-token-value"})
    api = k8s_client.ApiClient()
    out = {"cronjob": api.sanitize_for_serialization(created["cronjob"])}
    assert created["namespace"] == "igpo"

    # The step Jobs, as kubernetes_orchestrator_entrypoint.start_step_job builds them.
    for step_name, step in snapshot.step_configurations.items():
        settings = orchestrator.get_settings(step)
        pod_settings = kube_utils.apply_default_resource_requests(memory="400Mi", pod_settings=settings.pod_settings)
        pod = manifest_utils.build_pod_manifest(
            pod_name=None, image_name=IMAGE, command=["python", "-m", "zenml.entrypoints.entrypoint"],
            args=["--step_name", step_name], env={"ZENML_RUN_NAME": "test"}, privileged=settings.privileged,
            pod_settings=pod_settings, service_account_name=settings.service_account_name,
            mount_local_stores=False, termination_grace_period_seconds=settings.pod_stop_grace_period,
            labels={"step_name": kube_utils.sanitize_label_value(step_name)}, annotations={},
        )
        job = manifest_utils.build_job_manifest(
            job_name=kube_utils.sanitize_label(f"igpo-{step_name}"),
            pod_template=manifest_utils.pod_template_manifest_from_pod(pod), backoff_limit=settings.backoff_limit_margin,
            ttl_seconds_after_finished=settings.ttl_seconds_after_finished,
            active_deadline_seconds=settings.active_deadline_seconds, pod_failure_policy=None, labels={}, annotations={},
        )
        # create_namespaced_job sends the body without them; the schema validator needs them to pick the schema.
        job.api_version, job.kind = "batch/v1", "Job"
        out[step_name] = api.sanitize_for_serialization(job)
    for name, manifest in out.items():
        (tmp / f"{name}.yaml").write_text(yaml.safe_dump(manifest))
    out["_dir"] = tmp  # type: ignore[assignment]
    return out


def _container(job: dict) -> dict:
    spec = job["spec"]["jobTemplate"]["spec"] if job["kind"] == "CronJob" else job["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    return container


def test_manifests_pass_kubernetes_validate_strict(manifests):
    files = sorted(str(p) for p in manifests["_dir"].glob("*.yaml"))
    assert len(files) == 1 + 7  # the CronJob and one Job per step of the retraining pipeline
    run = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", "1.30.0", *files],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_cronjob_carries_schedule_image_and_no_secret(manifests):
    cron = manifests["cronjob"]
    assert cron["kind"] == "CronJob" and cron["spec"]["schedule"] == CRON
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    container = _container(cron)
    assert container["image"] == IMAGE
    assert container["securityContext"] == {"privileged": False}
    # The ZenML API token goes into a Kubernetes Secret and is referenced, never inlined.
    token = [e for e in container["env"] if e["name"] == "ZENML_STORE_API_TOKEN"]
    assert token and "valueFrom" in token[0] and "value" not in token[0]


def test_step_jobs_request_gpus_on_gpu_steps_only(manifests):
    for step_name in ("prepare_base_model", "ingest_datasets", "rewrite_traces", "train_sft", "train_igpo", "evaluate_igpo",
                      "promote_model"):
        container = _container(manifests[step_name])
        assert container["image"] == IMAGE
        gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
        assert gpus == GPU_STEPS.get(step_name), (step_name, container["resources"])
        if gpus:
            pod = manifests[step_name]["spec"]["template"]["spec"]
            assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus
            assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
            assert any(m["mountPath"] == "/dev/shm" for m in container["volumeMounts"])


def test_no_secret_value_in_any_manifest(manifests):
    text = "\n".join(p.read_text() for p in manifests["_dir"].glob("*.yaml"))
    assert not any(value in text for value in (*SECRET_VALUES, "zenml-token-value", "not-a-real-token"))
