"""Pebble (Let's Encrypt's ACME test server) and pebble-challtestsrv, run by a test on free ports.

challtestsrv is Pebble's DNS: every name resolves to 127.0.0.1, so Pebble's HTTP-01 validation
connects to 127.0.0.1:`http_port` (the gateway's HTTP_PORT) with the domain as Host. Pebble's
own HTTPS listener uses a leaf from a throwaway CA (`ca_file`: the gateway's ACME_CA_BUNDLE).
Pebble can be stopped and started again on the same ports; each start has a new issuing root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trio
from cryptography import x509

from tests.conftest import free_port, wait_for_port
from tests.eventually import eventually
from tests.tls import make_pki

ORDER_ADDED = re.compile(r"Added order \"[^\"]+\" to the db")
START_TIMEOUT_SECONDS = 20.0
ENVIRONMENT = {
    "PEBBLE_VA_NOSLEEP": "1",
    "PEBBLE_WFE_NONCEREJECT": "0",
    "PEBBLE_AUTHZREUSE": "0",  # every order validates through the gateway
}


def binary(name: str) -> str:
    """The path of a Pebble binary; a missing one fails the test (never skips it)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (apt-get install pebble)")
    return path


@dataclass
class Process:
    """A child process run by a task of the test's nursery, stoppable on its own."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    exited: trio.Event = field(default_factory=trio.Event)

    async def run(self, command: list[str], log: Path, env: dict[str, str]) -> None:
        try:
            with self.scope, log.open("ab") as output:
                await trio.run_process(
                    command,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env},
                    check=False,
                )
        finally:
            self.exited.set()

    async def stop(self) -> None:
        self.scope.cancel()
        await self.exited.wait()


@dataclass
class Pebble:
    workdir: Path
    http_port: int
    nursery: trio.Nursery
    acme_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    dns_port: int = field(default_factory=free_port)
    challtest_port: int = field(default_factory=free_port)
    running: Process | None = None
    starts: int = 0

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    @property
    def ca_file(self) -> Path:
        """The CA of Pebble's own HTTPS listener."""
        return self.workdir / "ca.pem"

    @property
    def log_file(self) -> Path:
        """The log of the current (or last) run."""
        return self.workdir / f"pebble-{self.starts}.log"

    def _config(self) -> Path:
        pki = make_pki(self.workdir, ("localhost",))
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.acme_port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(pki.cert_file),
                "privateKey": str(pki.key_file),
                "httpPort": self.http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        path = self.workdir / "pebble.json"
        path.write_text(json.dumps(config))
        return path

    async def start_dns(self) -> None:
        command = [
            binary("pebble-challtestsrv"),
            "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
            "-dns01", f"127.0.0.1:{self.dns_port}",
            "-http01", "", "-https01", "", "-tlsalpn01", "",
            "-management", f"127.0.0.1:{self.challtest_port}",
        ]  # fmt: skip
        self.nursery.start_soon(Process().run, command, self.workdir / "challtestsrv.log", {})
        await wait_for_port(self.challtest_port)

    async def start(self) -> None:
        """Start Pebble (again) and wait until its directory answers."""
        if not self.ca_file.exists():
            self._config()
        self.starts += 1
        command = [
            binary("pebble"),
            "-config", str(self.workdir / "pebble.json"),
            "-dnsserver", f"127.0.0.1:{self.dns_port}",
        ]  # fmt: skip
        self.running = Process()
        self.nursery.start_soon(self.running.run, command, self.log_file, ENVIRONMENT)
        await self._until_ready()

    async def _until_ready(self) -> None:
        async with httpx.AsyncClient(verify=self.trust()) as client:

            async def directory_served() -> bool:
                return (await client.get(self.directory_url)).status_code == 200

            await eventually(
                directory_served,
                what="Pebble's directory",
                within=START_TIMEOUT_SECONDS,
                ignoring=(httpx.TransportError,),
            )

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.stop()
            self.running = None

    async def issuing_root(self) -> x509.Certificate:
        """The root that signs this run's certificates."""
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        async with httpx.AsyncClient(verify=self.trust()) as client:
            response = await client.get(url)
        response.raise_for_status()
        return x509.load_pem_x509_certificate(response.content)

    def orders(self) -> int:
        """How many orders this run of Pebble has received (from its own log)."""
        return len(ORDER_ADDED.findall(self.log_file.read_text(errors="replace")))

    def trust(self) -> ssl.SSLContext:
        """A client context that trusts Pebble's own HTTPS listener."""
        return ssl.create_default_context(cafile=str(self.ca_file))


async def start_pebble(nursery: trio.Nursery, workdir: Path, http_port: int) -> Pebble:
    """challtestsrv and Pebble, running in `nursery` until the test ends."""
    await trio.Path(workdir).mkdir(parents=True, exist_ok=True)
    pebble = Pebble(workdir, http_port, nursery)
    await pebble.start_dns()
    await pebble.start()
    return pebble
