"""ingress-nginx for Rancher in helm mode: what the ha stack (and dev with rancherMode helm) registers,
rebuilt into Kubernetes documents and checked for structure, placement, images, wiring and firewall.

kubectl's client-side dry-run needs an API server for discovery (`kubectl apply --dry-run=client` fails
with "unable to recognize" without one), so the documents are checked structurally instead."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
import yaml

from components import artifacts
from components.config import Settings, parse_settings
from offline.engine import load_stack_config
from offline.engine.runner import PROJECT, ProgramRun
from tests.test_firewall import firewalls, ports_of, sources
from tests.test_registry import full_script

INGRESS = "containercloud:k8s:IngressController"
RANCHER = "containercloud:rancher:RancherServer"
RELEASE = "kubernetes:helm.sh/v3:Release"
COMMAND = "command:remote:Command"
LABEL = "node-role.containercloud.io/rancher"
TAG = "v1.15.1"


def settings_of(stack: str) -> Settings:
    values = load_stack_config(stack).values
    return parse_settings({k.split(":", 1)[1]: v for k, v in values.items() if k.startswith(f"{PROJECT}:")})


def documents(run: ProgramRun) -> list[dict[str, Any]]:
    """The Kubernetes objects the IngressController registered, as documents (apiVersion/kind from the
    SDK's inputs), round-tripped through YAML."""
    component = run.of_type(INGRESS)[0]
    docs = []
    for r in run.children_of(component.urn):
        inputs = r.plain_inputs
        assert inputs["apiVersion"] and inputs["kind"], r.name
        docs.append(yaml.safe_load(yaml.safe_dump(inputs)))
    return docs


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, (kind, [d["metadata"]["name"] for d in found])
    return found[0]


def flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, (name, args)
    return values[0]


# --- placement, host network, images ---------------------------------------------------------------

@pytest.mark.parametrize("stack", ["ha", "dev_helm"])
def test_daemonset_on_rancher_nodes_with_host_network(stack: str, request: pytest.FixtureRequest) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    docs = documents(run)
    ds = one(docs, "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", LABEL: "true"}
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    (container,) = spec["containers"]
    assert {(p["containerPort"], p["protocol"]) for p in container["ports"]} == {(80, "TCP"), (443, "TCP")}
    assert flag(container["args"], "https-port") == "443"
    ctx = container["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
    assert not any("validating-webhook" in a for a in container["args"])  # no webhook on the node's network
    # the label the DaemonSet selects is the one the register step puts on exactly the rancher hosts
    s = run.of_type(RANCHER)[0].plain_inputs
    props = run.of_type(INGRESS)[0].plain_inputs
    assert props["hosts"] == s["hosts"] and props["hostNetwork"] is True
    # the batch steps on the drain host register their nodes: `register NODE LABEL=VALUE...`
    labelled = {line.split()[1] for r in run.of_type(COMMAND) if re.fullmatch(r".+-batch-\d+-node", r.name)
                for line in full_script(run, r.name).splitlines()
                if line.startswith("register ") and f"{LABEL}=true" in line}
    assert labelled == set(s["hosts"])


def test_images_come_from_harbor_system_project(ha: ProgramRun) -> None:
    s = settings_of("ha")
    images = [c["image"] for d in documents(ha) if d["kind"] == "DaemonSet"
              for c in d["spec"]["template"]["spec"]["containers"] + d["spec"]["template"]["spec"].get(
                  "initContainers", [])]
    assert images == [f"{s.registry_hostname}/system/ingress-nginx-controller:{TAG}"]
    assert ha.of_type(INGRESS)[0].plain_inputs["image"] == images[0]


def test_mirror_pushes_the_ingress_image_only_in_helm_mode(ha: ProgramRun, dev: ProgramRun) -> None:
    s = settings_of("ha")
    ingress = [i for i in artifacts.images(s) if i.name.startswith("ingress-nginx")]
    source = f"registry.k8s.io/ingress-nginx/controller:{TAG}"
    target = f"harbor.corp.example/system/ingress-nginx-controller:{TAG}"
    assert [(i.source, i.target) for i in ingress] == [(source, target)]
    script = full_script(ha, "harbor-1-harbor-images")
    assert f"mirror_image ingress-nginx-controller_{TAG}.tar {source} {target}" in script
    assert not [i for i in artifacts.images(settings_of("dev")) if i.name.startswith("ingress-nginx")]
    assert "ingress-nginx" not in full_script(dev, "harbor-1-harbor-images")


# --- class, RBAC, configuration ---------------------------------------------------------------------

def test_ingress_class_nginx_is_default_and_matches_the_controller(ha: ProgramRun) -> None:
    docs = documents(ha)
    cls = one(docs, "IngressClass")
    assert cls["metadata"]["name"] == "nginx"
    assert cls["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    args = one(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert flag(args, "controller-class") == cls["spec"]["controller"] == "k8s.io/ingress-nginx"
    assert flag(args, "ingress-class") == "nginx"
    release = ha.of_type(RELEASE)[0].plain_inputs["values"]
    assert release["ingress"]["ingressClassName"] == cls["metadata"]["name"]


def test_objects_reference_each_other_consistently(ha: ProgramRun) -> None:
    docs = documents(ha)
    ns = one(docs, "Namespace")["metadata"]["name"]
    assert all(d["metadata"].get("namespace") in (None, ns) for d in docs)
    namespaced = {"ServiceAccount", "ConfigMap", "Role", "RoleBinding", "DaemonSet"}
    assert {d["kind"] for d in docs if d["metadata"].get("namespace") == ns} == namespaced
    ds = one(docs, "DaemonSet")
    sa = ds["spec"]["template"]["spec"]["serviceAccountName"]
    assert one(docs, "ServiceAccount")["metadata"]["name"] == sa
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = one(docs, kind)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                                      "name": one(docs, role_kind)["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    assert flag(args, "configmap") == f"$(POD_NAMESPACE)/{one(docs, 'ConfigMap')['metadata']['name']}"
    lease_rules = [r for r in one(docs, "Role")["rules"] if "leases" in r["resources"] and "update" in r["verbs"]]
    assert lease_rules and lease_rules[0]["resourceNames"] == [flag(args, "election-id")]
    cluster_rules = one(docs, "ClusterRole")["rules"]
    assert any("ingresses/status" in r["resources"] for r in cluster_rules)
    assert any("endpointslices" in r["resources"] for r in cluster_rules)
    config = one(docs, "ConfigMap")["data"]
    assert config["ssl-redirect"] == "true" and config["allow-snippet-annotations"] == "false"


def test_documents_are_unique_and_namespace_first(ha: ProgramRun) -> None:
    component = ha.of_type(INGRESS)[0]
    children = ha.children_of(component.urn)
    keys = [(r.plain_inputs["kind"], r.plain_inputs["metadata"]["name"]) for r in children]
    assert len(keys) == len(set(keys)) == 9
    namespace = next(r for r in children if r.plain_inputs["kind"] == "Namespace")
    for r in children:
        if r.plain_inputs["metadata"].get("namespace"):
            assert namespace.urn in r.dependencies, r.name


# --- wiring ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["ha", "dev_helm"])
def test_rancher_release_depends_on_the_ingress_controller(stack: str, request: pytest.FixtureRequest) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    release = run.of_type(RELEASE)[0]
    component = run.of_type(INGRESS)[0]
    children = run.children_of(component.urn)
    ds = next(r for r in children if r.plain_inputs["kind"] == "DaemonSet")
    cls = next(r for r in children if r.plain_inputs["kind"] == "IngressClass")
    assert ds.urn in release.dependencies and cls.urn in release.dependencies
    # the controller waits for the CNI/DNS add-ons and for its image in Harbor
    images = next(r for r in run.of_type(COMMAND) if r.name.endswith("-harbor-images"))
    coredns = next(r for r in run.registrations if r.name == "deployment-kube-system-coredns")
    for child in children:
        assert images.urn in child.dependencies and coredns.urn in child.dependencies, child.name


def test_no_ingress_controller_in_docker_mode(dev: ProgramRun) -> None:
    assert not dev.of_type(INGRESS)
    assert not [r for r in dev.registrations if r.type.startswith("kubernetes:") and "ingress" in r.name]
    assert not dev.of_type("kubernetes:networking.k8s.io/v1:IngressClass")


# --- firewall -------------------------------------------------------------------------------------

def test_rancher_nodes_open_443_not_80(ha: ProgramRun) -> None:
    s = settings_of("ha")
    fws = firewalls(ha)
    inside = s.zones["inside"]
    for h in s.hosts:
        tcp = ports_of(fws[h.name])
        assert 80 not in tcp, h.name
        if h.has("rancher"):
            assert 443 in tcp
            allowed = sources(fws[h.name], 443)
            nets = [ipaddress.IPv4Network(n) for n in allowed]
            for other in s.hosts:  # every inventory host (cluster agents, nodes) reaches Rancher
                assert any(ipaddress.IPv4Address(other.address) in n for n in nets), (h.name, other.name)
            assert any(ipaddress.IPv4Network(inside).subnet_of(n) for n in nets)  # operators: the INSIDE zone
            assert s.pod_cidr in allowed  # agents in pods on the Rancher node itself (not masqueraded)
        elif not h.has("registry"):
            assert 443 not in tcp, h.name
