"""One keep-alive connection, several hostnames: each request goes to its own host's instance.

Load balancers (haproxy, nginx, Traefik) keep connections to the gateway open and reuse them for
whatever Host the next client names. Over plain HTTP every request is served by its own host's
instance; over TLS only hosts the connection's certificate covers, others get a 421. Tested on
raw sockets (plain and TLS) and behind a real haproxy (HTTP mode, `http-reuse always`) and a
real nginx (upstream `keepalive`), each reusing its one connection to the gateway for two
hostnames.
"""

from __future__ import annotations

import functools
import grp
import os
import pwd
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from oauthproxy.proxy.tls import certificate_names, covers
from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests.backend import serve_backend
from tests.conftest import free_port, wait_for_port
from tests.eventually import eventually
from tests.haproxy import running_haproxy
from tests.test_http_conformance import Response, Wire, read_response, request, response
from tests.test_https import pki as pki
from tests.test_https import proxy, store_certificate
from tests.tls import TestPKI

TIMEOUT = 10
HOSTS = ("secure.example.com", "also.example.com", "other.example.com")
"""The first two are covered by the test certificate (tests/test_https.py), the third is not."""


@pytest.fixture
async def three_proxies(
    nursery: trio.Nursery, storage: Storage, gateway: Ready, pki: TestPKI
) -> None:
    """A proxy per name in HOSTS, each to its own backend (named after the host's first label),
    and the test certificate (for the first two) stored before them, so they serve HTTPS."""
    await store_certificate(storage, pki)
    for hostname in HOSTS:
        port: int = await nursery.start(
            functools.partial(serve_backend, hostname.partition(".")[0])
        )
        await storage.proxies.create(proxy(hostname, port))

    async def all_known() -> bool:
        for hostname in HOSTS:
            if (await plain_get(gateway.http_port, hostname)).status == 404:
                return False
        return True

    await eventually(all_known, what=f"{HOSTS} known", within=TIMEOUT)


@pytest.mark.parametrize(
    ("hostname", "covered"),
    [
        ("app.example.com", True),
        ("x.app.example.com", False),
        ("api.example.com", True),  # by the wildcard
        ("a.b.example.com", False),  # a wildcard stands for one label only
        ("example.com", False),
        (".example.com", False),
        ("other.test", False),
    ],
)
def test_what_a_certificate_covers(hostname: str, covered: bool) -> None:
    assert covers(frozenset({"app.example.com", "*.example.com"}), hostname) is covered


def test_certificate_names_are_its_subject_alternative_names(pki: TestPKI) -> None:
    names = certificate_names(pki.cert_file.read_text())
    assert names == {"secure.example.com", "also.example.com"}


async def plain_get(port: int, hostname: str) -> Response:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        wire = Wire(stream)
        await wire.send(request("GET /echo HTTP/1.1", "Connection: close", host=hostname))
        return await response(wire)


def backend_of(answer: Response) -> str:
    assert answer.status == 200, answer
    return (answer.header(b"x-backend") or b"").decode()


def get(hostname: str) -> bytes:
    return request("GET /echo HTTP/1.1", host=hostname)


async def test_plain_http_requests_for_several_hosts_share_one_connection(
    gateway: Ready, three_proxies: None
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", gateway.http_port)
    with trio.fail_after(TIMEOUT):
        async with stream:
            wire = Wire(stream)
            served = []
            for hostname in ("secure.example.com", "other.example.com", "secure.example.com"):
                await wire.send(get(hostname))
                served.append(backend_of(await response(wire)))
            await wire.send(get("also.example.com") + get("other.example.com"))  # pipelined
            served.append(backend_of(await response(wire)))
            served.append(backend_of(await response(wire)))
            await wire.send(get("unknown.example.com"))
            unknown = await response(wire)
            closed = await wire.closed_by_peer()
    assert served == ["secure", "other", "secure", "also", "other"]
    assert unknown.status == 404
    assert closed


async def test_tls_serves_the_hosts_its_certificate_covers_and_421s_the_others(
    gateway: Ready, pki: TestPKI, three_proxies: None
) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    with trio.fail_after(TIMEOUT):

        async def handshaken() -> trio.SSLStream[trio.SocketStream] | None:
            tcp = await trio.open_tcp_stream("127.0.0.1", gateway.https_port)
            stream = trio.SSLStream(tcp, context, server_hostname="secure.example.com")
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError:  # the certificate is not served yet
                await trio.aclose_forcefully(stream)
                return None
            return stream

        stream = await eventually(handshaken, what="a handshake for secure.example.com")
        async with stream:
            wire = Wire(stream)
            served = []
            for hostname in ("secure.example.com", "also.example.com", "SECURE.example.com"):
                await wire.send(get(hostname))
                served.append(backend_of(await response(wire)))
            await wire.send(get("other.example.com"))
            misdirected = await read_response(wire)
    assert served == ["secure", "also", "secure"]
    assert misdirected is not None and misdirected.status == 421
    assert b"does not cover" in misdirected.body


@contextmanager
def haproxy_http(workdir: Path, gateway_port: int) -> Iterator[int]:
    """haproxy as a load balancer does it: one server connection (`maxconn 1`), reused for
    every client (`http-reuse always`) whatever its Host."""
    with running_haproxy(
        workdir, gateway_port, "http", ["http-reuse always"], "maxconn 1"
    ) as front:
        yield front


NGINX_HTTP = """\
{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream gateway {{
        server 127.0.0.1:{gateway};
        keepalive 1;
    }}
    server {{
        listen 127.0.0.1:{front};
        location / {{
            proxy_pass http://gateway;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }}
    }}
}}
"""
"""nginx as a load balancer does it: upstream keep-alive (one cached connection, one worker),
the client's Host passed on."""


@contextmanager
def nginx_http(workdir: Path, gateway_port: int) -> Iterator[int]:
    front = free_port()
    prefix = workdir / f"nginx-{front}"
    prefix.mkdir()
    user = ""
    if os.geteuid() == 0:  # workers would run as `nobody`, whose group may not exist
        user = f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(0).gr_name};\n"
    config = prefix / "nginx.conf"
    config.write_text(
        NGINX_HTTP.format(user=user, prefix=prefix, front=front, gateway=gateway_port)
    )
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    command = [binary, "-p", f"{prefix}/", "-c", str(config), "-e", str(prefix / "error.log")]
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        yield front
    finally:
        child.terminate()
        child.wait(10)


BALANCERS = {"haproxy": haproxy_http, "nginx": nginx_http}


@pytest.mark.parametrize("balancer", sorted(BALANCERS))
async def test_a_load_balancer_reusing_its_connection_for_two_hosts(
    gateway: Ready, three_proxies: None, tmp_path: Path, balancer: str
) -> None:
    with BALANCERS[balancer](tmp_path, gateway.http_port) as front:
        await wait_for_port(front)
        served = []
        with trio.fail_after(TIMEOUT):
            for hostname in ("secure.example.com", "other.example.com") * 3:
                served.append(backend_of(await plain_get(front, hostname)))
    assert served == ["secure", "other"] * 3
