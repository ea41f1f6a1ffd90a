"""The PROXY protocol (HAProxy's, versions 1 and 2): who the client behind a load balancer is.

A load balancer in TCP mode opens each connection to `PROXY_PROTOCOL_PORT` with one header naming
the client's address, then relays the client's bytes (HTTP, or TLS that we terminate). `parse` is
pure; `read_header` reads just enough of a stream to parse it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import trio

from oauthproxy.proxy.sockets import WrappedStream

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107
"""The longest version 1 header, CRLF included (the specification's number)."""
V2_MAX = 16 + 65535
READ_SIZE = 4096


class ProxyHeaderError(ValueError):
    """What arrived is not a PROXY protocol header."""


@dataclass(frozen=True)
class ProxyHeader:
    source: str | None
    """The client's address; None when the balancer speaks for itself (UNKNOWN, LOCAL)."""
    source_port: int | None
    length: int
    """The header's size in bytes: what follows it is the client's."""


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of `data`; None when more bytes are needed to tell."""
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if V2_SIGNATURE.startswith(data[: len(V2_SIGNATURE)]) and len(data) < len(V2_SIGNATURE):
        return None
    if not b"PROXY "[: len(data)] == data[:6]:
        raise ProxyHeaderError("the connection did not start with a PROXY protocol header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end == -1:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError(f"a version 1 header is longer than {V1_MAX} bytes")
        return None
    return _parse_v1(data[:end].decode("ascii", "replace"), end + 2)


def _parse_v1(line: str, length: int) -> ProxyHeader:
    fields = line.split(" ")
    if fields[1:2] == ["UNKNOWN"]:
        return ProxyHeader(None, None, length)
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"not a version 1 header: {line[:V1_MAX]!r}")
    _, family, source, destination, source_port, destination_port = fields
    version = 4 if family == "TCP4" else 6
    for address in (source, destination):
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            raise ProxyHeaderError(f"not an IP address: {address!r}") from None
        if parsed.version != version:
            raise ProxyHeaderError(f"{address!r} is not an {family} address")
    for port in (source_port, destination_port):
        if not (port.isdigit() and 0 <= int(port) <= 65535):
            raise ProxyHeaderError(f"not a port: {port!r}")
    return ProxyHeader(source, int(source_port), length)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < 16:
        return None
    version_command, family = data[12], data[13]
    size = int.from_bytes(data[14:16], "big")
    length = 16 + size
    if version_command >> 4 != 2:
        raise ProxyHeaderError(f"unknown PROXY protocol version {version_command >> 4}")
    command = version_command & 0x0F
    if command not in (0, 1):
        raise ProxyHeaderError(f"unknown version 2 command {command}")
    if len(data) < length:
        return None
    if command == 0:  # LOCAL: the balancer's own connection (a health check)
        return ProxyHeader(None, None, length)
    body = data[16:length]
    if family == 0x11 and size >= 12:  # TCP over IPv4
        source = str(ipaddress.IPv4Address(body[0:4]))
        return ProxyHeader(source, int.from_bytes(body[8:10], "big"), length)
    if family == 0x21 and size >= 36:  # TCP over IPv6
        source = str(ipaddress.IPv6Address(body[0:16]))
        return ProxyHeader(source, int.from_bytes(body[32:34], "big"), length)
    if family >> 4 in (0, 3):  # unspecified or a UNIX socket: no client address to tell
        return ProxyHeader(None, None, length)
    raise ProxyHeaderError(f"unsupported version 2 address family {family:#04x}")


async def read_header(stream: trio.abc.ReceiveStream) -> tuple[ProxyHeader, bytes]:
    """The header, and the bytes after it (at least one: the client's first byte tells TLS from
    plain HTTP). ProxyHeaderError when it is not one, or the balancer closes first."""
    data = b""
    header: ProxyHeader | None = None
    while header is None or len(data) <= header.length:
        if len(data) > V2_MAX:
            raise ProxyHeaderError("the PROXY header never ended")
        chunk = await stream.receive_some(READ_SIZE)
        if not chunk:
            raise ProxyHeaderError("the connection closed before the client's first byte")
        data += chunk
        if header is None:
            header = parse(data)
    return header, data[header.length :]


class PrefixedStream(WrappedStream):
    """A stream whose first bytes were already read (they come out first)."""

    def __init__(self, stream: trio.abc.HalfCloseableStream, prefix: bytes) -> None:
        super().__init__(stream)
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            size = max_bytes or len(self._prefix)
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return data
        return await super().receive_some(max_bytes)
