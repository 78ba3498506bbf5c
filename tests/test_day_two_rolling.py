"""Rolling order in the dependency graph: a fixed number of batch gates (maxUnavailableWorkers), chained
only among themselves; each node drained from the INSIDE drain host before its runtime and kubelet; the
longest chain of a first `up` the same at 3 and 200 workers; apiservers one after the other. The gate and
drain scripts run for real against a kubectl stand-in that plays the API's node states."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest

from components.rolling import batch_count, batches
from offline.engine.runner import ProgramRun, run_program
from tests.k8s_support import command_graph, files_by_host, inner_script, k8s_steps, longest_chain, short, step
from tests.test_workers import _worker_hosts


def _gates(run: ProgramRun) -> list:
    gates = [st for st in k8s_steps(run) if "-rollout-batch-" in st.name]
    return sorted(gates, key=lambda st: int(st.name.rsplit("-", 1)[1]))


@pytest.fixture(scope="module")
def sized() -> dict[int, ProgramRun]:
    runs = {}
    for n in (3, 20, 200):
        run = run_program("dev", overrides={"hosts": _worker_hosts(n)})
        assert run.error is None, run.error
        runs[n] = run
    return runs


def test_batch_count_is_fixed_by_the_percentage_not_by_the_nodes(sized: dict[int, ProgramRun]) -> None:
    assert [batch_count(p) for p in (10, 25, 30, 100)] == [10, 4, 4, 1]
    for n, run in sized.items():
        gates = _gates(run)
        assert len(gates) == 10, n
        nodes = n + 1  # the workers and master-1 (a node too, tainted)
        by_gate: dict[str, list[str]] = {g.command_urn: [] for g in gates}
        for st in k8s_steps(run):
            if st.name.endswith("-drain"):
                (gate,) = [d for d in st.dependencies if d in by_gate]
                by_gate[gate].append(st.name)
        sizes = [len(by_gate[g.command_urn]) for g in gates]
        assert sum(sizes) == nodes and max(sizes) <= math.ceil(nodes * 10 / 100), (n, sizes)
        assert sizes[-1] >= 1
        # gates chain only among themselves: gate k waits for gate k-1, never for a node
        urns = {st.command_urn: st.name for st in k8s_steps(run)}
        for k, g in enumerate(gates):
            deps = [urns[d] for d in g.dependencies if d in urns]
            assert deps == ([gates[k - 1].name] if k else ["master-1-api-ready"]), (k, deps)
    assert [len(b) for b in batches(list(range(200)), 25)] == [50, 50, 50, 50]  # type: ignore[arg-type]


def test_first_up_longest_chain_is_the_same_at_3_and_200_workers(sized: dict[int, ProgramRun], capsys) -> None:
    chains = {n: [short(u) for u in longest_chain(command_graph(run))] for n, run in sized.items()}
    with capsys.disabled():
        for n, chain in chains.items():
            print(f"\n[{n} workers] longest chain ({len(chain)}): {' -> '.join(chain)}")
    assert len(chains[3]) == len(chains[20]) == len(chains[200])
    assert [c for c in chains[200] if "rollout-batch" in c] == [f"master-1-rollout-batch-{k}" for k in range(10)]


def test_each_node_is_drained_from_inside_before_its_runtime_and_kubelet(ha: ProgramRun) -> None:
    steps = {st.name: st for st in k8s_steps(ha)}
    cp = "cp-1"
    for name in [n[: -len("-drain")] for n in steps if n.endswith("-drain")]:
        drain, runtime, kubelet, node = (steps[f"{name}-{x}"] for x in ("drain", "runtime", "kubelet", "node"))
        assert drain.host == node.host == cp
        assert drain.command_urn in runtime.dependencies and runtime.command_urn in kubelet.dependencies
        assert kubelet.command_urn in node.dependencies
        body = inner_script(drain.command["create"])
        assert body.index("k cordon") < body.index("k drain")
        assert "uncordon" in inner_script(node.command["create"])
    for st in k8s_steps(ha):  # no cluster-admin credential on a DMZ host
        if st.host.startswith(("worker-", "harbor-")):
            assert "/etc/kubernetes/admin.conf" not in st.files, st.name


def test_apiservers_roll_one_after_the_other(ha: ProgramRun) -> None:
    urn = {st.name: st.command_urn for st in k8s_steps(ha)}
    assert urn["cp-1-kube-apiserver"] in step(ha, "cp-2-kube-apiserver").dependencies
    assert urn["cp-2-kube-apiserver"] in step(ha, "cp-3-kube-apiserver").dependencies
    assert urn["cp-2-kube-apiserver"] not in step(ha, "cp-1-kube-apiserver").dependencies


def test_a_change_to_the_nodes_reruns_the_drains_and_the_gates_after_the_first(ha: ProgramRun) -> None:
    changed = run_program("ha", overrides={"podCidr": "10.240.0.0/16"})  # kube-proxy's config on every node
    assert changed.error is None, changed.error
    before = {st.name: st.command["triggers"] for st in k8s_steps(ha)}
    after = {st.name: st.command["triggers"] for st in k8s_steps(changed)}
    drains = [n for n in before if n.endswith("-drain")]
    assert drains and all(before[n] != after[n] for n in drains)
    gates = [g.name for g in _gates(ha)]
    assert before[gates[0]] == after[gates[0]]
    nonempty = [g for g in gates[1:] if step(ha, g).files[f"/var/lib/containercloud/rollout/batch-"
                                                       f"{g.rsplit('-', 1)[1]}.expected"].strip()]
    assert nonempty and all(before[g] != after[g] for g in nonempty)


# --- the gate and the drain, for real, against a kubectl stand-in ---------------------------------------

FAKE_KUBECTL = """#!/bin/bash
# node states in $STATE/<node>: "applied|unschedulable"; a missing file = not registered
echo "$*" >> "$STATE/log"
node=""
for a in "$@"; do
  case $a in get|node|--*|-o|jsonpath=*|name|cordon|drain|uncordon) ;; *) [[ -z $node ]] && node=$a ;; esac
done
for a in "$@"; do case $a in cordon|drain|uncordon) echo "$a $node" >> "$STATE/actions"; exit 0 ;; esac; done
[[ -f $STATE/$node ]] || exit 0
state=$(cat "$STATE/$node")
case "$*" in
  *"-o name"*) echo "node/$node" ;;
  *"|{.spec.unschedulable}"*) printf '%s' "$state" ;;
  *applied*) printf '%s' "${state%%|*}" ;;
esac
"""


def _fake(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    (bin_dir / "kubectl").write_text(FAKE_KUBECTL)
    # sleep: the node being waited for finishes its rollout meanwhile
    (bin_dir / "sleep").write_text(f'#!/bin/bash\necho sleep >> {state}/log\n'
                                   f'[[ -f {state}/next ]] && mv {state}/next {state}/node-c\nexit 0\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return state, {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STATE": str(state)}


def _body(run: ProgramRun, name: str, path: str, content: str, tmp_path: Path) -> str:
    """The step's own body (the files it would write left out; `path` points at a local copy instead)."""
    text = inner_script(step(run, name).command["create"])
    body = _strip_put_files(text.split("install -d -m 0700 /var/lib/containercloud/steps")[0])
    local = tmp_path / Path(path).name
    local.write_text(content)
    return body.replace(path, str(local))


def _strip_put_files(body: str) -> str:
    out, skip = [], None
    for line in body.splitlines():
        if skip:
            if line == skip:
                skip = None
            continue
        if line.startswith("put_file ") and "<<'" in line:
            skip = line.split("<<'", 1)[1].rstrip("'")
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def test_gate_passes_fresh_nodes_at_once_and_waits_for_a_rolling_one(dev: ProgramRun, tmp_path: Path) -> None:
    gate = _gates(dev)[-1]
    lines = "node-a new\nnode-b want\nnode-c want\n"
    script = _body(dev, gate.name, f"/var/lib/containercloud/rollout/batch-{len(_gates(dev)) - 1}.expected",
                   lines, tmp_path)
    state, env = _fake(tmp_path)
    (state / "node-b").write_text("|")           # registered, never rolled out (a fresh node): not waited for
    (state / "node-c").write_text("old|true")    # an earlier rollout, cordoned now: wait
    (state / "next").write_text("want|")         # ... until it carries this rollout and is schedulable
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "node-a: not registered" in r.stdout and "node-b: not registered or never rolled out" in r.stdout
    assert "node-c: done" in r.stdout
    assert (state / "log").read_text().count("sleep") == 1
    # a fresh cluster: nothing registered, the gate returns without a single wait
    for f in ("node-b", "node-c", "log"):
        (state / f).unlink(missing_ok=True)
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and "sleep" not in (state / "log").read_text()


def test_drain_only_touches_registered_nodes_that_run_something_else(dev: ProgramRun, tmp_path: Path) -> None:
    script = _body(dev, "worker-1-drain", "/var/lib/containercloud/rollout/worker-1", "want\n", tmp_path)
    state, env = _fake(tmp_path)
    for content, drained in ((None, False), ("want|", False), ("old|", True)):
        (state / "actions").unlink(missing_ok=True)
        (state / "worker-1").unlink(missing_ok=True)
        if content:
            (state / "worker-1").write_text(content)
        r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        actions = (state / "actions").read_text() if (state / "actions").exists() else ""
        assert (actions.splitlines() == ["cordon worker-1", "drain worker-1"]) == drained, (content, actions)


def test_growing_the_control_plane_renews_the_apiserver_sans_and_leaves_etcd_units_alone(ha: ProgramRun) -> None:
    import yaml

    from offline.engine.runner import ROOT

    hosts = yaml.safe_load((ROOT / "Pulumi.ha.yaml").read_text())["config"]["container-cloud:hosts"]
    extra = [{"name": "cp-4", "address": "198.51.100.14", "zone": "inside", "roles": ["etcd", "control-plane"]},
             {"name": "etcd-5", "address": "198.51.100.15", "zone": "inside", "roles": ["etcd"]}]  # 3 -> 5
    grown = run_program("ha", overrides={"hosts": [*hosts, *extra]})
    assert grown.error is None, grown.error
    before, after = files_by_host(ha), files_by_host(grown)
    cert = after["cp-1"]["/etc/kubernetes/pki/apiserver.crt"]
    assert cert != before["cp-1"]["/etc/kubernetes/pki/apiserver.crt"]
    sans = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=cert.encode(),
                          capture_output=True, check=True).stdout.decode()
    assert "IP Address:198.51.100.14" in sans and "DNS:cp-4" in sans
    old = {st.name: st.command["triggers"] for st in k8s_steps(ha)}
    new = {st.name: st.command["triggers"] for st in k8s_steps(grown)}
    for h in ("cp-1", "cp-2", "cp-3"):
        assert old[f"{h}-kube-apiserver"] != new[f"{h}-kube-apiserver"]  # rolled, one after the other
        # the existing members' unit is unchanged (membership lives in cluster.env): no etcd restart
        assert before[h]["/etc/systemd/system/etcd.service"] == after[h]["/etc/systemd/system/etcd.service"]
    assert step(grown, "cp-3-kube-apiserver").command_urn in step(grown, "cp-4-kube-apiserver").dependencies
