"""A real Docker engine for the tests: one dockerd per test session, in a temporary directory.

It runs as `recipes/components.md` says (no bridges, no iptables: containers use the host
network and bind loopback ports). No registry is reachable, so the test image is a busybox-static
root filesystem imported once (`IMAGE`); Dockerfiles are built `FROM` it. At the end dockerd is
stopped, its netns mount undone and its directory removed. A missing dockerd or busybox is a
failure, never a skip.

`bridged_docker_engine` is a second engine, for the tests of published ports (`-p`): it gets a
bridge of its own (a fresh name and an unused private /24, made with `ip` and removed at the end)
and publishes ports through docker-proxy (`--userland-proxy`), with iptables still off: the
proxy listens on the host address a port is bound to and relays to the container's bridge
address, which needs no iptables rule.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

IMAGE = "oauthproxy-test/busybox:1"
BUSYBOX_APPLETS = ("sh", "httpd", "echo", "sleep", "cat", "ls", "env")


@dataclass(frozen=True)
class Engine:
    host: str
    """`unix://…/docker.sock`, for DOCKER_HOST."""
    root: Path
    process: subprocess.Popen[bytes]
    bridge: str | None = None
    """The bridge interface this engine owns (removed with it), when it has one."""

    def docker(self, *args: str) -> str:
        """Run the docker CLI against this engine (test set-up and checks only)."""
        done = subprocess.run(
            ["docker", "--host", self.host, *args], capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {done.stderr}")
        return done.stdout.strip()


def _required(name: str) -> str:
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if found is None:
        pytest.fail(f"{name} is not installed (apt-get install docker.io busybox-static)")
    return found


def _rootfs_tarball(directory: Path) -> Path:
    """A root filesystem of one static busybox and its applets, with `/www/index.html`."""
    rootfs = directory / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "www").mkdir()
    (rootfs / "tmp").mkdir()
    shutil.copy(_required("busybox"), rootfs / "bin" / "busybox")
    for applet in BUSYBOX_APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "www" / "index.html").write_text("hello from busybox\n")
    tarball = directory / "rootfs.tar"
    with tarfile.open(tarball, "w") as archive:
        archive.add(rootfs, arcname=".")
    return tarball


def _wait_for_engine(engine: Engine) -> None:
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run(
            ["docker", "--host", engine.host, "version"], capture_output=True, timeout=30
        )
        if done.returncode == 0:
            return
        if engine.process.poll() is not None or time.monotonic() > deadline:
            log = (engine.root / "dockerd.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"dockerd did not start: {log}")
        time.sleep(0.1)


def start_engine(root: Path, *, bridged: bool = False) -> Engine:
    """Start dockerd in `root`; with `bridged`, on a bridge of its own that publishes ports
    through docker-proxy."""
    dockerd = _required("dockerd")
    _required("docker")
    host = f"unix://{root}/docker.sock"
    bridge = _make_bridge() if bridged else None
    network = (
        ["--bridge", bridge, "--userland-proxy=true",
         "--userland-proxy-path", _required("docker-proxy")]
        if bridge
        else ["--bridge", "none", "--userland-proxy=false"]
    )  # fmt: skip
    with (root / "dockerd.log").open("wb") as log:
        process = subprocess.Popen(
            [
                dockerd, "--host", host, "--data-root", str(root / "data"),
                "--exec-root", str(root / "exec"), "--pidfile", str(root / "dockerd.pid"),
                "--iptables=false", "--ip6tables=false", "--ip-masq=false", *network,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    engine = Engine(host=host, root=root, process=process, bridge=bridge)
    try:
        _wait_for_engine(engine)
    except BaseException:
        stop_engine(engine)
        raise
    return engine


def _make_bridge() -> str:
    """A new bridge interface, up, with the gateway address of a private /24 (10.x first) no
    route uses yet."""
    ip = _required("ip")
    routes = subprocess.run([ip, "-4", "route"], capture_output=True, text=True, check=True)
    used = [ipaddress.ip_network(line.split()[0], strict=False)
            for line in routes.stdout.splitlines() if line and line[0].isdigit()]  # fmt: skip
    candidates = [
        *(f"10.{secrets.randbelow(200) + 30}.{third}.0/24" for third in range(256)),
        *(f"172.{second}.{secrets.randbelow(256)}.0/24" for second in range(16, 32)),
        *(f"192.168.{third}.0/24" for third in range(256)),
    ]
    subnet = next(
        (net for net in map(ipaddress.ip_network, candidates)
         if not any(net.overlaps(other) for other in used)),
        None,
    )  # fmt: skip
    if subnet is None:
        pytest.fail("no private /24 is free for dockerd's bridge: every one is routed already")
    name = f"opb{secrets.token_hex(4)}"
    for command in (
        ["link", "add", "name", name, "type", "bridge"],
        ["addr", "add", f"{subnet.network_address + 1}/{subnet.prefixlen}", "dev", name],
        ["link", "set", name, "up"],
    ):
        done = subprocess.run([ip, *command], capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run([ip, "link", "del", name], capture_output=True)
            pytest.fail(f"cannot make a bridge for dockerd: ip {' '.join(command)}: {done.stderr}")
    return name


def stop_engine(engine: Engine) -> None:
    """Stop dockerd (it stops its containers), undo its netns mount, remove its directory."""
    if engine.process.poll() is None:
        engine.process.send_signal(signal.SIGTERM)
        try:
            engine.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            engine.process.kill()
            engine.process.wait()
    netns = engine.root / "exec" / "netns" / "default"
    if os.path.ismount(netns):
        subprocess.run(["umount", str(netns)], check=False)
    with contextlib.suppress(OSError):
        shutil.rmtree(engine.root)
    if engine.bridge is not None:
        subprocess.run(["ip", "link", "del", engine.bridge], capture_output=True, check=False)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    """A real dockerd for the whole session, with the busybox image imported."""
    yield from _engine_with_image(bridged=False)


@pytest.fixture(scope="session")
def bridged_docker_engine() -> Iterator[Engine]:
    """A real dockerd on a bridge of its own, publishing ports; with the busybox image."""
    yield from _engine_with_image(bridged=True)


def _engine_with_image(*, bridged: bool) -> Iterator[Engine]:
    root = Path(tempfile.mkdtemp(prefix="dk", dir="/tmp"))  # short: the socket path is bounded
    engine = start_engine(root, bridged=bridged)
    try:
        tarball = _rootfs_tarball(root / "image")
        engine.docker("import", "--change", 'CMD ["/bin/sh"]', str(tarball), IMAGE)
        yield engine
    finally:
        stop_engine(engine)
