"""`proxy-client config save|load`: the gateway's configuration as a YAML file, and back again.

A backup holds what the admin API can rebuild: tokens (with their secrets, so that a restored
token works as before and owns what it owned), certificate definitions (never private keys: a load
orders or makes each certificate anew), external services, proxies with their auth, resource
metadata and route settings, routes and protected resources. The file is written with mode 0600
and says at its top that it holds secrets. See docs/backup.md.

A load checks the whole file before it writes anything, then replays it through the ordinary
endpoints in dependency order, each record as the token that owns it. Without `--force` what
exists is skipped; with it, proxies, services, routes and resources are overwritten. Tokens and
certificates are never overwritten: changing a token's secret would mean deleting what it owns,
and a load never re-issues a certificate. On a terminal, a progress bar on stderr follows the
load record by record; `--wait` then follows the ACME certificates it ordered until they are
issued.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import yaml
from cyclopts import App, Parameter
from rich.progress import Progress

from cli.client import ApiClient, api_path
from cli.commands.services import EXTERNAL, external_path
from cli.config import OutputFormat
from cli.errors import CliError
from cli.session import CliSession, Session
from cli.waiting import DEFAULT_TIMEOUT, Timeout, progress_console, wait_for_certificate

FORMAT = "oauthproxy-config"
VERSION = 1
HEADER = (
    "# oauthproxy configuration backup (proxy-client config save).\n"
    "# It holds token secrets: keep it private (mode 0600), like the admin token.\n"
)

TOKENS = api_path("tokens", "")
CERTIFICATES = api_path("certificates", "")
PROXIES = api_path("proxy", "targets", "")
ROUTES = api_path("routes", "")
RESOURCES = api_path("resources", "")

PROXY_CREATE = (
    "hostname", "target_url", "cert_name", "https_redirect", "preserve_host_header",
    "custom_headers", "custom_response_headers",
)  # fmt: skip
PROXY_SWITCHES = ("enabled", "enable_http", "enable_https")
PROXY_AUTH = (
    "auth_enabled", "auth_proxy", "auth_mode", "auth_required_users", "auth_required_emails",
    "auth_required_groups", "auth_allowed_scopes", "auth_allowed_audiences",
    "auth_pass_headers", "auth_cookie_name", "auth_header_prefix", "auth_excluded_paths",
)  # fmt: skip
PROXY_RESOURCE = (
    "resource_endpoint", "resource_scopes", "resource_stateful", "resource_versions",
    "resource_server_info", "resource_override_backend", "resource_bearer_methods",
    "resource_documentation_suffix", "resource_custom_metadata",
)  # fmt: skip
PROXY_ROUTES = ("route_mode", "enabled_routes", "disabled_routes")
ROUTE_FIELDS = (
    "route_id", "is_regex", "path_pattern", "target_type", "target_value", "priority",
    "methods", "description", "enabled", "scope", "proxy_hostnames",
)  # fmt: skip
RESOURCE_FIELDS = ("uri", "name", "proxy_target", "scopes", "metadata_url")
SERVICE_FIELDS = ("service_name", "target_url", "description", "routing_enabled")
CERTIFICATE_FIELDS = ("cert_name", "domains", "email", "staging", "self_signed")
TOKEN_FIELDS = ("name", "token", "cert_email", "github_users", "suspended")

app = App(name="config", help="Save the gateway's configuration to YAML, or load it back.")

Json = dict[str, Any]


@dataclass(frozen=True)
class Section:
    """One list of the file: its records' key field, required and allowed fields."""

    name: str
    key: str
    required: tuple[str, ...]
    allowed: tuple[str, ...]
    owned: bool = True


SECTIONS = (
    Section("tokens", "name", ("name", "token"), TOKEN_FIELDS, owned=False),
    Section("certificates", "cert_name", ("cert_name", "domains"), CERTIFICATE_FIELDS),
    Section("services", "service_name", ("service_name", "target_url"), SERVICE_FIELDS),
    Section(
        "proxies",
        "hostname",
        ("hostname", "target_url"),
        PROXY_CREATE + PROXY_SWITCHES + PROXY_AUTH + PROXY_RESOURCE + PROXY_ROUTES,
    ),
    Section(
        "routes",
        "route_id",
        ("route_id", "path_pattern", "target_type", "target_value"),
        ROUTE_FIELDS,
    ),
    Section("resources", "uri", ("uri",), RESOURCE_FIELDS, owned=False),
)


# --- save ---------------------------------------------------------------------------------------


def _require_admin(api: ApiClient, doing: str) -> Json:
    caller: Json = api.get(api_path("tokens", "info"))
    if not caller.get("is_admin"):
        raise CliError(f"{doing} needs the admin token")
    return caller


def _owned(record: Json, owners: dict[str, str], fields: tuple[str, ...]) -> Json:
    """The record's `fields`, then `owner`: the name of the token that owns it (None: the
    admin token, whichever it is where the file is loaded)."""
    kept = {name: record[name] for name in fields if name in record}
    return {**kept, "owner": owners.get(record.get("owner_token_hash") or "")}


def _certificate(record: Json, owners: dict[str, str]) -> Json:
    staging = "staging" in (record.get("acme_directory_url") or "")
    return _owned({**record, "staging": staging}, owners, CERTIFICATE_FIELDS)


def collect(api: ApiClient) -> Json:
    """Everything a load needs, read through the admin API."""
    _require_admin(api, "config save")
    tokens = [token for token in api.get(TOKENS) if not token["is_admin"]]
    owners = {token["hash"]: token["name"] for token in tokens}
    proxy_fields = SECTIONS[3].allowed
    return {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "tokens": [
            {
                "name": token["name"],
                "token": api.get(api_path("tokens", token["name"], "reveal"))["token"],
                "cert_email": token["cert_email"],
                **({"github_users": token["github_users"]} if token.get("github_users") else {}),
                **_suspension(token),
            }
            for token in tokens
        ],
        "certificates": [_certificate(c, owners) for c in api.get(CERTIFICATES)],
        "services": [_owned(s, owners, SERVICE_FIELDS) for s in api.get(EXTERNAL)],
        "proxies": [_owned(p, owners, proxy_fields) for p in api.get(PROXIES)],
        "routes": [_owned(r, owners, ROUTE_FIELDS) for r in api.get(ROUTES)],
        "resources": [{name: r.get(name) for name in RESOURCE_FIELDS} for r in api.get(RESOURCES)],
    }


def _suspension(token: Json) -> Json:
    """`suspended` for a token the admin suspended (restored suspended, and left so); none for
    one that works, or that only a load's restore holds (`RESTORING`: it comes back working)."""
    reason = token.get("suspended")
    return {"suspended": reason} if reason and not is_restoring(reason) else {}


def default_filename() -> str:
    return datetime.now().strftime("oauthproxy-config-%Y%m%d-%H%M%S.yaml")


@app.command
def save(
    file: Annotated[
        Path | None,
        Parameter(help="Where to write (default: oauthproxy-config-YYYYMMDD-HHMMSS.yaml)."),
    ] = None,
    *,
    session: Session,
) -> None:
    """Save the whole configuration to a YAML file (admin only). It holds token secrets and is
    written with mode 0600."""
    # here, not at the top: importing the oauthproxy package loads the whole server (~0.7 s),
    # which every other proxy-client command would pay for
    from oauthproxy.files import write_private

    path = file or Path(default_filename())
    backup = collect(session.api)
    text = HEADER + yaml.dump(backup, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True)
    try:
        write_private(path, text)
    except OSError as error:
        raise CliError(f"cannot write {path}: {error.strerror or error}") from None
    counts = {section.name: len(backup[section.name]) for section in SECTIONS}
    if session.output.format is not OutputFormat.TABLE:
        session.show({"file": str(path), **counts})
        return
    session.show([{"section": name, "saved": count} for name, count in counts.items()])
    session.output.console.print(
        f"Saved to {path} (mode 0600). It holds token secrets: keep it private."
    )


# --- reading and checking a file ----------------------------------------------------------------


class _PlainDumper(yaml.SafeDumper):
    """Writes a value that occurs twice twice, never as an anchor and an alias (which a load
    refuses: `_PlainYaml`)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


class _AliasRefused(yaml.composer.ComposerError):
    pass


class _PlainYaml(yaml.SafeLoader):
    """YAML without aliases: a backup never has them, and an alias can make a value recursive
    (which no request can carry) or expand to billions of nodes (which hangs the load)."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise _AliasRefused(None, None, "an alias", mark)
        return super().compose_node(parent, index)


def read_backup(path: Path) -> Json:
    """The file's content, checked as a whole; `CliError` naming the first problem."""
    try:
        text = path.read_text()
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        data = yaml.load(text, Loader=_PlainYaml)  # noqa: S506 - a SafeLoader, without aliases
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        alias = " (aliases are not allowed)" if isinstance(error, _AliasRefused) else ""
        raise CliError(f"{path} is not valid YAML{alias}{where}") from None
    try:  # what the API is sent is JSON: a YAML date, say, is not (nor is a recursive value)
        json.dumps(data)
    except (TypeError, ValueError) as error:
        raise CliError(f"{path} holds a value that is not JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CliError(f"{path} is not an oauthproxy configuration backup (no 'format: {FORMAT}')")
    if data.get("version") != VERSION:
        raise CliError(f"{path}: version {data.get('version')!r} is not supported (only {VERSION})")
    known = {"format", "version", "saved_at", *(section.name for section in SECTIONS)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CliError(f"{path}: unknown section {unknown[0]!r}")
    tokens = {token.get("name") for token in _checked(path, data, SECTIONS[0])}
    for section in SECTIONS[1:]:
        for index, record in enumerate(_checked(path, data, section)):
            owner = record.get("owner")
            if section.owned and owner is not None and owner not in tokens:
                raise CliError(
                    f"{path}: {section.name}[{index}].owner: token {owner!r} is not in the file"
                )
    return data


def _checked(path: Path, data: Json, section: Section) -> list[Json]:
    records = data.get(section.name) or []
    if not isinstance(records, list):
        raise CliError(f"{path}: {section.name} must be a list")
    allowed = {*section.allowed, *(("owner",) if section.owned else ())}
    seen: set[str] = set()
    for index, record in enumerate(records):
        where = f"{path}: {section.name}[{index}]"
        if not isinstance(record, dict):
            raise CliError(f"{where} must be a mapping")
        missing = [name for name in section.required if record.get(name) in (None, "")]
        if missing:
            raise CliError(f"{where}.{missing[0]}: required")
        extra = sorted(set(record) - allowed)
        if extra:
            raise CliError(f"{where}.{extra[0]}: unknown field")
        key = record[section.key]
        if not isinstance(key, str):
            raise CliError(f"{where}.{section.key}: must be a string")
        if key in seen:
            raise CliError(f"{where}.{section.key}: {key!r} appears twice")
        seen.add(key)
    data[section.name] = records
    return records


# --- load ---------------------------------------------------------------------------------------


ORDERED = "ordered from the ACME CA"


def hash_secret(secret: str) -> str:
    """How the gateway names a token's secret (`owner_token_hash`)."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


RESTORING = (
    "restored by `config load`, which replays its records before it may act; it resumes when "
    "the load ends (if the load was interrupted: load the file again, or token resume NAME)"
)
"""The reason a token a load restores is suspended with until the load has replayed every
record: an owner whose token came back first could claim another owner's hostname or service
name before the load reached it (docs/backup.md). Each load adds its own mark (`load_reason`):
it resumes only a token still suspended with its own reason."""


def load_reason() -> str:
    """The suspension reason of one load: `RESTORING` and a mark no other load has."""
    return f"{RESTORING} [load {secrets.token_hex(4)}]"


def is_restoring(reason: str | None) -> bool:
    """Whether `reason` is a load's (this one's, another's, or one interrupted)."""
    return bool(reason) and str(reason).startswith(RESTORING)


@dataclass
class Loader:
    api: ApiClient
    force: bool
    admin: str
    admin_hash: str = ""
    """The hash of the admin token loading the file: the owner of the file's ownerless records."""
    rows: list[Json] = field(default_factory=list)
    actors: dict[str, ApiClient] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    """The file's token names whose records are loaded as them, and their hashes."""
    restoring: list[str] = field(default_factory=list)
    """The tokens suspended with `reason` (created so by this load, or taken over from another
    load, ended or not): resumed when this load ends, however it ends, if still so."""
    reason: str = field(default_factory=load_reason)
    on_record: Callable[[Json], None] = lambda row: None
    """Told of each record as it is done (the progress bar)."""

    def report(self, kind: str, name: str, action: str, detail: str = "") -> None:
        row = {"kind": kind, "name": name, "action": action, "detail": detail}
        self.rows.append(row)
        self.on_record(row)

    def owner(self, record: Json) -> ApiClient:
        return self.actors.get(record.get("owner") or "", self.api)

    def attempt(self, kind: str, name: str, step: Callable[[], tuple[str, str]]) -> None:
        """Run one record's requests; a refusal is reported and the load goes on."""
        try:
            action, detail = step()
        except CliError as error:
            self.report(kind, name, "failed", str(error))
        else:
            self.report(kind, name, action, detail)

    def existing(self, path: str, key: str) -> dict[str, str]:
        """The records there now, by name, and the hash of the token that owns each."""
        return {record[key]: record.get("owner_token_hash") or "" for record in self.api.get(path)}

    def held_by_another(self, record: Json, current: dict[str, str], name: str) -> bool:
        """Whether the record of that name there now is another token's than the one the file
        says owns it: a name freed after the backup and claimed since (or claimed while a
        restore ran) is that token's now, and writing the file's record over it, as the admin,
        would hand it the settings (headers with credentials, auth) of the file's owner."""
        owner = record.get("owner")
        expected = self.hashes.get(owner, "") if owner else self.admin_hash
        return bool(expected) and current[name] != expected

    # tokens: never overwritten; a restored token keeps its secret, so it owns what it owned

    def tokens(self, records: list[Json]) -> None:
        current = {token["name"]: token for token in self.api.get(TOKENS)}
        for record in records:
            self.attempt("token", record["name"], partial(self._token, record, current))

    def _token(self, record: Json, current: dict[str, Json]) -> tuple[str, str]:
        name, secret = record["name"], record["token"]
        found = current.get(name)
        if found is None:
            body = {
                "name": name,
                "token": secret,
                "cert_email": record.get("cert_email"),
                "github_users": record.get("github_users"),
                "suspended": record.get("suspended") or self.reason,
            }
            self.api.post(TOKENS, {k: v for k, v in body.items() if v is not None})
            if not record.get("suspended"):  # one the admin had suspended stays so
                self.restoring.append(name)
            self.actors[name] = self.api.acting_as(name)
            self.hashes[name] = hash_secret(secret)
            return "created", ""
        if found["hash"] != hash_secret(secret):
            return "skipped", f"exists with another secret: its records are loaded as {self.admin}"
        if is_restoring(found.get("suspended")):
            self.take_over(name, found["suspended"])  # another load's, ended or not
        self.actors[name] = self.api.acting_as(name)
        self.hashes[name] = found["hash"]
        email = record.get("cert_email")
        if self.force and email and email != found.get("cert_email"):
            self.api.put(api_path("tokens", "email"), {"name": name, "cert_email": email})
            return "updated", "cert_email"
        return "skipped", "exists"

    def take_over(self, name: str, reason: str) -> None:
        """Suspend `name` with this load's reason in place of another load's `reason` (one
        that was interrupted, or still runs: that one then leaves it to this one), unless the
        admin changed its suspension since it was read."""
        body = {"reason": self.reason, "if_reason": reason}
        try:
            self.api.put(api_path("tokens", name, "suspended"), body)
        except CliError:
            return  # the admin suspended or resumed it since: theirs to keep
        self.restoring.append(name)

    def resume(self) -> None:
        """Resume the tokens this load suspended, each only while its reason is still this
        load's (atomically: `?if_reason=`): one the admin suspended meanwhile, or another load
        took over, stays suspended, a skipped row that says why; one that could not be resumed
        is a failed row that says how to resume it."""
        query = urlencode({"if_reason": self.reason})
        for name in self.restoring:
            path = f"{api_path('tokens', name, 'suspended')}?{query}"
            try:
                answer = self.api.request("DELETE", path, also_accept=(409,))
            except CliError as error:
                detail = f"left suspended ({error}): resume it with `proxy-client token resume`"
                self.report("token", name, "failed", detail)
                continue
            if isinstance(answer, dict) and answer.get("field") == "if_reason":
                self.report("token", name, "skipped", self._left_suspended(name))

    def _left_suspended(self, name: str) -> str:
        try:
            reason = self.api.get(api_path("tokens", name)).get("suspended")
        except CliError:
            reason = None
        if is_restoring(reason):
            return "left suspended: another `config load` holds it, and resumes it when it ends"
        return f"left suspended: suspended since the load began ({reason or 'resumed since'})"

    # certificates: never overwritten or re-issued

    def certificates(self, records: list[Json]) -> None:
        current = self.existing(CERTIFICATES, "cert_name")
        for record in records:
            name = record["cert_name"]
            self.attempt("certificate", name, partial(self._certificate, record, current))

    def _certificate(self, record: Json, current: dict[str, str]) -> tuple[str, str]:
        if record["cert_name"] in current:
            return "skipped", "exists (a load never re-issues a certificate)"
        body = {"cert_name": record["cert_name"], "domains": record["domains"]}
        if record.get("self_signed"):
            self.owner(record).post(api_path("certificates", "self-signed"), body)
            return "created", "self-signed, made anew"
        acme = {**body, "staging": bool(record.get("staging")), "email": record.get("email")}
        path = api_path("certificates", "multi-domain")
        self.owner(record).post(path, {k: v for k, v in acme.items() if v is not None})
        return "created", f"{ORDERED} (in the background)"

    # services, proxies, routes, resources: created as their owner, overwritten with --force

    def services(self, records: list[Json]) -> None:
        current = self.existing(EXTERNAL, "service_name")
        for record in records:
            name = record["service_name"]
            self.attempt("service", name, partial(self._service, record, current))

    def _service(self, record: Json, current: dict[str, str]) -> tuple[str, str]:
        body = _fields(record, SERVICE_FIELDS)
        name = body.pop("service_name")
        if name not in current:
            self.owner(record).post(EXTERNAL, {"service_name": name, **body})
            return "created", ""
        if self.held_by_another(record, current, name):
            return "failed", HELD
        if not self.force:
            return "skipped", "exists"
        self.api.put(external_path(name), body)
        return "updated", ""

    def proxies(self, records: list[Json]) -> None:
        current = self.existing(PROXIES, "hostname")
        for record in records:
            name = record["hostname"]
            self.attempt("proxy", name, partial(self._proxy, record, current))

    def _proxy(self, record: Json, current: dict[str, str]) -> tuple[str, str]:
        hostname = name = record["hostname"]
        if hostname not in current:
            return self._create_proxy(record)
        if self.held_by_another(record, current, name):
            return "failed", HELD
        if not self.force:
            return "skipped", "exists"
        self._settle_proxy(self.api, record, record.get("auth_enabled", False))
        self.api.put(_proxy_path(hostname), _proxy_update(record))
        if not record.get("auth_enabled"):
            self.api.delete(_proxy_path(hostname, "auth"))
        return "updated", ""

    def _create_proxy(self, record: Json) -> tuple[str, str]:
        """Created switched off (HTTP and HTTPS off), given its auth, resource metadata and
        route settings, then switched on: it never serves without its auth settings."""
        client = self.owner(record)
        hostname = record["hostname"]
        dark = {**_fields(record, PROXY_CREATE), "enable_http": False, "enable_https": False}
        client.post(PROXIES, dark)
        try:
            self._settle_proxy(client, record, record.get("auth_enabled", False))
            switches = {name: record[name] for name in PROXY_SWITCHES if name in record}
            client.put(_proxy_path(hostname), switches)
        except CliError as error:
            raise CliError(f"created but left switched off: {error}") from None
        return "created", ""

    def _settle_proxy(self, client: ApiClient, record: Json, auth: bool) -> None:
        hostname = record["hostname"]
        if auth:
            settings = _fields(record, PROXY_AUTH)
            settings.pop("auth_enabled", None)
            client.post(_proxy_path(hostname, "auth"), settings)
        if record.get("resource_endpoint"):
            metadata = {k: v for k, v in _fields(record, PROXY_RESOURCE).items() if v is not None}
            client.post(_proxy_path(hostname, "mcp"), metadata)
        else:
            client.delete(_proxy_path(hostname, "mcp"))
        client.put(_proxy_path(hostname, "routes"), _fields(record, PROXY_ROUTES))

    def routes(self, records: list[Json]) -> None:
        current = self.existing(ROUTES, "route_id")
        for record in records:
            name = record["route_id"]
            self.attempt("route", name, partial(self._route, record, current))

    def _route(self, record: Json, current: dict[str, str]) -> tuple[str, str]:
        body = _fields(record, ROUTE_FIELDS)
        route_id = name = body["route_id"]
        if route_id not in current:
            self.owner(record).post(ROUTES, body)
            return "created", ""
        if self.held_by_another(record, current, name):
            return "failed", HELD
        if not self.force:
            return "skipped", "exists"
        body.pop("route_id")
        self.api.put(api_path("routes", route_id), body)
        return "updated", ""

    def resources(self, records: list[Json]) -> None:
        current = self.existing(RESOURCES, "uri")
        for record in records:
            self.attempt("resource", record["uri"], partial(self._resource, record, current))

    def _resource(self, record: Json, current: dict[str, str]) -> tuple[str, str]:
        body = {k: v for k, v in _fields(record, RESOURCE_FIELDS).items() if v is not None}
        uri = body.pop("uri")
        if uri not in current:
            self.api.post(RESOURCES, {"uri": uri, **body})
            return "created", ""
        if not self.force:
            return "skipped", "exists"
        self.api.put(api_path("resources", uri), body)
        return "updated", ""


HELD = "held by another token than the file's owner of it: not overwritten (see docs/backup.md)"


def _fields(record: Json, names: tuple[str, ...]) -> Json:
    return {name: record[name] for name in names if name in record}


def _proxy_path(hostname: str, *sub: str) -> str:
    return api_path("proxy", "targets", hostname, *sub)


def _proxy_update(record: Json) -> Json:
    """`PUT /proxy/targets/{hostname}`: every field the create request sets, and the switches."""
    fields = _fields(record, PROXY_CREATE + PROXY_SWITCHES)
    fields.pop("hostname")
    return fields


def load_backup(
    api: ApiClient,
    data: Json,
    *,
    force: bool,
    on_record: Callable[[Json], None] = lambda row: None,
) -> list[Json]:
    """Replay the checked file in dependency order; one row per record.

    A token the load creates is created suspended (`RESTORING`, with the load's own mark) and
    its records are created by the admin token acting as it (`X-Act-As-Token`): no owner can act
    between its token's restore and the end of the load, so none claims another's name first.
    Every such token is resumed at the end, also when the load fails or is interrupted (Ctrl-C),
    if its suspension is still the load's own (one the admin suspended meanwhile stays so); a
    load killed outright leaves them suspended, and loading the file again takes them over and
    resumes them."""
    caller = _require_admin(api, "config load")
    loader = Loader(api, force, caller["name"], caller.get("hash", ""), on_record=on_record)
    try:
        loader.tokens(data["tokens"])
        loader.certificates(data["certificates"])
        loader.services(data["services"])
        loader.proxies(data["proxies"])
        loader.routes(data["routes"])
        loader.resources(data["resources"])
    finally:
        loader.resume()
    return loader.rows


def _summary(rows: list[Json]) -> str:
    counts = {action: 0 for action in ("created", "updated", "skipped", "failed")}
    for row in rows:
        counts[row["action"]] += 1
    return ", ".join(f"{count} {action}" for action, count in counts.items())


@app.command
def load(
    file: Annotated[Path, Parameter(help="A file written by `config save`.")],
    *,
    force: Annotated[
        bool, Parameter(help="Overwrite the proxies, services, routes and resources that exist.")
    ] = False,
    wait: Annotated[
        bool, Parameter(help="Then wait until the ACME certificates it ordered are issued.")
    ] = False,
    timeout: Timeout = DEFAULT_TIMEOUT,
    session: Session,
) -> int:
    """Load a configuration backup (admin only): the whole file is checked first, then each
    record is created as the token that owns it; what exists is skipped, unless --force.
    Exits 1 when a record failed."""
    data = read_backup(file)
    total = sum(len(data[section.name]) for section in SECTIONS)
    with _progress_bar() as bar:
        task = bar.add_task(f"loading {file}", total=total)

        def advance(row: Json) -> None:
            bar.update(task, advance=1, description=f"{row['kind']} {row['name']}")

        rows = load_backup(session.api, data, force=force, on_record=advance)
    if wait:
        rows = wait_for_ordered(session.api, rows, time.monotonic() + timeout)
    _show_rows(session, rows, file)
    return 1 if any(row["action"] == "failed" for row in rows) else 0


def wait_for_ordered(api: ApiClient, rows: list[Json], deadline: float) -> list[Json]:
    """The rows, each ACME certificate the load ordered followed until it is issued (or failed:
    its row then says `failed` and why); all of them within one deadline."""
    console = progress_console()
    done = []
    for row in rows:
        if row["kind"] == "certificate" and row["detail"].startswith(ORDERED):
            try:
                left = max(deadline - time.monotonic(), 0.0)
                wait_for_certificate(api, row["name"], timeout=left, console=console)
            except CliError as error:
                row = {**row, "action": "failed", "detail": str(error)}
            else:
                row = {**row, "detail": "ordered from the ACME CA and issued"}
        done.append(row)
    return done


def _progress_bar() -> Progress:
    """A bar on stderr, on a terminal only: piped output stays the command's own."""
    console = progress_console()
    columns = Progress.get_default_columns()
    return Progress(*columns, console=console, transient=True, disable=not console.is_terminal)


def _show_rows(session: CliSession, rows: list[Json], file: Path) -> None:
    if session.output.format is not OutputFormat.TABLE:
        session.show(rows)
        return
    if rows:
        session.show(rows)
    session.output.console.print(f"Loaded {file}: {_summary(rows)}.")
