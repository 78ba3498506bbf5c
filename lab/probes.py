"""TCP reachability between lab hosts, as the kernel sees it.

A probe connects from the source host's network namespace (a worker thread joins it with setns(2), so no
process is spawned) to an address and port:
  "open"        connected, or refused (RST): the packet reached the destination's TCP stack, so no
                firewall dropped it — a closed port on an unfiltered host answers RST
  "dropped"     no answer within the timeout: a firewall (nftables input policy drop) ate it
  "unreachable" an ICMP error came back (no route, host unreachable, or an nft `reject`)
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.hosts import Lab

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
MAX_PARALLEL = 64


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _connect(dst_addr: str, port: int, timeout: float) -> str:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((dst_addr, port))
        return "open"
    except ConnectionRefusedError:
        return "open"
    except TimeoutError:
        return "dropped"
    except OSError as e:
        if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM):
            return "unreachable"
        raise
    finally:
        s.close()


def _probe_in(netns_path: str, dst_addr: str, port: int, timeout: float) -> str:
    """Run in a fresh thread: join the namespace, probe, and go back (the namespace is per thread)."""
    home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        _setns(netns_path)
        try:
            return _connect(dst_addr, port, timeout)
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the thread's own namespace failed")
    finally:
        os.close(home)


def tcp_probe(lab: Lab, src: str, dst_addr: str, port: int, timeout: float = 1.0) -> str:
    """"open" | "dropped" | "unreachable" for a TCP connect from host `src` to dst_addr:port."""
    netns = f"/run/netns/{lab.hosts[src].netns}"
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_probe_in, netns, dst_addr, port, timeout).result()


def probe_matrix(lab: Lab, probes: Sequence[tuple[str, str, int]],
                 timeout: float = 1.0) -> list[tuple[str, str, int, str]]:
    """Run (src host, dst address, port) probes concurrently (at most MAX_PARALLEL at once); results in
    input order. Wall time is about one timeout per MAX_PARALLEL dropped probes."""
    if not probes:
        return []
    paths = [f"/run/netns/{lab.hosts[src].netns}" for src, _, _ in probes]
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(probes))) as pool:
        futures = [pool.submit(_probe_in, path, dst, port, timeout)
                   for path, (_, dst, port) in zip(paths, probes, strict=True)]
        return [(src, dst, port, f.result()) for (src, dst, port), f in zip(probes, futures, strict=True)]


def format_matrix(results: Sequence[tuple[str, str, int, str]], names: dict[str, str] | None = None) -> str:
    """A printed table: one row per probe; `names` maps addresses to host names for the dst column."""
    names = names or {}
    rows = [("from", "to", "port", "result")] + [
        (src, f"{names.get(dst, dst)} ({dst})" if dst in names else dst, str(port), result)
        for src, dst, port, result in results]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows) + "\n"


def address_names(lab: Lab) -> dict[str, str]:
    """address -> host name, for format_matrix."""
    return {h.address: h.name for h in lab.hosts.values()}
