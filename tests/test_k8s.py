"""The Kubernetes manifests (deploy/k8s/) are valid for Kubernetes 1.28 (offline, with the
``kubernetes-validate`` package's bundled schemas), wired together (services find pods,
the autoscaler finds Rasa, the Ingress publishes what deploy/nginx.conf publishes), keep
every secret in a Secret, and run the same processes with the same commands and settings
as deploy/docker-compose.yml, the topology `make bench` measures."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S_VERSION = "1.28.0"
SECRET_NAMES = {"RASA_AUTH_TOKEN", "DESK_API_TOKEN", "DESK_SECRET_KEY", "POSTGRES_PASSWORD", "TRACKER_STORE_URL", "DESK_DATABASE_URL"}
WORKLOADS = ("Deployment", "StatefulSet")


def manifests() -> List[Dict[str, Any]]:
    documents = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return documents


def of_kind(kind: str) -> Dict[str, Dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests() if doc["kind"] == kind}


def containers() -> Iterator[Tuple[Dict[str, Any], Dict[str, Any]]]:
    for doc in manifests():
        if doc["kind"] in WORKLOADS:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield doc, container


@pytest.mark.parametrize("index", range(len(manifests())))
def test_each_manifest_is_valid_for_kubernetes(index):
    document = manifests()[index]
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_the_validator_refuses_a_broken_manifest():
    broken = {**of_kind("Service")["rasa"], "spec": {"ports": [{"port": "http"}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_no_secret_is_inlined():
    assert "Secret" not in {doc["kind"] for doc in manifests()}
    for doc, container in containers():
        for variable in container.get("env", []):
            if variable["name"] in SECRET_NAMES:
                assert "value" not in variable, (doc["metadata"]["name"], variable["name"])
                assert variable["valueFrom"]["secretKeyRef"]["key"] == variable["name"]


def test_every_container_has_readiness_and_liveness_probes():
    for _doc, container in containers():
        assert "readinessProbe" in container and "livenessProbe" in container, container["name"]


def test_services_select_pods_and_name_their_ports():
    pods = [
        (doc["spec"]["template"]["metadata"]["labels"], doc["spec"]["template"]["spec"]["containers"])
        for doc in manifests()
        if doc["kind"] in WORKLOADS
    ]
    for name, service in of_kind("Service").items():
        selector = service["spec"]["selector"]
        matching = [cs for labels, cs in pods if selector.items() <= labels.items()]
        assert matching, f"service {name} selects no pod"
        port_names = {port["name"] for cs in matching for c in cs for port in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (name, port)


def test_rasa_scales_on_cpu_and_its_action_server_stays_on_the_pod():
    [hpa] = of_kind("HorizontalPodAutoscaler").values()
    target = hpa["spec"]["scaleTargetRef"]
    assert target["name"] in of_kind(target["kind"]) and target["name"] == "rasa"
    assert hpa["spec"]["minReplicas"] >= 2
    rasa = {c["name"]: c for c in of_kind("StatefulSet")["rasa"]["spec"]["template"]["spec"]["containers"]}
    env = {v["name"]: v.get("value") for v in rasa["rasa"]["env"]}
    assert env["ACTION_ENDPOINT_URL"] == "http://127.0.0.1:5055/webhook"
    assert {v["name"]: v.get("value") for v in rasa["actions"]["env"]}["ACTIONS_HOST"] == "127.0.0.1"
    assert "resources" in rasa["rasa"] and rasa["rasa"]["resources"]["requests"]["cpu"]


def test_the_ingress_publishes_what_nginx_publishes():
    [ingress] = of_kind("Ingress").values()
    published = {
        path["path"].rstrip("/"): path["backend"]["service"]["name"] for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]
    }
    nginx = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    public = nginx.split("listen 80;")[1].split("server {")[0]
    locations = {m.group(1).rstrip("/"): m.group(2) for m in re.finditer(r"location (/[\w.]+/?)\s*\{\s*proxy_pass http://(\w+)", public)}
    assert locations, "no location read from deploy/nginx.conf"
    upstream_to_service = {"rasa": "rasa", "rasa_socketio": "rasa", "desk": "desk"}
    assert published == {path: upstream_to_service[upstream] for path, upstream in locations.items()}
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"] == "cookie"


def test_postgres_is_initialised_with_the_compose_script():
    init = of_kind("ConfigMap")["postgres-init"]["data"]["desk.sql"]
    assert init.strip() == (DEPLOY / "postgres-init.sql").read_text(encoding="utf-8").strip()


def _compose_process(service: Dict[str, Any]) -> Tuple[List[str], Set[str]]:
    """A compose service's command (``${X}`` as ``$(X)``) and the variables it is given."""
    command = service["command"]
    words = command.split() if isinstance(command, str) else list(command)
    given = set(service.get("environment", {}))
    given |= {name for word in words for name in re.findall(r"\$\{(\w+)\}", word)}
    return [re.sub(r"\$\{(\w+)\}", r"$(\1)", word) for word in words], given


# Retraining from the console switches every Rasa on one shared models folder: compose has it
# (tests/test_deploy.py); the manifests not yet (Rasa's pods are scaled by an HPA behind a
# balancing Service, so there is no fixed list of their addresses, and no ReadWriteMany
# volume): docs/retraining.md, "Limits".
COMPOSE_ONLY = {"desk": {"RASA_MODEL_URLS", "NLU_REVIEWED_FILE"}}


def test_the_manifests_run_what_compose_runs_with_the_same_settings():
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    k8s = {container["name"]: container for _, container in containers()}
    # compose runs two of each Rasa / action server by name; Kubernetes one template of each
    pairs = {"rasa1": "rasa", "rasa2": "rasa", "actions1": "actions", "actions2": "actions", "desk": "desk"}
    for compose_name, k8s_name in pairs.items():
        command, given = _compose_process(services[compose_name])
        container = k8s[k8s_name]
        assert container["command"] + container.get("args", []) == command, compose_name
        assert {v["name"] for v in container["env"]} == given - COMPOSE_ONLY.get(compose_name, set()), compose_name
        assert container["image"] == services[compose_name]["image"]
    for data in ("postgres", "redis", "channel-state"):
        assert k8s[data]["image"] == services[data]["image"]


def test_the_channel_state_redis_persists_as_in_compose():
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    state = of_kind("StatefulSet")["channel-state"]
    [container] = state["spec"]["template"]["spec"]["containers"]
    assert container["command"] == shlex.split(services["channel-state"]["command"])
    assert "--appendonly" in container["command"] and "yes" in container["command"]
    # The append-only file is on a claim that outlives the pod, where compose has its volume.
    [claim] = state["spec"]["volumeClaimTemplates"]
    [mount] = container["volumeMounts"]
    assert (mount["name"], mount["mountPath"]) == (claim["metadata"]["name"], "/data")
    assert services["channel-state"]["volumes"] == [f"{services['channel-state']['volumes'][0].split(':')[0]}:/data"]
    rasa = {c["name"]: c for c in of_kind("StatefulSet")["rasa"]["spec"]["template"]["spec"]["containers"]}
    env = {v["name"]: v.get("value") for v in rasa["rasa"]["env"]}
    assert env["CHANNEL_STATE_REDIS_URL"] == services["rasa1"]["environment"]["CHANNEL_STATE_REDIS_URL"]
    assert "channel-state" in of_kind("Service")
