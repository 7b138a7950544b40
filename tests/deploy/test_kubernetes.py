"""The Kubernetes manifests: valid against the Kubernetes schemas (strict, a pinned release) and, for
the custom resources, against the KEDA and Prometheus Operator CRDs; one worker Deployment per queue
group with a ScaledObject on exactly its queues; every environment variable the code reads wired
from the Secrets; hardened pods with probes and resources."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor

from tests.helpers import (
    WORKERS,
    Document,
    deployment,
    environment_read,
    erasure_containers,
    k8s_documents,
    of_kind,
    pod_spec,
)
from worker.config import Config, parse
from worker.queue import celery_app

KUBERNETES_VERSION = "1.31.0"  # a release KEDA 2.16 (the CRD models' version) runs on; deploy/README.md says so
CRDS: dict[str, Any] = {"ScaledObject": ScaledObject, "TriggerAuthentication": TriggerAuthentication,
                        "ServiceMonitor": ServiceMonitor, "PrometheusRule": PrometheusRule}
NOT_IN_KUBERNETES = {
    # ERASURE_SECRET_KEY wins over it, and a key file mounted from a Secret is readable by the pod's
    # fsGroup, which keys.file_readable_by_others warns about: the keys come from the environment
    "ERASURE_KEY_FILE",
}
TEST_ONLY_QUEUES = {celery_app.queue_for("stub"),  # the stub kind is for tests
                    celery_app.queue_for("manual")}  # a person erases a manual system: no message is sent


def documents_by_id() -> dict[str, Document]:
    return {str(doc): doc for doc in k8s_documents()}


@pytest.mark.parametrize("name", sorted(documents_by_id()))
def test_manifest_is_valid(name: str) -> None:
    """Each document is valid: a built-in kind against the Kubernetes schemas with no unknown field,
    a custom resource against its CRD's model, with no field the model does not know."""
    doc = documents_by_id()[name]
    if doc.kind in CRDS:
        model = CRDS[doc.kind].model_validate(doc.body)
        assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == doc.body, \
            "a field the CRD does not know (it would be pruned by the API server)"
    else:
        kubernetes_validate.validate(doc.body, KUBERNETES_VERSION, strict=True)


def queues_of(doc: Document) -> list[str]:
    """The queues a worker Deployment's command consumes."""
    command = pod_spec(doc)["containers"][0]["command"]
    assert command[:2] == ["erasure", "worker"], command
    return str(command[command.index("--queues") + 1]).split(",")


def scaled_object_of(deployment: str) -> Document:
    (found,) = [doc for doc in of_kind("ScaledObject") if doc.body["spec"]["scaleTargetRef"]["name"] == deployment]
    return found


def test_every_queue_has_exactly_one_worker_group() -> None:
    """Each erasure queue (but the test-only stub's) is consumed by exactly one worker Deployment, and
    intake among them; the dead-letter queue by none."""
    consumed = [queue for name in WORKERS for queue in queues_of(deployment(name))]
    assert sorted(consumed) == sorted(set(celery_app.QUEUES) - TEST_ONLY_QUEUES)
    assert celery_app.INTAKE_QUEUE in consumed and celery_app.DEAD_QUEUE not in consumed


@pytest.mark.parametrize("name", WORKERS)
def test_each_worker_group_scales_on_its_own_queues(name: str) -> None:
    """A worker group's ScaledObject targets it and has one RabbitMQ trigger per queue it consumes,
    by queue length, read with the broker URL of the Secret the workers use."""
    scaled = scaled_object_of(name).body["spec"]
    triggers = scaled["triggers"]
    assert sorted(t["metadata"]["queueName"] for t in triggers) == sorted(queues_of(deployment(name)))
    auths = {doc.name: doc.body["spec"] for doc in of_kind("TriggerAuthentication")}
    for trigger in triggers:
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["protocol"] == "amqp" and trigger["metadata"]["mode"] == "QueueLength"
        assert int(trigger["metadata"]["value"]) > 0
        auth = auths[trigger["authenticationRef"]["name"]]
        assert auth["secretTargetRef"] == [{"parameter": "host", "name": "erasure-env", "key": "ERASURE_BROKER_URL"}]
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    assert "replicas" not in deployment(name).body["spec"], "the HPA KEDA makes owns the replica count"


def test_snapshot_workers_run_one_task_at_a_time() -> None:
    """Snapshot workers take one task at a time, so waiting requests pile up into one batch."""
    command = pod_spec(deployment("erasure-worker-snapshot"))["containers"][0]["command"]
    assert command[command.index("--concurrency") + 1] == "1"


def env_names(container: dict[str, Any]) -> set[str]:
    return {item["name"] for item in container.get("env", [])}


def test_every_environment_variable_the_code_reads_is_wired() -> None:
    """Every variable the code reads is set in every container, but the key file's (see
    NOT_IN_KUBERNETES); the scan finds the ones known to exist, so it is not silently empty."""
    read = environment_read()
    assert {"ERASURE_STORE_URL", "ERASURE_BROKER_URL", "ERASURE_SECRET_KEY", "ERASURE_SUBJECT_KEY"} <= set(read)
    for doc, container in erasure_containers():
        missing = set(read) - NOT_IN_KUBERNETES - env_names(container)
        assert not missing, f"{doc}: {', '.join(f'{n} (read at {read[n]})' for n in sorted(missing))}"


def test_every_container_has_the_same_environment() -> None:
    """Worker, beat and API processes see one config, one store, one broker and one set of keys."""
    envs = {str(doc): container["env"] for doc, container in erasure_containers()}
    first = next(iter(envs.values()))
    assert all(env == first for env in envs.values()), sorted(envs)


def example_secrets() -> dict[str, dict[str, str]]:
    return {doc.name: doc.body["stringData"] for doc in of_kind("Secret")}


def test_every_secret_reference_names_a_key_of_the_example_secrets() -> None:
    """Each secretKeyRef, envFrom, mounted Secret and ServiceMonitor credential names a Secret (and
    key) that secrets.example.yaml defines."""
    known = example_secrets()
    for doc, container in erasure_containers():
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in known[ref["name"]], f"{doc}: {ref}"
        for source in container.get("envFrom", []):
            assert source["secretRef"]["name"] in known
        for volume in pod_spec(doc)["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] in known
    for doc in of_kind("ServiceMonitor"):
        for endpoint in doc.body["spec"]["endpoints"]:
            credentials = endpoint["authorization"]["credentials"]
            assert credentials["key"] in known[credentials["name"]]


def example_config() -> Config:
    """The erasure.toml of the example Secret, read as the pods read it."""
    text = example_secrets()["erasure-config"]["erasure.toml"]
    return parse(tomllib.loads(text), Path("/etc/erasure/erasure.toml"))


def test_the_example_config_is_a_valid_config() -> None:
    """The erasure.toml in the example Secret passes the config's own validation."""
    config = example_config()
    assert config.systems and config.api.tokens


@pytest.mark.parametrize("name", [doc.name for doc in of_kind("Deployment")])
def test_pods_are_hardened(name: str) -> None:
    """Each pod runs as a non-root user with no service account token, a read-only root filesystem,
    no capabilities, and resource requests and a memory limit; /tmp and the config are mounted."""
    spec = pod_spec(deployment(name))
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        config_dir = next(e["value"] for e in container["env"] if e["name"] == "ERASURE_CONFIG").rsplit("/", 1)[0]
        assert {"/tmp", config_dir} <= set(mounts)
        assert set(mounts.values()) <= {v["name"] for v in spec["volumes"]}


def test_worker_groups_differ_only_in_queues_concurrency_and_size() -> None:
    """The worker Deployments' pods are the same (image, env, Secrets, volumes, security, probes)
    apart from the command (queues, concurrency), the resources and /tmp's size: a group edited
    alone would drift, losing a Secret say; and every Deployment runs the same image."""
    def comparable(name: str) -> dict[str, Any]:
        spec = copy.deepcopy(pod_spec(deployment(name)))
        for container in spec["containers"]:
            del container["command"], container["resources"]
        for volume in spec["volumes"]:
            volume.get("emptyDir", {}).pop("sizeLimit", None)
        return spec

    first, *others = (comparable(name) for name in WORKERS)
    assert all(spec == first for spec in others)
    assert len({container["image"] for _, container in erasure_containers()}) == 1


@pytest.mark.parametrize("name", WORKERS)
def test_workers_outlast_their_shutdown_grace(name: str) -> None:
    """Kubernetes waits longer than the worker's shutdown grace before SIGKILL, so running erasures
    are handed back rather than left to their lease; and they have startup and liveness probes."""
    spec = pod_spec(deployment(name))
    assert spec["terminationGracePeriodSeconds"] > example_config().worker.shutdown_grace_seconds
    container = spec["containers"][0]
    assert container["startupProbe"]["exec"] and container["livenessProbe"]["exec"]


def test_api_probes_and_service() -> None:
    """The API is ready when /healthz answers (the store), alive when /openapi.json does; its Service,
    HPA, PodDisruptionBudget and ServiceMonitor all point at its pods and its named port."""
    api = deployment("erasure-api")
    container = pod_spec(api)["containers"][0]
    port = container["command"][container["command"].index("--port") + 1]
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "http"] == [int(port)]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/openapi.json", "port": "http"}
    labels = api.body["spec"]["template"]["metadata"]["labels"]
    (service,) = of_kind("Service")
    assert service.body["spec"]["selector"] == labels
    assert [p["targetPort"] for p in service.body["spec"]["ports"]] == ["http"]
    (monitor,) = of_kind("ServiceMonitor")
    assert monitor.body["spec"]["selector"]["matchLabels"].items() <= service.body["metadata"]["labels"].items()
    assert [e["port"] for e in monitor.body["spec"]["endpoints"]] == [service.body["spec"]["ports"][0]["name"]]
    (hpa,) = of_kind("HorizontalPodAutoscaler")
    assert hpa.body["spec"]["scaleTargetRef"]["name"] == "erasure-api"
    (pdb,) = of_kind("PodDisruptionBudget")
    assert pdb.body["spec"]["selector"]["matchLabels"] == labels


def test_beat_runs_alone() -> None:
    """Exactly one beat, replaced rather than rolled (never two reconcilers by design)."""
    beat = deployment("erasure-beat").body["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    assert beat["template"]["spec"]["containers"][0]["command"] == ["erasure", "beat"]
