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

`isolating_docker_engine` is a third, for the owner networks (tests/test_owner_networks.py):
bridged like the second, and with iptables on, as an engine is by default, since iptables
holds the rules that keep one bridge network's containers from another's. It runs in a network
namespace of its own (`ip netns`), so its rules are its own: it shares no chain with the host or
with any other dockerd, and it starts on empty tables however many engines ran here before (on
the host's tables, a fresh-clone CI run saw it fail to start on a rule that vanished between
dockerd's check and its delete, and other runs saw it leave two networks unisolated). A veth
pair joins the namespace to the host: the engine's ports published on `0.0.0.0` are reached
from the host at `Engine.address`. Removing the namespace at the end removes its bridges, its
rules and the veth pair with it.
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
from collections.abc import Generator, Iterator
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
    namespace: str | None = None
    """The network namespace it runs in (removed with it), when not the host's."""
    address: str = "127.0.0.1"
    """Where the host reaches the ports it publishes (on `0.0.0.0` in a namespace)."""

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


def start_engine(root: Path, *, bridged: bool = False, iptables: bool = False) -> Engine:
    """Start dockerd in `root`; with `bridged`, on a bridge of its own that publishes ports
    through docker-proxy; with `iptables`, bridged and isolating its networks from each other,
    in a network namespace of its own."""
    root.mkdir(parents=True, exist_ok=True)
    dockerd = _required("dockerd")
    _required("docker")
    host = f"unix://{root}/docker.sock"
    namespace, address = _make_namespace() if iptables else (None, "127.0.0.1")
    try:
        bridge = _make_bridge(namespace) if bridged or iptables else None
    except BaseException:
        _remove_namespace(namespace)
        raise
    network = (
        ["--bridge", bridge, "--userland-proxy=true",
         "--userland-proxy-path", _required("docker-proxy")]
        if bridge
        else ["--bridge", "none", "--userland-proxy=false"]
    )  # fmt: skip
    if iptables:  # (the namespace routes nothing of the host's: these are free there)
        network += ["--default-address-pool", f"base={NAMESPACE_POOL},size=24"]
    # nsenter enters the network namespace alone: `ip netns exec` would also mount a /sys of
    # its own, where dockerd finds no cgroups
    inside = [_required("nsenter"), f"--net=/run/netns/{namespace}"] if namespace else []
    with (root / "dockerd.log").open("wb") as log:
        process = subprocess.Popen(
            [
                *inside, dockerd, "--host", host, "--data-root", str(root / "data"),
                "--exec-root", str(root / "exec"), "--pidfile", str(root / "dockerd.pid"),
                f"--iptables={str(iptables).lower()}", "--ip6tables=false", "--ip-masq=false",
                *network,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    engine = Engine(
        host=host, root=root, process=process, bridge=bridge, namespace=namespace, address=address
    )
    try:
        _wait_for_engine(engine)
    except BaseException:
        stop_engine(engine)
        raise
    return engine


NAMESPACE_BRIDGE = "10.1.0.1/24"
NAMESPACE_POOL = "10.2.0.0/16"
"""The isolating engine's bridge and the pool its networks come from, inside its namespace."""


def _make_namespace() -> tuple[str, str]:
    """A new network namespace with its loopback up and a veth pair to the host (a /30 no route
    of the host's uses, outside `NAMESPACE_BRIDGE` and `NAMESPACE_POOL`): its name, and its
    end's address, where the host reaches it."""
    ip = _required("ip")
    subnet = _free_subnet(
        [f"172.{second}.{secrets.randbelow(256)}.{4 * secrets.randbelow(64)}/30"
         for second in range(16, 32)]
    )  # fmt: skip
    outside, inside = (str(subnet.network_address + n) for n in (1, 2))
    name = f"opn{secrets.token_hex(4)}"
    for command in (
        ["netns", "add", name],
        ["-n", name, "link", "set", "lo", "up"],
        ["link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", name],
        ["addr", "add", f"{outside}/30", "dev", name],
        ["link", "set", name, "up"],
        ["-n", name, "addr", "add", f"{inside}/30", "dev", "eth0"],
        ["-n", name, "link", "set", "eth0", "up"],
    ):
        done = subprocess.run([ip, *command], capture_output=True, text=True)
        if done.returncode != 0:
            _remove_namespace(name)
            pytest.fail(f"cannot make a namespace for dockerd: ip {' '.join(command)}: "
                        f"{done.stderr}")  # fmt: skip
    return name, inside


def _remove_namespace(name: str | None) -> None:
    """Remove the namespace (with every interface in it) and the host's end of its veth."""
    if name is not None:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


def _free_subnet(candidates: list[str]) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The first of `candidates` that no route of this host overlaps."""
    routes = subprocess.run(
        [_required("ip"), "-4", "route"], capture_output=True, text=True, check=True
    )
    used = [ipaddress.ip_network(line.split()[0], strict=False)
            for line in routes.stdout.splitlines() if line and line[0].isdigit()]  # fmt: skip
    subnet = next(
        (net for net in map(ipaddress.ip_network, candidates)
         if not any(net.overlaps(other) for other in used)),
        None,
    )  # fmt: skip
    if subnet is None:
        pytest.fail("no private network is free for dockerd: every one is routed already")
    return subnet


def _make_bridge(namespace: str | None = None) -> str:
    """A new bridge interface, up, with the gateway address of a private /24 (10.x first) no
    route uses yet; in `namespace`, with `NAMESPACE_BRIDGE`."""
    ip = [_required("ip")]
    if namespace is None:
        subnet = _free_subnet([
            *(f"10.{secrets.randbelow(200) + 30}.{third}.0/24" for third in range(256)),
            *(f"172.{second}.{secrets.randbelow(256)}.0/24" for second in range(16, 32)),
            *(f"192.168.{third}.0/24" for third in range(256)),
        ])  # fmt: skip
        address = f"{subnet.network_address + 1}/{subnet.prefixlen}"
    else:
        ip, address = [*ip, "-n", namespace], NAMESPACE_BRIDGE
    name = f"opb{secrets.token_hex(4)}"
    for command in (
        ["link", "add", "name", name, "type", "bridge"],
        ["addr", "add", address, "dev", name],
        ["link", "set", name, "up"],
    ):
        done = subprocess.run([*ip, *command], capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run([*ip, "link", "del", name], capture_output=True)
            pytest.fail(f"cannot make a bridge for dockerd: ip {' '.join(command)}: {done.stderr}")
    return name


def _remove_networks(engine: Engine) -> None:
    """Remove the engine's containers and the networks they made (best effort): a bridge
    network's interface, and with iptables its rules, outlive dockerd otherwise."""
    run = ["docker", "--host", engine.host]
    listed = subprocess.run([*run, "ps", "-aq"], capture_output=True, text=True, timeout=60)
    if listed.stdout.split():
        subprocess.run([*run, "rm", "-f", *listed.stdout.split()], capture_output=True, timeout=120)
    subprocess.run([*run, "network", "prune", "-f"], capture_output=True, timeout=60)


def stop_engine(engine: Engine) -> None:
    """Stop dockerd (it stops its containers), undo its netns mount, remove its directory."""
    if engine.process.poll() is None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _remove_networks(engine)
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
    if engine.namespace is not None:
        _remove_namespace(engine.namespace)
    elif engine.bridge is not None:
        subprocess.run(["ip", "link", "del", engine.bridge], capture_output=True, check=False)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    """A real dockerd for the whole session, with the busybox image imported."""
    yield from _engine_with_image(bridged=False)


@pytest.fixture(scope="session")
def bridged_docker_engine() -> Iterator[Engine]:
    """A real dockerd on a bridge of its own, publishing ports; with the busybox image."""
    yield from _engine_with_image(bridged=True)


@pytest.fixture(scope="session")
def isolating_docker_engine() -> Iterator[Engine]:
    """A real dockerd on a bridge of its own, with iptables: its networks are isolated from
    each other as an engine's are by default; with the busybox image. In a network namespace of
    its own (see the module's docstring)."""
    for _ in range(3):
        started = _engine_with_image(bridged=True, iptables=True)
        try:
            engine = next(started)
            if _isolates(engine):
                yield engine
                return
        finally:
            started.close()  # (stops it) and, unless it served, starts another
    pytest.fail("this host's dockerd does not isolate its bridge networks (3 engines)")


def _isolates(engine: Engine) -> bool:
    """Whether the engine drops traffic between two bridge networks, as the tests need
    (waiting up to 10 s for it). Engines sharing the host's tables (before they had namespaces
    of their own) sometimes did not, or could not make the networks; each new engine is still
    checked before a test relies on it, and replaced when it fails the check."""
    try:
        engine.docker("network", "create", "isolation-a")
        engine.docker("network", "create", "isolation-b")
    except AssertionError:
        return False
    try:
        serve = "mkdir -p /www && echo held > /www/i && exec httpd -f -p 80 -h /www"
        engine.docker("run", "-d", "--name", "isolation-b1", "--network", "isolation-b",
                      IMAGE, "sh", "-c", serve)  # fmt: skip
        engine.docker("run", "-d", "--name", "isolation-a1", "--network", "isolation-a",
                      IMAGE, "sleep", "600")  # fmt: skip
        inspected = engine.docker(
            "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            "isolation-b1",
        )  # fmt: skip
        deadline = time.monotonic() + 10

        def fetched(container: str, address: str) -> bool:
            tried = subprocess.run(
                ["docker", "--host", engine.host, "exec", container, "sh", "-c",
                 f"printf 'GET /i HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {address} 80"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            return "held" in tried.stdout

        while not fetched("isolation-b1", "127.0.0.1"):  # its server is up
            if time.monotonic() > deadline:
                pytest.fail("the isolation check's server did not start")
            time.sleep(0.2)
        while True:
            if not fetched("isolation-a1", inspected):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
    except AssertionError:  # a container it could not run or inspect
        return False
    finally:
        subprocess.run(
            ["docker", "--host", engine.host, "rm", "-f", "isolation-a1", "isolation-b1"],
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            ["docker", "--host", engine.host, "network", "rm", "isolation-a", "isolation-b"],
            capture_output=True,
            timeout=60,
        )


def _engine_with_image(*, bridged: bool, iptables: bool = False) -> Generator[Engine, None, None]:
    root = Path(tempfile.mkdtemp(prefix="dk", dir="/tmp"))  # short: the socket path is bounded
    engine = start_engine(root, bridged=bridged, iptables=iptables)
    try:
        tarball = _rootfs_tarball(root / "image")
        engine.docker("import", "--change", 'CMD ["/bin/sh"]', str(tarball), IMAGE)
        yield engine
    finally:
        stop_engine(engine)
