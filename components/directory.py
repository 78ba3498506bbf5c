"""DirectoryAuth: `containercloud:auth:DirectoryAuth` — Harbor and Rancher log people in against LDAP / AD.

Harbor (v2.13 swagger `Configurations`): on the first registry host, `PUT /api/v2.0/configurations` with
`auth_mode: ldap_auth` and the `ldap_*` settings (`ldap_verify_cert: true`; the CA reaches Harbor core
through harbor.yml's `storage_service.ca_bundle`, see components/registry.py), then `POST /ldap/ping`.
Harbor only switches auth_mode while no user but admin exists: the script says so and stops instead of
sending a change Harbor would refuse.

Rancher (v2.14 `pkg/apis/management.cattle.io/v3/authn_types.go`): on the INSIDE host of the Rancher
import, `POST /v3/openLdapConfigs/openldap?action=testAndApply` (`OpenLdapTestAndApplyInput`:
`ldapConfig`, `username`, `password`) or `POST /v3/activeDirectoryConfigs/activedirectory?action=testAndApply`
(`ActiveDirectoryTestAndApplyInput`: `activeDirectoryConfig`, `username`, `password`, `enabled`).

Both request bodies hold passwords. The bodies reach the hosts as non-secret files with a placeholder
`"<secret:NAME>"` where a password goes (so the policy pack reads ldap_url, ldap_verify_cert and Rancher's
tls / starttls / certificate from what the host receives); each password is its own Pulumi-secret 0600 file
(`NAME.json`, a JSON string) over stdin. The step fills the placeholders into a 0600 temporary body with
bash builtins and sends it with `curl -d @file`; nothing secret is on a command line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi

from components.config import Directory, Settings
from components.host_step import (
    HostFile,
    HostStep,
    HostStepArgs,
    host_connection,
    needs_sudo,
    password_file,
    passwords_script,
    placeholder,
)
from components.registry import api_script
from components.templating import render

HARBOR_API_DIR = "/etc/containercloud/directory-harbor"
RANCHER_API_DIR = "/etc/containercloud/directory-rancher"
BIND_PASSWORD = "bind-password"
ADMIN_PASSWORD = "admin-password"
SUBTREE = 2  # Harbor ldap_scope / ldap_group_search_scope: 0 base, 1 one level, 2 subtree
# directory.type -> (Rancher collection, provider id, body key, principal scope prefix)
RANCHER_PROVIDERS = {
    "openldap": ("openLdapConfigs", "openldap", "ldapConfig", "openldap_group"),
    "activedirectory": ("activeDirectoryConfigs", "activedirectory", "activeDirectoryConfig", "activedirectory_group"),
}


def group_principal(d: Directory, dn: str) -> str:
    """Rancher's principal id of a directory group (`<provider>_group://<dn>`)."""
    return f"{RANCHER_PROVIDERS[d.type][3]}://{dn}"


def harbor_settings(d: Directory, bind_password: str) -> dict[str, Any]:
    return {
        "auth_mode": "ldap_auth",
        "ldap_url": f"ldaps://{d.host}:{d.port}",
        "ldap_search_dn": d.bind_dn,
        "ldap_search_password": bind_password,
        "ldap_base_dn": d.user_search_base,
        "ldap_filter": d.user_search_filter,
        "ldap_uid": d.login_attribute,
        "ldap_scope": SUBTREE,
        "ldap_verify_cert": True,
        "ldap_group_base_dn": d.group_search_base,
        "ldap_group_search_filter": d.group_search_filter,
        "ldap_group_attribute_name": "cn",
        "ldap_group_search_scope": SUBTREE,
    }


def rancher_settings(d: Directory, bind_password: str, admin_password: str) -> dict[str, Any]:
    collection, _, body_key, _ = RANCHER_PROVIDERS[d.type]
    account = "serviceAccountUsername" if d.type == "activedirectory" else "serviceAccountDistinguishedName"
    config: dict[str, Any] = {
        "type": collection[:-1],  # openLdapConfig / activeDirectoryConfig
        "enabled": True,
        "accessMode": "unrestricted",
        "servers": [d.host],
        "port": d.port,
        "tls": True,
        "starttls": False,
        "certificate": d.ca_certificate,
        account: d.bind_dn,
        "serviceAccountPassword": bind_password,
        "userSearchBase": d.user_search_base,
        "userLoginAttribute": d.login_attribute,
        "groupSearchBase": d.group_search_base,
    }
    if d.user_search_filter:
        config["userSearchFilter"] = d.user_search_filter
    if d.group_search_filter:
        config["groupSearchFilter"] = d.group_search_filter
    body: dict[str, Any] = {body_key: config, "username": d.admin_user, "password": admin_password}
    if d.type == "activedirectory":
        body["enabled"] = True
    return body


def redacted(value: dict[str, Any]) -> dict[str, Any]:
    """A body with every password replaced by "[secret]" (what the component's props show)."""
    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, dict):
            out[k] = redacted(v)
        else:
            out[k] = "[secret]" if "password" in k.lower() else v
    return out


@dataclass(frozen=True)
class DirectoryAuthArgs:
    settings: Settings
    ssh_private_key: pulumi.Input[str]
    bind_password: pulumi.Input[str]  # secret
    admin_password: pulumi.Input[str]  # secret: directory.adminUser's
    harbor_api_files: Sequence[HostFile]  # Harbor.api_files(HARBOR_API_DIR)
    rancher_api_files: Sequence[HostFile]  # RancherServer.api_files(RANCHER_API_DIR)
    rancher_api: str  # RancherServer.api_script(RANCHER_API_DIR)
    rancher_host: str  # the INSIDE host of the Rancher import
    harbor_ready: Sequence[pulumi.Resource] = field(default_factory=list)
    rancher_ready: Sequence[pulumi.Resource] = field(default_factory=list)


def _props(args: DirectoryAuthArgs) -> dict[str, Any]:
    d = args.settings.directory
    return {
        "type": d.type,
        "url": d.url,
        "tls": d.url.startswith("ldaps://"),
        "harbor": redacted(harbor_settings(d, "")),
        "rancher": redacted(rancher_settings(d, "", "")),
    }


class DirectoryAuth(pulumi.ComponentResource):
    """Harbor in ldap_auth and Rancher's matching auth provider, both against `directory`."""

    def __init__(self, name: str, args: DirectoryAuthArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("containercloud:auth:DirectoryAuth", name, _props(args), opts)
        self.args = args
        self.harbor = self._harbor(name)
        self.rancher = self._rancher(name)
        self.ready: list[pulumi.Resource] = [self.harbor, self.rancher]
        self.register_outputs({"url": args.settings.directory.url})

    def _harbor(self, name: str) -> pulumi.Resource:
        a = self.args
        s = a.settings
        host = s.registry_hosts[0]
        body_path = f"{HARBOR_API_DIR}/ldap.json"
        body = json.dumps(harbor_settings(s.directory, placeholder(BIND_PASSWORD))) + "\n"
        files = [*a.harbor_api_files, HostFile(body_path, body, "0600"),
                 password_file(HARBOR_API_DIR, BIND_PASSWORD, a.bind_password)]
        api = api_script(s, HARBOR_API_DIR) + passwords_script(HARBOR_API_DIR, BIND_PASSWORD)
        return HostStep(
            f"{name}-harbor",
            HostStepArgs(host=host.name, connection=host_connection(s, host, a.ssh_private_key),
                         script=api + render("directory/harbor.sh.j2", url=s.directory.url, body_path=body_path),
                         delete_script=render("directory/harbor-undo.sh.j2", api_dir=HARBOR_API_DIR),
                         files=files, use_sudo=needs_sudo(s, host)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(a.harbor_ready))).command

    def _rancher(self, name: str) -> pulumi.Resource:
        a = self.args
        s = a.settings
        host = s.host(a.rancher_host)
        collection, provider, _, _ = RANCHER_PROVIDERS[s.directory.type]
        body_path = f"{RANCHER_API_DIR}/auth.json"
        body = json.dumps(rancher_settings(s.directory, placeholder(BIND_PASSWORD), placeholder(ADMIN_PASSWORD))) + "\n"
        files = [*a.rancher_api_files, HostFile(body_path, body, "0600"),
                 password_file(RANCHER_API_DIR, BIND_PASSWORD, a.bind_password),
                 password_file(RANCHER_API_DIR, ADMIN_PASSWORD, a.admin_password)]
        values = dict(collection=collection, provider=provider, body_path=body_path, admin_user=s.directory.admin_user,
                      api_dir=RANCHER_API_DIR)
        return HostStep(
            f"{name}-rancher",
            HostStepArgs(host=host.name, connection=host_connection(s, host, a.ssh_private_key),
                         script=(a.rancher_api + passwords_script(RANCHER_API_DIR, BIND_PASSWORD, ADMIN_PASSWORD)
                                 + render("directory/rancher.sh.j2", **values)),
                         delete_script=render("directory/rancher-undo.sh.j2", **values),
                         files=files, use_sudo=needs_sudo(s, host)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(a.rancher_ready))).command
