"""A network per owner, on a real dockerd with iptables (`isolating_docker_engine`, which keeps
one bridge network's containers from another's, as an engine does by default).

An owner token's Docker service joins its owner's network only (`oauthproxy-owner-…`, made by
the gateway on demand), never the engine's default bridge: a process in one owner's container
connects to no address of another owner's container and cannot resolve its name, while the
gateway still proxies to both. The network is made once for an owner's services, which reach
each other on it, and removed with the owner's last service or with the owner's token.

The gateway runs on the host here: it reaches the services by their published ports, as on any
host (the engine runs in a network namespace of its own, which the host reaches at
`Engine.address`). A stand-in container plays the gateway's container of a compose deployment
(GATEWAY_CONTAINER): it joins every owner network and reaches every service by name, as the
compose gateway does (`http://{service_name}:{port}`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import socket
import subprocess
import tarfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from oauthproxy.serve import Ready
from oauthproxy.services.docker import DockerEngine
from oauthproxy.services.events import serve_docker_events
from oauthproxy.services.owner_networks import network_name
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.conftest import free_port
from tests.docker_engine import IMAGE, Engine
from tests.eventually import eventually
from tests.test_docker_services import SERVICES, admin_of, create, serve_on, through_gateway

STANDIN = "gateway-standin"
"""The container that plays the gateway's own (GATEWAY_CONTAINER)."""
STANDIN_NETWORK = "standin-default"
"""Its own network, as the compose project's `default` is the gateway's."""
FORWARDING_OFF = ("--sysctl", "net.ipv4.ip_forward=0")
"""How compose.yaml creates the gateway's container (the gateway joins owner networks only
then): on every owner's network, a container that forwards would route between them."""


@pytest.fixture
async def standin(isolating_docker_engine: Engine) -> AsyncIterator[str]:
    engine = isolating_docker_engine
    engine.docker("network", "create", STANDIN_NETWORK)
    engine.docker(
        "run", "-d", "--name", STANDIN, "--network", STANDIN_NETWORK, *FORWARDING_OFF,
        IMAGE, "sleep", "100000",
    )  # fmt: skip
    yield STANDIN
    engine.docker("rm", "-f", STANDIN)
    engine.docker("network", "rm", STANDIN_NETWORK)


@pytest.fixture
async def gateway(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    isolating_docker_engine: Engine,
    standin: str,
) -> Ready:
    return await serve_on(
        nursery, make_settings, isolating_docker_engine, gateway_container=standin
    )


@pytest.fixture
async def admin(gateway: Ready) -> AsyncIterator[httpx.AsyncClient]:
    async with admin_of(gateway) as client:
        yield client


@asynccontextmanager
async def owner(
    admin: httpx.AsyncClient, gateway: Ready, name: str
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A new owner token's client, and the token's hash (the owner's id)."""
    generated = await admin.post("/api/v1/tokens/generate", json={"name": name})
    assert generated.status_code in (200, 201), generated.text
    secret = generated.json()["token"]
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers, timeout=90) as client:
        yield client, "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def serving(word: str) -> list[str]:
    """A container command: answer `word` on port 80."""
    return ["sh", "-c", f"echo {word} > /www/index.html; exec httpd -f -p 80 -h /www"]


async def exchange(engine: Engine, container: str, host: str) -> str:
    """What a process in `container` gets from `host` port 80 (by address or by name, through
    the container's own resolver): the HTTP answer, or "" when it cannot connect."""
    request = r'printf "GET /index.html HTTP/1.0\r\n\r\n"'
    command = ["docker", "--host", engine.host, "exec", container,
               "sh", "-c", f"{request} | nc -w 3 {host} 80"]  # fmt: skip
    done = await trio.to_thread.run_sync(
        lambda: subprocess.run(command, capture_output=True, text=True, timeout=30)
    )
    return done.stdout


def addresses(engine: Engine, container: str) -> dict[str, str]:
    """The container's address on each network it is on."""
    inspected = json.loads(engine.docker("inspect", container))[0]
    networks: dict[str, Any] = inspected["NetworkSettings"]["Networks"]
    return {name: settings["IPAddress"] for name, settings in networks.items()}


def owner_networks(engine: Engine, owner_hash: str) -> list[dict[str, Any]]:
    """The networks labelled as the owner's, inspected."""
    ids = engine.docker(
        "network", "ls", "-q", "--no-trunc", "--filter", f"label=oauthproxy.owner={owner_hash}"
    ).split()
    return [json.loads(engine.docker("network", "inspect", id_))[0] for id_ in ids]


def attached(network: dict[str, Any]) -> set[str]:
    return {container["Name"] for container in (network.get("Containers") or {}).values()}


async def test_an_owners_container_reaches_no_other_owners_and_the_gateway_reaches_both(
    admin: httpx.AsyncClient, gateway: Ready, isolating_docker_engine: Engine
) -> None:
    """Before, both owners' containers shared the engine's default bridge: alice's reached
    bob's at its address, past bob's proxy and its auth."""
    engine = isolating_docker_engine
    async with (
        owner(admin, gateway, "alice") as (alice, _),
        owner(admin, gateway, "bob") as (bob, _),
    ):
        for client, who in ((alice, "alice"), (bob, "bob")):
            port = free_port()
            await create(
                client, f"{who}-web", image=IMAGE, command=serving(f"served-by-{who}"),
                internal_port=80,
                port_configs=[{"name": "http", "host": port, "container": 80, "bind": "0.0.0.0"}],
            )  # fmt: skip
            url = f"http://{engine.address}:{port}"  # (the engine's namespace, from the host)
            target = {"hostname": f"{who}.example", "target_url": url}
            proxy = await client.post("/api/v1/proxy/targets/", json=target)
            assert proxy.status_code == 201, proxy.text

        # the gateway (on the host) proxies to each through the owner's own proxy
        for who in ("alice", "bob"):
            answer = await through_gateway(gateway, f"{who}.example", 200)
            assert answer.text == f"served-by-{who}\n"

        # neither owner's container connects to the other's, by any address or by name
        for me, other in (("alice-web", "bob-web"), ("bob-web", "alice-web")):
            for own in addresses(engine, me).values():  # it connects where it may
                assert (await exchange(engine, me, own)).endswith(f"\nserved-by-{me[:-4]}\n")
            theirs = addresses(engine, other)
            assert theirs and all(theirs.values()), theirs
            for network, address in theirs.items():
                said = await exchange(engine, me, address)
                assert said == "", f"{me} reached {other} at {address} on {network}: {said!r}"
            said = await exchange(engine, me, other)
            assert said == "", f"{me} reached {other} by its name: {said!r}"

        # each is on its owner's network alone, and the gateway's container is on both
        for client, who in ((alice, "alice"), (bob, "bob")):
            shown = (await client.get(f"{SERVICES}{who}-web")).json()
            (network,) = shown["container_networks"]
            assert network.startswith("oauthproxy-owner-")
            assert list(addresses(engine, f"{who}-web")) == [network]
            assert network in addresses(engine, STANDIN)
            # where the compose gateway reaches it: by its name, on that network
            said = await exchange(engine, STANDIN, f"{who}-web")
            assert said.endswith(f"\nserved-by-{who}\n"), said
        assert (
            shown["container_networks"]
            != (await alice.get(f"{SERVICES}alice-web")).json()["container_networks"]
        )


async def test_an_owners_services_share_one_network_made_once(
    admin: httpx.AsyncClient, gateway: Ready, isolating_docker_engine: Engine
) -> None:
    engine = isolating_docker_engine
    async with owner(admin, gateway, "carol") as (carol, carol_hash):

        async def make(name: str) -> None:
            command = serving(f"served-by-{name}")
            await create(carol, name, image=IMAGE, command=command, internal_port=80)

        async with trio.open_nursery() as both:  # at once: the network is still to be made
            for name in ("carol-one", "carol-two"):
                both.start_soon(make, name)
        (network,) = owner_networks(engine, carol_hash)
        assert network["Name"] == network_name(carol_hash)
        assert network["Driver"] == "bridge"
        assert network["Labels"] == {
            "oauthproxy.managed": "true",
            "oauthproxy.owner": carol_hash,
        }
        assert attached(network) == {"carol-one", "carol-two", STANDIN}
        for name in ("carol-one", "carol-two"):
            assert list(addresses(engine, name)) == [network["Name"]]
            shown = (await carol.get(f"{SERVICES}{name}")).json()
            assert shown["container_networks"] == [network["Name"]]
        # they reach each other, by name and by address
        said = await exchange(engine, "carol-one", "carol-two")
        assert said.endswith("\nserved-by-carol-two\n"), said
        two = addresses(engine, "carol-two")[network["Name"]]
        assert (await exchange(engine, "carol-one", two)).endswith("\nserved-by-carol-two\n")
        said = await exchange(engine, "carol-two", "carol-one")
        assert said.endswith("\nserved-by-carol-one\n"), said

        # a new container of the service (a changed environment recreates it) is on it too
        changed = await carol.put(f"{SERVICES}carol-two", json={"environment": {"A": "1"}})
        assert changed.status_code == 200, changed.text
        assert changed.json()["container_networks"] == [network["Name"]]
        said = await exchange(engine, "carol-one", "carol-two")
        assert said.endswith("\nserved-by-carol-two\n"), said

    # made by several callers at once, the engine's network is one all the same
    docker = DockerEngine(engine.host, "")
    labels = {"oauthproxy.managed": "true", "oauthproxy.owner": "sha256:race"}
    made: list[str] = []

    async def ensure() -> None:
        made.append((await docker.ensure_network("oauthproxy-owner-race", labels)).id)

    async with trio.open_nursery() as racing:
        for _ in range(4):
            racing.start_soon(ensure)
    (raced,) = owner_networks(engine, "sha256:race")
    assert set(made) == {raced["Id"]}
    engine.docker("network", "rm", raced["Id"])


async def test_an_owners_network_goes_with_its_last_service_and_with_its_token(
    admin: httpx.AsyncClient, gateway: Ready, isolating_docker_engine: Engine
) -> None:
    engine = isolating_docker_engine
    async with owner(admin, gateway, "dave") as (dave, dave_hash):
        for name in ("dave-one", "dave-two"):
            await create(dave, name, image=IMAGE, command=serving(name), internal_port=80)
        (network,) = owner_networks(engine, dave_hash)

        deleted = await dave.delete(f"{SERVICES}dave-one")
        assert deleted.status_code == 200, deleted.text
        (still,) = owner_networks(engine, dave_hash)  # dave-two is on it
        assert still["Id"] == network["Id"]
        assert attached(still) == {"dave-two", STANDIN}
        said = await exchange(engine, STANDIN, "dave-two")
        assert said.endswith("\ndave-two\n"), said

        deleted = await dave.delete(f"{SERVICES}dave-two")
        assert deleted.status_code == 200, deleted.text
        assert owner_networks(engine, dave_hash) == []
        assert network["Name"] not in addresses(engine, STANDIN)

        # a new service makes it again
        await create(dave, "dave-three", image=IMAGE, command=serving("three"), internal_port=80)
        (again,) = owner_networks(engine, dave_hash)
        assert again["Name"] == network["Name"] and again["Id"] != network["Id"]

    # deleting the token removes its containers and its network
    gone = await admin.delete("/api/v1/tokens/dave")
    assert gone.status_code == 200, gone.text
    assert owner_networks(engine, dave_hash) == []
    assert again["Name"] not in addresses(engine, STANDIN)


class ComposeDns(trio.abc.HostnameResolver):
    """Docker's DNS as the gateway's container of the compose project sees it: `redis` (the
    compose service REDIS_URL names) is an address; any other name resolves as on this host."""

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        if host in (b"redis", "redis"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.10", 0))]
        return await trio.to_thread.run_sync(
            socket.getaddrinfo, host, port, family, type, proto, flags
        )

    async def getnameinfo(self, sockaddr: tuple[Any, ...], flags: int) -> tuple[str, str]:
        return await trio.to_thread.run_sync(socket.getnameinfo, sockaddr, flags)


async def test_an_owners_service_takes_no_name_the_gateway_resolves(
    admin: httpx.AsyncClient, gateway: Ready
) -> None:
    """The gateway's container joins every owner network, where Docker's DNS answers each
    service's name: a service named `redis` beside the compose project's took the gateway's
    own lookups of REDIS_URL's host (and its Redis password) whenever that network's answer
    came first. A name the gateway resolves now is refused to owners."""
    previous = trio.socket.set_custom_hostname_resolver(ComposeDns())
    try:
        async with owner(admin, gateway, "erin") as (erin, _):
            taken = await erin.post(
                SERVICES, json={"service_name": "redis", "image": IMAGE, "command": ["true"]}
            )
            assert taken.status_code == 403, taken.text
            assert taken.json()["field"] == "service_name"
            free = await erin.post(
                SERVICES,
                json={"service_name": "erin-db", "image": IMAGE, "command": ["true"],
                      "start": False},
            )  # fmt: skip
            assert free.status_code == 201, free.text
            assert (await erin.delete(f"{SERVICES}erin-db")).status_code == 200
        admins = await admin.post(
            SERVICES, json={"service_name": "redis", "image": IMAGE, "command": ["true"]}
        )
        assert admins.status_code == 201, admins.text  # the admin names what it likes
        assert (await admin.delete(f"{SERVICES}redis")).status_code == 200
    finally:
        trio.socket.set_custom_hostname_resolver(previous)


async def test_the_gateways_container_rejoins_every_owner_network_when_it_follows_the_engine(
    admin: httpx.AsyncClient,
    gateway: Ready,
    isolating_docker_engine: Engine,
    storage: Storage,
    nursery: trio.Nursery,
) -> None:
    """A gateway container made anew (compose recreates it on every rebuild) is on none of the
    owner networks: its Docker events follower joins them all when it (re)connects."""
    engine = isolating_docker_engine
    async with owner(admin, gateway, "frank") as (frank, frank_hash):
        await create(frank, "frank-web", image=IMAGE, command=serving("frank"), internal_port=80)
        (network,) = owner_networks(engine, frank_hash)
        engine.docker("network", "disconnect", network["Id"], STANDIN)
        assert network["Name"] not in addresses(engine, STANDIN)

        shutdown = trio.Event()
        docker = DockerEngine(engine.host, "")
        await nursery.start(
            functools.partial(serve_docker_events, docker, storage, shutdown, gateway=STANDIN)
        )

        async def rejoined() -> bool:
            return network["Name"] in addresses(engine, STANDIN)

        await eventually(rejoined, what="the stand-in gateway on frank's network", within=20)
        said = await exchange(engine, STANDIN, "frank-web")
        assert said.endswith("\nfrank\n"), said
        shutdown.set()
        assert (await frank.delete(f"{SERVICES}frank-web")).status_code == 200


async def test_a_gateway_container_that_forwards_packets_joins_no_owner_network(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    isolating_docker_engine: Engine,
) -> None:
    """A container's network namespace takes IPv4 forwarding from the host (on wherever dockerd
    runs): a gateway container on every owner's network was a router between them (an attack
    hunt sent Alice's packets through it to Bob's container, past the engine's isolation, which
    acts only between its bridges). The gateway now joins owner networks only when its
    container was created with forwarding off, and refuses owners' services until then."""
    engine = isolating_docker_engine
    engine.docker("network", "create", "router-default")
    engine.docker(
        "run", "-d", "--name", "gateway-router", "--network", "router-default",
        IMAGE, "sleep", "100000",
    )  # fmt: skip
    try:
        gateway = await serve_on(nursery, make_settings, engine, gateway_container="gateway-router")
        async with admin_of(gateway) as admin, owner(admin, gateway, "alice") as (alice, hash_):
            fields = {"image": IMAGE, "command": serving("alice"), "internal_port": 80}
            made = await alice.post(SERVICES, json={"service_name": "alice-web", **fields})
            assert made.status_code == 503, made.text
            assert made.json()["error"] == "gateway_misconfigured"
            assert made.json()["field"] == "GATEWAY_CONTAINER"
            assert "net.ipv4.ip_forward" in made.json()["detail"]
            assert not [n for n in owner_networks(engine, hash_) if attached(n)]
            assert engine.docker("ps", "-aq", "--filter", "name=alice-web") == ""
    finally:
        engine.docker("rm", "-f", "gateway-router")
        engine.docker("network", "rm", "router-default")


UDP_SEND = r"""
/* udpsend IFACE NEXT_HOP_MAC SRC_IP DST_IP DST_PORT PAYLOAD: five UDP datagrams in Ethernet
   frames sent to NEXT_HOP_MAC, whatever the routing table says (CAP_NET_RAW: every container
   has it by default). */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned short checksum(const void *data, int length) {
    const unsigned short *word = data;
    unsigned long sum = 0;
    for (; length > 1; length -= 2) sum += *word++;
    if (length) sum += *(const unsigned char *)word;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (unsigned short)~sum;
}

int main(int argc, char **argv) {
    if (argc != 7) return 2;
    int sock = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, argv[1], IFNAMSIZ - 1);
    if (sock < 0 || ioctl(sock, SIOCGIFINDEX, &request) < 0) return 1;
    int index = request.ifr_ifindex;
    if (ioctl(sock, SIOCGIFHWADDR, &request) < 0) return 1;
    unsigned char frame[1500];
    memset(frame, 0, sizeof frame);
    struct ether_header *ethernet = (void *)frame;
    unsigned int mac[6];
    if (sscanf(argv[2], "%x:%x:%x:%x:%x:%x", &mac[0], &mac[1], &mac[2], &mac[3], &mac[4],
               &mac[5]) != 6) return 2;
    for (int i = 0; i < 6; i++) ethernet->ether_dhost[i] = (unsigned char)mac[i];
    memcpy(ethernet->ether_shost, request.ifr_hwaddr.sa_data, 6);
    ethernet->ether_type = htons(ETH_P_IP);
    int length = (int)strlen(argv[6]);
    struct iphdr *ip = (void *)(frame + sizeof *ethernet);
    struct udphdr *udp = (void *)((unsigned char *)ip + sizeof *ip);
    memcpy((unsigned char *)udp + sizeof *udp, argv[6], length);
    ip->version = 4; ip->ihl = 5; ip->ttl = 64; ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons(sizeof *ip + sizeof *udp + length);
    inet_pton(AF_INET, argv[3], &ip->saddr);
    inet_pton(AF_INET, argv[4], &ip->daddr);
    ip->check = checksum(ip, sizeof *ip);
    udp->source = htons(40000); udp->dest = htons(atoi(argv[5]));
    udp->len = htons(sizeof *udp + length);
    struct sockaddr_ll to;
    memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET; to.sll_ifindex = index; to.sll_halen = 6;
    memcpy(to.sll_addr, ethernet->ether_dhost, 6);
    int size = sizeof *ethernet + sizeof *ip + sizeof *udp + length;
    for (int i = 0; i < 5; i++) {
        if (sendto(sock, frame, size, 0, (struct sockaddr *)&to, sizeof to) != size) return 1;
        usleep(200000);
    }
    return 0;
}
"""
UDP_RECEIVE = r"""
/* udpreceive PORT: print each UDP datagram received on PORT, a line each. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons(atoi(argv[1]));
    if (bind(sock, (struct sockaddr *)&address, sizeof address) < 0) return 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    char buffer[2048];
    for (;;) {
        ssize_t size = recv(sock, buffer, sizeof buffer - 1, 0);
        if (size < 0) continue;
        buffer[size] = 0;
        printf("%s\n", buffer);
    }
}
"""
TOOLS = "owner/tools:1"
"""An image an owner could pull: busybox, the frame sender and a UDP receiver."""


def _tools_image(engine: Engine, directory: Path) -> None:
    rootfs = directory / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "tmp").mkdir()
    shutil.copy(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
    for applet in ("sh", "sleep", "nc", "cat"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    for name, program in (("udpsend", UDP_SEND), ("udpreceive", UDP_RECEIVE)):
        source = directory / f"{name}.c"
        source.write_text(program)
        compiled = rootfs / "bin" / name
        subprocess.run(["gcc", "-static", "-O1", "-o", str(compiled), str(source)], check=True)
    with tarfile.open(directory / "rootfs.tar", "w") as archive:
        archive.add(rootfs, arcname=".")
    engine.docker("import", str(directory / "rootfs.tar"), TOOLS)


async def test_an_owners_packets_are_not_routed_to_another_owners_network_by_the_gateway(
    isolating_docker_engine: Engine, gateway: Ready, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The attack itself: Alice's container sends frames to the gateway container's MAC on
    Alice's network, addressed (IP) to Bob's container. With forwarding on there (the host's
    default), the gateway's container routed them onto Bob's network and Bob's UDP service got
    them; created as compose creates it (forwarding off), it drops them, as the host's bridge
    does."""
    engine = isolating_docker_engine
    _tools_image(engine, tmp_path)
    async with (
        owner(admin, gateway, "alice") as (alice, _),
        owner(admin, gateway, "bob") as (
            bob,
            _,
        ),
    ):
        listen = ["udpreceive", "9999"]
        await create(bob, "bob-udp", image=TOOLS, command=listen, internal_port=9999)
        await create(alice, "alice-raw", image=TOOLS, command=["sleep", "600"], internal_port=80)
        alice_on = json.loads(engine.docker("inspect", "alice-raw"))[0]["NetworkSettings"]
        ((alice_network, alice_address),) = alice_on["Networks"].items()
        (bob_address,) = addresses(engine, "bob-udp").values()
        standin_on = json.loads(engine.docker("inspect", STANDIN))[0]["NetworkSettings"]
        gateway_mac = standin_on["Networks"][alice_network]["MacAddress"]
        sent = [
            "docker", "--host", engine.host, "exec", "alice-raw", "udpsend", "eth0", gateway_mac,
            alice_address["IPAddress"], bob_address, "9999", "through-the-gateway",
        ]  # fmt: skip
        await trio.to_thread.run_sync(lambda: subprocess.run(sent, check=True, timeout=30))
        await trio.sleep(1)
        got = engine.docker("logs", "bob-udp")
        assert "through-the-gateway" not in got
