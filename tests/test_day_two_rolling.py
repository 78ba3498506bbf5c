"""Rolling order in the dependency graph: a fixed number of batches (maxUnavailableWorkers); per batch ONE
drain step (the gate, chained only among the drain steps) and ONE uncordon step on the INSIDE drain host, so
that host gets O(batches) SSH sessions whatever the number of nodes; each node drained before its runtime and
kubelet; the longest chain of a first `up` the same at 3 and 200 workers; apiservers one after the other. The
batch scripts run for real against a kubectl stand-in that plays the API's node states."""

from __future__ import annotations

import math
import os
import re
import subprocess
from pathlib import Path

import pytest

from benchmarks.preview import sessions_per_host
from components.rolling import batch_count, batches
from offline.engine.runner import ProgramRun, run_program
from tests.k8s_support import (
    COMMAND,
    command_graph,
    files_by_host,
    inner_script,
    k8s_steps,
    longest_chain,
    short,
    step,
)
from tests.test_workers import _worker_hosts

ROLLOUT = "/var/lib/containercloud/rollout"
DRAIN_HOST = "198.51.100.11"  # master-1 in the generated stacks (tests/test_workers.py)


def _gates(run: ProgramRun) -> list:
    gates = [st for st in k8s_steps(run) if re.fullmatch(r".+-rollout-batch-\d+", st.name)]
    return sorted(gates, key=lambda st: int(st.name.rsplit("-", 1)[1]))


def _uncordons(run: ProgramRun) -> list:
    return [st for st in k8s_steps(run) if re.fullmatch(r".+-batch-\d+-node", st.name)]


def _listed(st) -> list[str]:  # the node names a batch step carries (its `node fingerprint` lines)
    # a file arrives as its heredoc writes it: an empty batch's list is one empty line
    return [line.split()[0] for path, text in st.files.items() if path.startswith(ROLLOUT)
            for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def sized() -> dict[int, ProgramRun]:
    runs = {}
    for n in (3, 20, 200):
        run = run_program("dev", overrides={"hosts": _worker_hosts(n), "nodeNetworks": []})
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
            if st.name.endswith("-runtime"):
                (gate,) = [d for d in st.dependencies if d in by_gate]
                by_gate[gate].append(st.name.removesuffix("-runtime"))
        sizes = [len(by_gate[g.command_urn]) for g in gates]
        assert sum(sizes) == nodes and max(sizes) <= math.ceil(nodes * 10 / 100), (n, sizes)
        assert sizes[-1] >= 1
        for g in gates:  # a batch's drain step carries exactly its batch's nodes
            assert sorted(_listed(g)) == sorted(by_gate[g.command_urn]), g.name
        assert len(_uncordons(run)) == sum(1 for size in sizes if size)
        # gates chain only among themselves: gate k waits for gate k-1, never for a node
        urns = {st.command_urn: st.name for st in k8s_steps(run)}
        for k, g in enumerate(gates):
            deps = [urns[d] for d in g.dependencies if d in urns]
            assert deps == ([gates[k - 1].name] if k else ["master-1-api-ready"]), (k, deps)
    assert [len(b) for b in batches(list(range(200)), 25)] == [50, 50, 50, 50]  # type: ignore[arg-type]
    assert [len(b) for b in batches(list(range(3)), 10)] == [0] * 7 + [1, 1, 1]  # type: ignore[arg-type]


def test_the_drain_host_gets_a_bounded_number_of_ssh_sessions(sized: dict[int, ProgramRun], capsys) -> None:
    counts = {n: sessions_per_host(run) for n, run in sized.items()}
    with capsys.disabled():
        for n, c in counts.items():
            top = ", ".join(f"{h}: {k}" for h, k in c.most_common(3))
            print(f"\n[{n} workers] SSH sessions per host on an up (most first): {top}; fewest {min(c.values())}")
    own = set()
    for n, run in sized.items():
        batch_steps = [st for st in k8s_steps(run) if "-batch-" in st.name]
        assert {st.command["connection"]["host"] for st in batch_steps} == {DRAIN_HOST}
        assert len(batch_steps) <= 2 * 10  # one drain and at most one uncordon step per batch
        own.add(counts[n][DRAIN_HOST] - len(batch_steps))  # the host's own steps: not the cluster's size
    assert len(own) == 1
    assert counts[20][DRAIN_HOST] == counts[200][DRAIN_HOST] <= own.pop() + 2 * 10 <= 45
    assert max(counts[200].values()) == counts[200][DRAIN_HOST]  # no other host gets more either


def test_first_up_longest_chain_is_the_same_at_3_and_200_workers(sized: dict[int, ProgramRun], capsys) -> None:
    chains = {n: [short(u) for u in longest_chain(command_graph(run))] for n, run in sized.items()}
    with capsys.disabled():
        for n, chain in chains.items():
            print(f"\n[{n} workers] longest chain ({len(chain)}): {' -> '.join(chain)}")
    assert len(chains[3]) == len(chains[20]) == len(chains[200])
    # dev is in artifactsDirectory mode: Harbor and the publish of the binaries (4) come first, then the control
    # plane (4), then either every batch's gate (10) before a node's runtime and kubelet and the last uncordon
    # step, or one gate, a node's steps and every batch's uncordon step (10, one at a time), then the smoke
    # test: 22 whatever the number of nodes
    assert len(chains[200]) == 4 + 4 + 10 + 2 + 1 + 1
    assert chains[200][:8] == ["harbor-1-docker", "harbor-1-harbor", "harbor-1-harbor-projects",
                               "harbor-1-artifacts-publish", "master-1-etcd", "master-1-kube-apiserver",
                               "master-1-controllers", "master-1-api-ready"] and chains[200][-1] == "smoke-test-run"


def test_each_node_is_drained_from_inside_before_its_runtime_and_kubelet(ha: ProgramRun) -> None:
    steps = {st.name: st for st in k8s_steps(ha)}
    gates = {g.command_urn: g for g in _gates(ha)}
    uncordons = _uncordons(ha)
    waits = command_graph(ha)  # what each session waits for, through the removal records (no session)
    cp = "cp-1"
    nodes = [n.removesuffix("-runtime") for n in steps if n.endswith("-runtime")]
    assert nodes
    for name in nodes:
        runtime, kubelet = steps[f"{name}-runtime"], steps[f"{name}-kubelet"]
        (drain,) = [gates[d] for d in runtime.dependencies if d in gates]
        (uncordon,) = [u for u in uncordons if name in _listed(u)]
        assert drain.host == uncordon.host == cp and name in _listed(drain)
        assert drain.name.rsplit("-", 1)[1] == uncordon.name.split("-batch-")[1].split("-")[0]  # the same batch
        assert runtime.command_urn in kubelet.dependencies and kubelet.command_urn in waits[uncordon.command_urn]
        removal = ha.named(f"{name}-node", COMMAND)
        assert kubelet.command_urn in removal.dependencies
        body = inner_script(drain.command["create"])
        assert body.index("k cordon") < body.index("k drain")
        assert "uncordon" in inner_script(uncordon.command["create"])
    for st in k8s_steps(ha):  # no cluster-admin credential on a DMZ host
        if st.host.startswith(("worker-", "harbor-")):
            assert "/etc/kubernetes/admin.conf" not in st.files, st.name
            assert "admin.conf" not in st.command["create"], st.name


def test_apiservers_roll_one_after_the_other(ha: ProgramRun) -> None:
    urn = {st.name: st.command_urn for st in k8s_steps(ha)}
    assert urn["cp-1-kube-apiserver"] in step(ha, "cp-2-kube-apiserver").dependencies
    assert urn["cp-2-kube-apiserver"] in step(ha, "cp-3-kube-apiserver").dependencies
    assert urn["cp-2-kube-apiserver"] not in step(ha, "cp-1-kube-apiserver").dependencies


def test_a_change_to_the_nodes_reruns_the_batch_steps_that_hold_nodes(ha: ProgramRun) -> None:
    changed = run_program("ha", overrides={"podCidr": "10.240.0.0/16"})  # kube-proxy's config on every node
    assert changed.error is None, changed.error
    # a step runs again when its Command's triggers (a replacement) or its stdin (an update) change
    before = {st.name: (st.command["triggers"], st.command.get("stdin")) for st in k8s_steps(ha)}
    after = {st.name: (st.command["triggers"], st.command.get("stdin")) for st in k8s_steps(changed)}
    batch_steps = [st for st in [*_gates(ha), *_uncordons(ha)]]
    holding = [st.name for st in batch_steps if _listed(st)]
    assert holding and all(before[n] != after[n] for n in holding)
    assert all(before[st.name] == after[st.name] for st in batch_steps if not _listed(st))


def _batch_view(run: ProgramRun) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each batch step's script (fingerprints masked: they hash certificates that are fresh per harness
    run) and the node names it carries."""
    prints = {line.split()[-1] for st in k8s_steps(run) if "-batch-" in st.name for path, text in st.files.items()
              if path.startswith(ROLLOUT) for line in text.splitlines()}
    out = {}
    for st in k8s_steps(run):
        if "-batch-" in st.name:
            text = inner_script(st.command["create"])
            for value in prints:
                text = text.replace(value, "FINGERPRINT")
            text = re.sub(r"CC_FILE_[0-9a-f]{16}|[0-9a-f]{64}", "DIGEST", text)
            out[st.name] = (text, tuple(_listed(st)))
    return out


def test_adding_a_worker_changes_only_its_own_batch_steps(sized: dict[int, ProgramRun]) -> None:
    grown = run_program("dev", overrides={"hosts": _worker_hosts(201), "nodeNetworks": []})
    assert grown.error is None, grown.error
    before, after = _batch_view(sized[200]), _batch_view(grown)
    assert before.keys() == after.keys()
    changed = sorted(n for n in before if before[n] != after[n])
    (drain,) = [g.name for g in _gates(grown) if "worker-201" in _listed(g)]
    (uncordon,) = [u.name for u in _uncordons(grown) if "worker-201" in _listed(u)]
    assert changed == sorted([drain, uncordon])
    assert {short(d) for d in step(grown, "worker-201-runtime").dependencies} >= {drain}


# --- the batch scripts, for real, against a kubectl stand-in ---------------------------------------------

FAKE_KUBECTL = """#!/bin/bash
# node states in $STATE/<node>: "applied|unschedulable"; a missing file = not registered
echo "$*" >> "$STATE/log"
node=""
for a in "$@"; do
  case $a in get|node|--*|-o|jsonpath=*|name|cordon|drain|uncordon|label|annotate|delete) ;;
    *) [[ -z $node ]] && node=$a ;; esac
done
for a in "$@"; do
  case $a in cordon|drain|uncordon|delete|label|annotate) echo "$a $node" >> "$STATE/actions" ;; esac
  case $a in cordon|drain|delete|label) exit 0 ;;
    uncordon) state=$(cat "$STATE/$node"); echo "${state%%|*}|" > "$STATE/$node"; exit 0 ;;
    annotate) for v in "$@"; do [[ $v == containercloud.io/applied=* ]] && echo "${v#*=}" >> "$STATE/annotated-$node"
              done; exit 0 ;;
  esac
done
if [[ ! -f $STATE/$node ]]; then
  [[ "$*" == *--ignore-not-found* ]] && exit 0
  echo "Error from server (NotFound): nodes \\"$node\\" not found" >&2
  exit 1
fi
state=$(cat "$STATE/$node")
case "$*" in
  *"-o name"*) echo "node/$node" ;;
  *"|{.spec.unschedulable}"*) printf '%s' "$state" ;;
  *"{.spec.unschedulable}"*) printf '%s' "${state#*|}" ;;
  *Ready*) printf 'True' ;;
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


def _body(text: str, files: dict[str, str], tmp_path: Path) -> str:
    """A step's own body (the files it would write left out): the rollout directory points at a local one
    holding `files` (name -> content)."""
    body = _strip_put_files(text.split("install -d -m 0700 /var/lib/containercloud/steps")[0])
    local = tmp_path / "rollout"
    local.mkdir(exist_ok=True)
    for name, content in files.items():
        (local / name).write_text(content)
    return body.replace(ROLLOUT, str(local))


_STDIN_BLOCK = re.compile(r"^# \d+ file\(s\) arrive on stdin .*?^}\n", re.MULTILINE | re.DOTALL)


def _strip_put_files(body: str) -> str:
    """The script without its file writes: the `put_file` heredocs, and the files it reads from stdin."""
    body = _STDIN_BLOCK.sub("", body)
    out, skip = [], None
    for line in body.splitlines():
        if line.startswith("stdin_file "):
            continue
        if skip:
            if line == skip:
                skip = None
            continue
        if line.startswith("put_file ") and "<<'" in line:
            skip = line.split("<<'", 1)[1].rstrip("'")
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r


def _actions(state: Path) -> list[str]:
    return (state / "actions").read_text().splitlines() if (state / "actions").exists() else []


def test_batch_drain_waits_for_earlier_batches_then_drains_only_what_must_roll(dev: ProgramRun,
                                                                             tmp_path: Path) -> None:
    gates = _gates(dev)
    last = len(gates) - 1
    text = inner_script(gates[-1].command["create"])
    files = {"batch-0.drain": "node-a new\n", f"batch-{last - 1}.drain": "node-b want\nnode-c want\n",
             f"batch-{last}.drain": "own-fresh want\nown-done want\nown-old want\n"}
    script = _body(text, files, tmp_path)
    state, env = _fake(tmp_path)
    # a node mid-rollout in an earlier batch; its batch steps have not finished yet
    (state / "node-b").write_text("|")           # registered, never rolled out (a fresh node): not waited for
    (state / "node-c").write_text("old|true")    # an earlier rollout, cordoned now: wait
    (state / "next").write_text("want|")         # ... until it carries this rollout and is schedulable
    (state / "own-done").write_text("want|")     # already at its fingerprint: left alone
    (state / "own-old").write_text("old|")       # runs an older rollout: cordoned and drained
    r = _run(script, env)
    assert "node-a: not registered" in r.stdout and "node-b: not registered or never rolled out" in r.stdout
    assert "node-c: done" in r.stdout
    assert (state / "log").read_text().count("sleep") == 1
    assert _actions(state) == ["cordon own-old", "drain own-old"]
    assert "node own-fresh is not registered; nothing to drain" in r.stdout
    # a fresh cluster: nothing registered, the step returns without a single wait and drains nothing
    for f in ("node-b", "node-c", "own-done", "own-old", "log", "actions"):
        (state / f).unlink(missing_ok=True)
    _run(script, env)
    assert "sleep" not in (state / "log").read_text() and _actions(state) == []


def test_batch_uncordon_registers_labels_and_annotates_each_node(dev: ProgramRun, tmp_path: Path) -> None:
    (uncordon,) = [u for u in _uncordons(dev) if "master-1" in _listed(u)]
    k = uncordon.name.split("-batch-")[1].split("-")[0]
    text = inner_script(uncordon.command["create"])
    script = _body(text, {f"batch-{k}.uncordon": "master-1 want-m\n"}, tmp_path)
    state, env = _fake(tmp_path)
    (state / "master-1").write_text("old|true")  # drained by this rollout: comes back once Ready
    _run(script, env)
    assert _actions(state) == ["label master-1", "uncordon master-1", "annotate master-1"]
    assert (state / "annotated-master-1").read_text() == "want-m\n"
    assert "label node master-1 --overwrite node-role.kubernetes.io/control-plane=" in (state / "log").read_text()
    # a fresh node: labelled and annotated, never uncordoned
    (state / "master-1").write_text("|")
    (state / "actions").unlink()
    _run(script, env)
    assert _actions(state) == ["label master-1", "annotate master-1"]


def test_a_removed_node_is_drained_and_deleted_only_when_no_batch_lists_it(dev: ProgramRun, tmp_path: Path) -> None:
    text = inner_script(dev.named("worker-1-node", COMMAND).plain_inputs["delete"])
    state, env = _fake(tmp_path)
    (state / "worker-1").write_text("want|")
    script = _body(text, {"batch-3.uncordon": "worker-1 want\n"}, tmp_path)
    r = _run(script, env)  # still listed: a replaced record, the node stays
    assert "still listed" in r.stdout and _actions(state) == []
    (tmp_path / "rollout" / "batch-3.uncordon").write_text("worker-2 want\n")  # its batch step dropped it
    _run(script, env)
    assert _actions(state) == ["cordon worker-1", "drain worker-1", "delete worker-1"]


def test_growing_the_control_plane_renews_the_apiserver_sans_and_leaves_etcd_units_alone(ha: ProgramRun) -> None:
    import yaml

    from offline.engine.runner import ROOT

    hosts = yaml.safe_load((ROOT / "Pulumi.ha.yaml").read_text())["config"]["container-cloud:hosts"]
    extra = [{"name": "cp-4", "address": "198.51.100.14", "zone": "inside", "roles": ["etcd", "control-plane"]},
             {"name": "etcd-5", "address": "198.51.100.15", "zone": "inside", "roles": ["etcd"]}]  # 3 -> 5
    nets = ["198.51.100.11/32", "198.51.100.12/31", "198.51.100.14/32", "198.51.100.16/28", "203.0.113.16/28"]
    grown = run_program("ha", overrides={"hosts": [*hosts, *extra], "nodeNetworks": nets})
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
