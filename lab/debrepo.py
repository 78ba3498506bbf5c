"""The lab's internal Debian package mirror, and each bare host's apt and dpkg view of itself.

A fresh Debian lacks curl, jq, iptables...; the program's prerequisites step installs what a host misses
with apt-get from the host's configured repositories (`installHostPackages`), in an air gap its internal
mirror. The lab proves it for real:

- the host is bare for dpkg too: its /var/lib/dpkg/status (written in its upper dir) drops the packages
  whose files lab/bare.py hides, and every installed package that depends on one of them;
- the mirror host serves a flat repository (`debian/Packages`, `Release`) of the .debs the program's
  packages need that such a host lacks (or has at another version), fetched with `apt-get download` on
  the machine (which installs nothing) and indexed with `dpkg-scanpackages`;
- each host's apt sources are that repository only (`/etc/apt/sources.list`, every machine source and
  its package lists hidden). It is `[trusted=yes]`: the lab builds the repository fresh on each run and
  serves it on the lab's closed network, and apt-get runs inside the hosts only; a site's mirror is
  signed (`signed-by=` its key), which the program does not need to know about.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

DPKG_STATUS = Path("/var/lib/dpkg/status")
APT_LISTS = Path("/var/lib/apt/lists")
SOURCES_D = Path("/etc/apt/sources.list.d")
APT_CONF_D = Path("/etc/apt/apt.conf.d")
# apt configuration a fresh Debian 12 ships; the machine's others (PackageKit, AppStream, Google's
# Artifact Registry transport, ...) are hidden in the hosts
FRESH_APT_CONF = ("01autoremove", "70debconf")
REPO_DIR = "debian"
MANDB_AUTO_UPDATE = "/var/lib/man-db/auto-update"


def _stanzas(text: str) -> list[str]:
    return [s for s in text.split("\n\n") if s.strip()]


def _field(stanza: str, name: str) -> str:
    m = re.search(rf"^{name}: (.*(?:\n .*)*)", stanza, re.MULTILINE)
    return m.group(1).replace("\n", " ") if m else ""


def _clauses(stanza: str) -> list[list[str]]:
    """Depends + Pre-Depends as clauses of alternatives (package names only)."""
    deps = ", ".join(x for x in (_field(stanza, "Pre-Depends"), _field(stanza, "Depends")) if x)
    return [[re.split(r"[\s(:]", alt.strip(), maxsplit=1)[0] for alt in clause.split("|")]
            for clause in deps.split(",") if clause.strip()]


def bare_status(status: str, hidden_packages: Iterable[str]) -> tuple[str, list[str]]:
    """The machine's dpkg status without the hidden packages and, transitively, every package that depends
    on one of them (so apt sees a consistent system); returns (status text, dropped package names)."""
    stanzas = {_field(s, "Package"): s for s in _stanzas(status)}
    provides: dict[str, set[str]] = {}
    for name, s in stanzas.items():
        for p in _field(s, "Provides").split(","):
            if p.strip():
                provides.setdefault(re.split(r"[\s(:]", p.strip(), maxsplit=1)[0], set()).add(name)
    dropped = {p for p in hidden_packages if p in stanzas}
    changed = True
    while changed:
        changed = False
        for name, s in stanzas.items():
            if name in dropped:
                continue
            for clause in _clauses(s):
                if all(_gone(alt, stanzas, provides, dropped) for alt in clause) and any(
                        alt in dropped or provides.get(alt, set()) & dropped for alt in clause):
                    dropped.add(name)
                    changed = True
                    break
    kept = [s for n, s in stanzas.items() if n not in dropped]
    return "\n\n".join(kept) + "\n\n", sorted(dropped)


def _gone(alt: str, stanzas: dict[str, str], provides: dict[str, set[str]], dropped: set[str]) -> bool:
    real = alt in stanzas and alt not in dropped
    virtual = bool(provides.get(alt, set()) - dropped)
    return not real and not virtual


def statuses(status: str) -> dict[str, str]:
    """{package: its dpkg Status} of a status file."""
    return {_field(s, "Package"): _field(s, "Status") for s in _stanzas(status)}


def needed_debs(packages: Iterable[str], bare: str) -> dict[str, str]:
    """{package: version} the repository must hold so apt-get can install `packages` on a host whose dpkg
    status is `bare`: what `apt-get install --simulate --no-install-recommends` plans against that status
    (the machine's own package lists, nothing installed)."""
    with tempfile.NamedTemporaryFile("w", prefix="lab-dpkg-status.") as status:
        status.write(bare)
        status.flush()
        out = subprocess.run(["apt-get", "-o", f"Dir::State::status={status.name}", "install", "--simulate",
                              "-y", "-q", "--no-install-recommends", *packages],
                             check=True, capture_output=True, text=True).stdout
    return {m.group(1): m.group(2) for m in re.finditer(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ", out, re.MULTILINE)}


def build_repo(out: Path, debs_cache: Path, wanted: dict[str, str]) -> list[str]:
    """Download (`apt-get download`, into the cache, nothing installed) the wanted .debs and write the flat
    repository `out/debian/` (Packages from dpkg-scanpackages, a Release with its digest). Returns the
    .deb file names."""
    debs_cache.mkdir(parents=True, exist_ok=True)
    missing = [f"{p}={v}" for p, v in wanted.items() if not _deb_in(debs_cache, p, v)]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs_cache, check=True, capture_output=True)
    repo = out / REPO_DIR
    repo.mkdir(parents=True, exist_ok=True)
    names = []
    for p, v in sorted(wanted.items()):
        deb = _deb_in(debs_cache, p, v)
        assert deb is not None, f"apt-get download {p}={v} left no .deb"
        (repo / deb.name).write_bytes(deb.read_bytes())
        names.append(deb.name)
    packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo, check=True,
                              capture_output=True).stdout
    (repo / "Packages").write_bytes(packages)
    digest = hashlib.sha256(packages).hexdigest()
    (repo / "Release").write_text(f"Origin: container-cloud lab\nLabel: lab\nArchitectures: amd64 all\n"
                                  f"SHA256:\n {digest} {len(packages)} Packages\n")
    return names


def _deb_in(cache: Path, package: str, version: str) -> Path | None:
    quoted = version.replace(":", "%3a")
    found = sorted(cache.glob(f"{package}_{quoted}_*.deb"))
    return found[-1] if found else None


def sources_list(mirror_url: str) -> str:
    return (f"# lab: the air gap's internal mirror only (lab/debrepo.py); trusted=yes: built fresh by the lab,\n"
            f"# served on its closed network (a site's mirror is signed: signed-by=<its key>)\n"
            f"deb [trusted=yes] {mirror_url}/{REPO_DIR} ./\n")


def machine_apt_files() -> list[str]:
    """The machine's apt sources, package lists and extra apt configuration: hidden in every host."""
    out = [str(p) for p in sorted(SOURCES_D.glob("*"))]
    out += [str(p) for p in sorted(APT_LISTS.glob("*")) if p.is_file() and p.name != "lock"]
    out += [str(p) for p in sorted(APT_CONF_D.glob("*")) if p.name not in FRESH_APT_CONF]
    return out
