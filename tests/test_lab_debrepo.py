"""lab/debrepo.py: a bare host's dpkg status and apt sources (no root needed)."""

from __future__ import annotations

from lab import debrepo

STATUS = """Package: curl
Status: install ok installed
Version: 7.88.1-10+deb12u14
Depends: libc6, libcurl4 (= 7.88.1-10+deb12u14)

Package: libcurl4
Status: install ok installed
Version: 7.88.1-10+deb12u14

Package: yq
Status: install ok installed
Version: 3.1.0-3
Depends: jq, python3

Package: fetcher
Status: install ok installed
Version: 1
Depends: curl | wget

Package: wget
Status: install ok installed
Version: 1.21

Package: uses-fetch
Status: install ok installed
Version: 1
Pre-Depends: curl (>= 7)

Package: jq
Status: install ok installed
Version: 1.6-2.1+deb12u1
Depends: libjq1 (= 1.6-2.1+deb12u1)
"""


def test_bare_status_drops_the_hidden_packages_and_what_depends_on_them() -> None:
    status, dropped = debrepo.bare_status(STATUS, ["curl", "jq", "not-installed-here"])
    assert dropped == ["curl", "jq", "uses-fetch", "yq"]
    kept = debrepo.statuses(status)
    # an alternative still satisfied (curl | wget) keeps the package; what nobody hid stays
    assert sorted(kept) == ["fetcher", "libcurl4", "wget"]
    assert all(v == "install ok installed" for v in kept.values())


def test_sources_are_the_lab_mirror_only_and_say_why_trusted() -> None:
    text = debrepo.sources_list("http://198.51.100.250")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines == ["deb [trusted=yes] http://198.51.100.250/debian ./"]
    assert "signed-by" in text


def test_machine_apt_files_keep_a_fresh_debians_apt_conf() -> None:
    hidden = debrepo.machine_apt_files()
    assert not any(h.endswith(tuple(debrepo.FRESH_APT_CONF)) for h in hidden)
    assert all(h.startswith(("/etc/apt/sources.list.d/", "/var/lib/apt/lists/", "/etc/apt/apt.conf.d/"))
               for h in hidden)
