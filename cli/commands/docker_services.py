"""`proxy-client service create|list|show|start|stop|restart|logs|stats|update|delete|proxy-create|
cleanup` and the port commands: Docker services and their host ports (registered on `service`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from cyclopts import Parameter

from cli.client import api_path
from cli.columns import Kind
from cli.commands.values import comma_list, json_object, present
from cli.config import OutputFormat
from cli.session import AllFields, Session

SERVICES = api_path("services") + "/"
ServiceName = Annotated[str, Parameter(help="The service's name.")]
Bind = Literal["127.0.0.1", "0.0.0.0"]  # noqa: S104 - a choice the user makes


def service_path(name: str, *rest: str) -> str:
    return api_path("services", name, *rest)


def create(
    name: ServiceName,
    image: Annotated[str | None, Parameter(help="The image to run.")] = None,
    *,
    dockerfile: Annotated[str | None, Parameter(help="A Dockerfile to build (admin).")] = None,
    port: Annotated[int | None, Parameter(help="The port the container serves on.")] = None,
    memory: Annotated[str, Parameter(help="Memory limit, e.g. 512m.")] = "512m",
    cpu: Annotated[float, Parameter(help="CPU limit, e.g. 1.0.")] = 1.0,
    auto_proxy: Annotated[bool, Parameter(help="Also proxy {name}.{BASE_DOMAIN}.")] = False,
    expose: Annotated[bool, Parameter(help="Allocate a host port for --port.")] = False,
    bind: Annotated[Bind, Parameter(help="Where an exposed port listens.")] = "127.0.0.1",
    env: Annotated[str | None, Parameter(help='Environment, as JSON: {"K": "v"}.')] = None,
    command: Annotated[str | None, Parameter(help="Command, comma-separated words.")] = None,
    networks: Annotated[str | None, Parameter(help="Networks, comma-separated.")] = None,
    session: Session,
) -> None:
    """Create and start a Docker service from an image or a Dockerfile."""
    body = {
        "service_name": name,
        "memory_limit": memory,
        "cpu_limit": cpu,
        "auto_proxy": auto_proxy,
        "expose_ports": expose,
        "bind_address": bind,
        **present(
            image=image,
            dockerfile_path=dockerfile,
            internal_port=port,
            environment=json_object(env, "--env"),
            command=comma_list(command),
            networks=comma_list(networks),
        ),
    }
    session.show(session.api.post(SERVICES, body), kind=Kind.SERVICES)


def list_docker(
    *,
    owned_only: Annotated[bool, Parameter(help="Only this token's services.")] = False,
    session: Session,
) -> None:
    """List the Docker services (an owner token sees only its own anyway)."""
    found = session.api.get(SERVICES)
    if owned_only and isinstance(found, list):
        mine = session.api.get(api_path("tokens", "info")).get("name")
        found = [row for row in found if row.get("created_by") == mine]
    session.show(found, kind=Kind.SERVICES)


def show(name: ServiceName, *, all_fields: AllFields = False, session: Session) -> None:
    """Show a Docker service and its container's status (every field with --all)."""
    service = session.api.get(service_path(name))
    session.show(service, kind=Kind.SERVICES, all_fields=all_fields)


def start(name: ServiceName, *, session: Session) -> None:
    """Start a Docker service's container."""
    session.show(session.api.post(service_path(name, "start"), {}), kind=Kind.SERVICES)


def stop(name: ServiceName, *, session: Session) -> None:
    """Stop a Docker service's container."""
    session.show(session.api.post(service_path(name, "stop"), {}), kind=Kind.SERVICES)


def restart(name: ServiceName, *, session: Session) -> None:
    """Restart a Docker service's container."""
    session.show(session.api.post(service_path(name, "restart"), {}), kind=Kind.SERVICES)


def update(
    name: ServiceName,
    *,
    memory: Annotated[str | None, Parameter(help="New memory limit.")] = None,
    cpu: Annotated[float | None, Parameter(help="New CPU limit.")] = None,
    session: Session,
) -> None:
    """Change a running service's memory and CPU limits in place."""
    body = present(memory_limit=memory, cpu_limit=cpu)
    session.show(session.api.put(service_path(name), body), kind=Kind.SERVICES)


def delete(
    name: ServiceName,
    *,
    force: Annotated[bool, Parameter(help="Remove it even while it runs.")] = True,
    delete_proxy: Annotated[bool, Parameter(help="Also delete proxies to it.")] = False,
    session: Session,
) -> None:
    """Delete a Docker service: its container, its record, its ports."""
    query = f"?force={str(force).lower()}&delete_proxy={str(delete_proxy).lower()}"
    session.show(session.api.delete(service_path(name) + query), kind=Kind.SERVICES)


def logs(
    name: ServiceName,
    lines: Annotated[int, Parameter(help="How many lines, from the end.")] = 100,
    *,
    timestamps: Annotated[bool, Parameter(help="Prefix each line with its time.")] = False,
    follow: Annotated[bool, Parameter(help="Keep printing new lines (Ctrl-C stops).")] = False,
    session: Session,
) -> None:
    """Print a service's container output."""
    query = f"?lines={lines}&timestamps={str(timestamps).lower()}"
    if follow:
        for line in session.api.lines(service_path(name, "logs") + query + "&follow=true"):
            session.output.text(line)
        return
    found = session.api.get(service_path(name, "logs") + query)
    if session.output.format is not OutputFormat.TABLE:
        session.show(found)
        return
    session.output.text("\n".join(found.get("lines", [])))


def stats(name: ServiceName, *, session: Session) -> None:
    """CPU, memory, network and block I/O of a service's container."""
    session.show(session.api.get(service_path(name, "stats")))


def proxy_create(
    name: ServiceName,
    hostname: Annotated[str | None, Parameter(help="Default: {name}.{BASE_DOMAIN}.")] = None,
    *,
    https: Annotated[bool, Parameter(help="Serve it over HTTPS too.")] = False,
    session: Session,
) -> None:
    """Create a proxy to a Docker service."""
    body = {"enable_https": https, **present(hostname=hostname)}
    session.show(session.api.post(service_path(name, "proxy"), body), kind=Kind.PROXIES)


def cleanup(*, session: Session) -> None:
    """Remove our containers without a service, and services without a container (admin)."""
    session.show(session.api.post(service_path("cleanup"), {}))


def port_add(
    name: ServiceName,
    port: Annotated[int, Parameter(help="The host port (and container port).")],
    bind: Annotated[Bind, Parameter(help="Where it listens.")] = "127.0.0.1",
    source_token: Annotated[
        str | None, Parameter(help="Another token that may use (target) the port.")
    ] = None,
    *,
    port_name: Annotated[str | None, Parameter(help="Its name (default: port-N).")] = None,
    session: Session,
) -> None:
    """Allocate a host port for a service (checked against the ranges and restricted ports); a
    service with a container gets a new one that publishes it (`republished`)."""
    body = {
        "name": port_name or f"port-{port}",
        "host": port,
        "container": port,
        "bind": bind,
        **present(source_token=source_token),
    }
    session.show(session.api.post(service_path(name, "ports"), body))


def port_remove(
    name: ServiceName, port_name: Annotated[str, Parameter(help="The port's name.")], *,
    session: Session,
) -> None:  # fmt: skip
    """Release one of a service's ports."""
    session.show(session.api.delete(service_path(name, "ports", port_name)))


def port_list(name: ServiceName, *, session: Session) -> None:
    """A service's ports."""
    session.show(session.api.get(service_path(name, "ports")))


def port_check(
    port: Annotated[int, Parameter(help="The host port.")],
    bind: Annotated[Bind, Parameter(help="The bind address.")] = "127.0.0.1",
    *,
    session: Session,
) -> None:
    """Whether a host port could be allocated now, and if not why."""
    body = {"port": port, "bind_address": bind}
    session.show(session.api.post(service_path("ports", "check"), body))


def ports_global(
    *,
    available_only: Annotated[bool, Parameter(help="The free ranges instead.")] = False,
    session: Session,
) -> None:
    """Every allocated port the token may see, or the ranges and the next free port."""
    path = service_path("ports", "available") if available_only else service_path("ports")
    session.show(session.api.get(path))


COMMANDS: dict[str, Callable[..., None]] = {
    "create": create, "list": list_docker, "show": show, "start": start, "stop": stop,
    "restart": restart, "update": update, "delete": delete, "logs": logs, "stats": stats,
    "proxy-create": proxy_create, "cleanup": cleanup, "port-add": port_add,
    "port-remove": port_remove, "port-list": port_list, "port-check": port_check,
    "ports-global": ports_global,
}  # fmt: skip
"""Registered on `proxy-client service` by `cli.main`."""
