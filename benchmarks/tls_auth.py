"""The HTTPS and auth pieces of `benchmarks/run.py`.

- SNI with wrk: wrk sends the URL's host as SNI (and as `Host`), and resolves it. Our hostnames
  resolve nowhere, so a wrk script replaces `wrk.resolve` to connect to 127.0.0.1 while the URL
  keeps `https://bench.local:PORT/`: SNI and `Host` are `bench.local`, the socket is loopback.
- New TLS handshakes: wrk reuses TLS sessions when it reconnects (`Connection: close` measures
  resumptions), and `openssl s_time` sends no SNI (the gateway refuses a handshake without one).
  So handshakes are counted by a pool of client threads of our own (`ssl`, which never resumes
  a session unless given one): each connection is connect → full handshake (certificate
  verified for the hostname) → `GET /` → the response read → close. The handshake itself runs
  in OpenSSL with the GIL released, so threads suffice.
- The certificate: made by the gateway (`POST /api/v1/certificates/self-signed`); its chain and
  key are read back from the gateway's Redis with `oauthproxy redis-cli` (the API never returns
  a private key), so nginx serves the very same certificate and key.
- A valid JWT: the gateway runs with `OAUTH_JWT_PRIVATE_KEY_B64` set to a key made here, and the
  token is signed with it by the project's own `oauthproxy.oauth.jws.sign`.
"""

from __future__ import annotations

import base64
import json
import math
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway_child import Gateway, api_call, wait_for_200

from oauthproxy.oauth.jws import sign
from oauthproxy.oauth.signing import key_id

SNI_LUA = """\
-- Connect to 127.0.0.1 whatever the URL's host: wrk still sends that host as SNI and Host.
wrk.resolve = function(host, service)
   wrk.addrs = wrk.lookup("127.0.0.1", service)
end
"""

AUTH_HOST = "bench-auth.local"
"""The proxy the auth rows measure."""
ISSUER = "https://auth.bench.local"
"""The gateway's OAUTH_ISSUER in the benchmarks, and the `iss` of the tokens minted here."""

HANDSHAKE_CLIENTS = 8
"""Client threads opening new TLS connections at once (each one connection at a time)."""


# --- the JWT -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    pem: str

    @classmethod
    def new(cls) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(pem.decode("ascii"))

    @property
    def env_value(self) -> str:
        """The value of OAUTH_JWT_PRIVATE_KEY_B64."""
        return base64.b64encode(self.pem.encode("ascii")).decode("ascii")

    def mint(self, issuer: str, audience: str, lifetime: float = 3600) -> str:
        """An access token as the gateway's authorization server would issue it."""
        key = serialization.load_pem_private_key(self.pem.encode("ascii"), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "sub": "github-4242",
            "username": "bench",
            "email": "bench@example.com",
            "groups": [],
            "aud": [audience],
            "azp": "bench-client",
            "scope": "mcp:read mcp:write",
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + int(lifetime),
        }
        return sign(claims, key, key_id(key.public_key()))


def turn_auth_on(gateway: Gateway, signing: SigningKey) -> tuple[str, ...]:
    """Auth on for `AUTH_HOST`, a proxy `gateway` already has, as `just bench` turns it on
    (`auth_required_users: ["*"]`): the headers wrk then sends it, `Host` and a valid JWT (its
    audience the origin as wrk addresses it, `Host` with the port). Returns once the proxy
    answers 401 without the token and 200 with it, over keep-alive as wrk sends them."""
    port = gateway.ports.http
    with gateway.client() as api:
        api_call(
            api, "POST", f"/api/v1/proxy/targets/{AUTH_HOST}/auth", {"auth_required_users": ["*"]}
        )
    bearer = f"Authorization: Bearer {signing.mint(ISSUER, f'http://{AUTH_HOST}:{port}')}"
    wait_for_200(port, f"{AUTH_HOST}:{port}", expected=401, close=False)
    wait_for_200(port, f"{AUTH_HOST}:{port}", headers=(bearer,), close=False)
    return (f"Host: {AUTH_HOST}:{port}", bearer)


# --- the certificate ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateFiles:
    chain: Path
    key: Path


def fetch_certificate(
    oauthproxy: Path, env: dict[str, str], cert_name: str, into: Path
) -> CertificateFiles:
    """The stored chain and private key of `cert_name`, written to `into` (mode 0600)."""
    done = subprocess.run(
        [str(oauthproxy), "redis-cli", "GET", f"cert:{cert_name}"],
        env=env,
        cwd=into.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        stored = json.loads(done.stdout)
        chain, key = str(stored["fullchain_pem"]), str(stored["private_key_pem"])
    except (ValueError, KeyError, TypeError):
        raise RuntimeError(
            f"`oauthproxy redis-cli GET cert:{cert_name}` gave no certificate "
            f"(code {done.returncode}): {(done.stdout + done.stderr).strip()[:300]}"
        ) from None
    into.mkdir(mode=0o700, exist_ok=True)
    files = CertificateFiles(into / f"{cert_name}.crt", into / f"{cert_name}.key")
    for path, text in ((files.chain, chain), (files.key, key)):
        path.touch(mode=0o600)
        path.write_text(text.strip() + "\n")
    return files


def client_context(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts the benchmark certificate only and checks the hostname."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.set_alpn_protocols(["http/1.1"])
    return context


# --- one HTTPS request on a new connection -----------------------------------------------------


def _response_complete(data: bytes) -> int | None:
    """The status once `data` holds a whole response with a content-length, else None."""
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        return None
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if len(body) < length:
        return None
    return int(lines[0].split(b" ", 2)[1])


@dataclass(frozen=True)
class Fetched:
    status: int
    protocol: str
    cipher: str
    reused: bool = False
    """The handshake resumed the session it was given."""
    session: ssl.SSLSession | None = None
    """The session (with the server's ticket, once a response was read) to resume next time."""


def https_get(
    context: ssl.SSLContext,
    port: int,
    server_name: str,
    headers: tuple[tuple[str, str], ...] = (),
    timeout: float = 10,
    session: ssl.SSLSession | None = None,
) -> Fetched:
    """`GET /` on a new TLS connection to 127.0.0.1:`port` with this SNI; raises on failure."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    request = f"GET / HTTP/1.1\r\nHost: {server_name}\r\n{extra}Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with context.wrap_socket(raw, server_hostname=server_name, session=session) as tls:
            tls.sendall(request.encode())
            data = b""
            while (status := _response_complete(data)) is None:
                chunk = tls.recv(65536)
                if not chunk:
                    raise ConnectionError("the connection closed before a whole response")
                data += chunk
            cipher = tls.cipher()
            protocol, name = tls.version() or "?", cipher[0] if cipher else "?"
            return Fetched(status, protocol, name, tls.session_reused, tls.session)


def wait_for_https(
    context: ssl.SSLContext, port: int, server_name: str, timeout: float = 60
) -> Fetched:
    """Poll until `server_name` answers 200 over HTTPS (its certificate verified)."""
    deadline = time.perf_counter() + timeout
    problem = "no answer"
    while time.perf_counter() < deadline:
        try:
            fetched = https_get(context, port, server_name, timeout=5)
        except (OSError, ssl.SSLError) as error:
            problem = f"{type(error).__name__}: {error}"
        else:
            if fetched.status == 200:
                return fetched
            problem = f"status {fetched.status}"
        time.sleep(0.05)
    raise RuntimeError(
        f"https://{server_name} on port {port} not serving after {timeout:g}s: {problem}"
    )


# --- new handshakes per second -----------------------------------------------------------------


@dataclass
class Handshakes:
    name: str
    measured: str
    """Whose CPU time `cpu_us_per_handshake` is."""
    clients: int
    seconds: float
    handshakes: int
    per_second: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_handshake: float
    client_cpu_us_per_handshake: float
    """This process's CPU (the client threads) per handshake: it shares the machine's cores."""
    protocol: str
    cipher: str
    errors: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    """Connections whose handshake resumed a session (only when the client offered one)."""

    def error_text(self) -> str:
        return ", ".join(f"{n} {kind}" for kind, n in sorted(self.errors.items())) or "0"


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _hammer(
    seconds: float, context: ssl.SSLContext, port: int, server_name: str, resume: bool = False
) -> tuple[list[float], dict[str, int], Fetched | None, int]:
    """Run `HANDSHAKE_CLIENTS` threads for `seconds`: per-connection latencies, errors, a sample,
    and how many handshakes resumed (`resume`: each thread offers the session of its last one)."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sample: list[Fetched] = []
    resumed = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        mine: list[float] = []
        session: ssl.SSLSession | None = None
        reused = 0
        while (started := time.perf_counter()) < deadline:
            try:
                fetched = https_get(context, port, server_name, session=session)
            except (OSError, ssl.SSLError, ValueError, IndexError) as error:
                kind = type(error).__name__
                with lock:
                    errors[kind] = errors.get(kind, 0) + 1
                continue
            if fetched.status != 200:
                kind = f"status {fetched.status}"
                with lock:
                    errors[kind] = errors.get(kind, 0) + 1
                continue
            mine.append(time.perf_counter() - started)
            reused += fetched.reused
            if resume:
                session = fetched.session
            if not sample:
                sample.append(fetched)
        with lock:
            latencies.extend(mine)
            resumed[0] += reused

    threads = [threading.Thread(target=client, daemon=True) for _ in range(HANDSHAKE_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    return latencies, errors, sample[0] if sample else None, resumed[0]


def measure_handshakes(
    name: str,
    port: int,
    server_name: str,
    ca_file: Path,
    pids: Callable[[], list[int]],
    measured: str,
    cpu_seconds: Callable[[list[int]], float],
    seconds: float,
    resume: bool = False,
) -> Handshakes:
    """New TLS connections per second (1 s warm-up first) and the server's CPU per handshake;
    `resume`: each client thread offers the session (ticket) of its previous connection."""
    context = client_context(ca_file)
    _hammer(1, context, port, server_name, resume)
    watched = pids()
    cpu_before, client_before = cpu_seconds(watched), time.process_time()
    started = time.perf_counter()
    latencies, errors, sample, resumed = _hammer(seconds, context, port, server_name, resume)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(watched) - cpu_before
    client_cpu = time.process_time() - client_before
    done = len(latencies)
    return Handshakes(
        name=name,
        measured=measured,
        clients=HANDSHAKE_CLIENTS,
        seconds=round(elapsed, 3),
        handshakes=done,
        per_second=done / elapsed if elapsed else math.nan,
        p50_ms=_percentile(latencies, 50) * 1000,
        p99_ms=_percentile(latencies, 99) * 1000,
        cpu_us_per_handshake=cpu / done * 1e6 if done else math.nan,
        client_cpu_us_per_handshake=client_cpu / done * 1e6 if done else math.nan,
        protocol=sample.protocol if sample else "?",
        cipher=sample.cipher if sample else "?",
        errors=errors,
        resumed=resumed,
    )
