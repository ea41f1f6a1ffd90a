"""nginx as a benchmark's child process: one worker, its own prefix, pid and temp dirs.

`start_nginx_with` runs nginx with the `http { }` body it is given (servers, upstreams), in the
foreground, optionally under `taskset` on one CPU; `proxy_location` is the keep-alive reverse
proxy every nginx row uses (`upstream { keepalive 64; }`, HTTP/1.1, `Connection ""`).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import Processes, pinned, wait_for_port
from tls_auth import CertificateFiles

NGINX_MAIN = """\
{user}worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
{http}}}
"""

UPSTREAM = """\
    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive 64;
    }}
"""

PROXY_LOCATION = """\
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
"""


TLS_SERVER = """\
    server {{
        listen 127.0.0.1:{port} ssl{http2};
        server_name {host};
        ssl_certificate {chain};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_conf_command NumTickets 1;
{location}    }}
"""


def plain_server(port: int, location: str = PROXY_LOCATION) -> str:
    return f"    server {{\n        listen 127.0.0.1:{port};\n{location}    }}\n"


def tls_server(port: int, host: str, tls: CertificateFiles, http2: bool = False) -> str:
    """An HTTPS server for `host` proxying to `backend`; `http2` offers h2 by ALPN too."""
    return TLS_SERVER.format(
        port=port,
        http2=" http2" if http2 else "",
        host=host,
        chain=tls.chain,
        key=tls.key,
        location=PROXY_LOCATION,
    )


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )


def upstream(backend_port: int) -> str:
    """The keep-alive upstream named `backend` that `PROXY_LOCATION` passes to."""
    return UPSTREAM.format(backend=backend_port)


def start_nginx_with(
    procs: Processes,
    binary: str,
    prefix: Path,
    http: str,
    ports: tuple[int, ...],
    cpu: int | None = None,
    wrapper: Sequence[str] = (),
    timeout: float = 15,
) -> subprocess.Popen[Any]:
    """nginx with this `http { }` body, once it listens on every port of `ports` (within
    `timeout` seconds); `wrapper` goes before the binary (e.g. valgrind)."""
    prefix.mkdir()
    user = ""
    if os.geteuid() == 0:  # workers would run as `nobody`, whose group may not exist
        user = f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(0).gr_name};\n"
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_MAIN.format(user=user, prefix=prefix, http=http))
    with (prefix / "stderr.log").open("w") as stderr:
        child = procs.start(
            [
                *pinned(cpu),
                *wrapper,
                binary,
                "-p",
                f"{prefix}/",
                "-c",
                str(conf),
                "-e",
                str(prefix / "error.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    for port in ports:
        wait_for_port(port, child, f"nginx (see {prefix}/error.log)", timeout)
    return child
