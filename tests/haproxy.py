"""A real haproxy in front of the gateway, started by a test (see
../shared/recipes/components.md): the load balancer of a deployment."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.conftest import free_port


def config(front: int, gateway: int, mode: str, options: Sequence[str], server: str) -> str:
    """One frontend on `front` and one server, the gateway's port `gateway`; `options` go in
    `defaults` (`option forwardfor`, `http-reuse always`), `server` after the server's address
    (`send-proxy`, `maxconn 1`)."""
    defaults = "".join(f"    {option}\n" for option in options)
    return (
        f"defaults\n    mode {mode}\n{defaults}"
        "    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n"
        f"frontend front\n    bind 127.0.0.1:{front}\n    default_backend gateway\n"
        f"backend gateway\n    server gateway 127.0.0.1:{gateway} {server}\n"
    )


@contextlib.contextmanager
def running_haproxy(
    workdir: Path, gateway: int, mode: str, options: Sequence[str] = (), server: str = ""
) -> Iterator[int]:
    """haproxy in front of the gateway's port `gateway` (see `config`), for as long as the
    block runs; the port it listens on."""
    front = free_port()
    path = workdir / f"haproxy-{front}.cfg"
    path.write_text(config(front, gateway, mode, options, server))
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    child = subprocess.Popen([binary, "-db", "-f", str(path)], stdin=subprocess.DEVNULL)
    try:
        yield front
    finally:
        child.terminate()
        child.wait(10)
