"""Settings: the spec's defaults, list parsing, and one readable line per invalid value."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from oauthproxy.settings import Settings, SettingsError, load_settings
from tests.conftest import venv_bin


def test_defaults_are_the_specifications() -> None:
    settings = Settings(_env_file=None)
    assert (settings.http_port, settings.https_port, settings.api_port) == (80, 443, 9000)
    assert settings.proxy_protocol_port == 10001
    assert settings.server_host == "0.0.0.0"
    assert settings.proxy_request_timeout == 120
    assert settings.proxy_connect_timeout == 30
    assert settings.acme_poll_max_attempts == 60
    assert settings.renewal_threshold_days == 30
    assert settings.cert_gen_max_workers == 5
    assert settings.rsa_key_size == 2048
    assert settings.oauth_access_token_lifetime == 1800
    assert settings.oauth_refresh_token_lifetime == 31536000
    assert settings.oauth_mcp_protocol_version == "2025-06-18"
    assert settings.redis_url is None
    assert settings.trusted_proxies == []


def test_connection_limits_have_bounded_defaults() -> None:
    settings = Settings(_env_file=None)
    assert settings.proxy_header_timeout < settings.proxy_idle_timeout
    assert settings.proxy_send_timeout == 60
    assert settings.proxy_max_connections_per_ip == 256
    assert settings.api_on_public_port == "loopback"


def test_environment_overrides_and_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "8080")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    monkeypatch.setenv("API_HOSTNAMES", "localhost,admin.example.com")
    settings = load_settings(_env_file=None)
    assert settings.http_port == 8080
    assert settings.trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]
    assert settings.api_hostnames == ["localhost", "admin.example.com"]


def test_tenant_settings_have_defaults_and_read_comma_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(_env_file=None)
    assert (settings.token_max_proxies, settings.token_max_routes) == (50, 100)
    assert settings.token_max_services == 50
    assert settings.token_max_ports == 20
    assert settings.owner_target_deny_networks == [
        "169.254.0.0/16",
        "fe80::/10",
        "fd00:ec2::254/128",
        "100.100.100.200/32",
    ]
    monkeypatch.setenv("OWNER_TARGET_DENY_NETWORKS", "10.0.0.0/8, 169.254.0.0/16")
    assert load_settings(_env_file=None).owner_target_deny_networks == [
        "10.0.0.0/8",
        "169.254.0.0/16",
    ]
    monkeypatch.setenv("OWNER_TARGET_DENY_NETWORKS", "")
    assert load_settings(_env_file=None).owner_target_deny_networks == []


def test_settings_are_frozen() -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(ValueError, match="frozen"):
        settings.http_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("HTTP_PORT", "eighty", "valid integer"),
        ("API_PORT", "70000", "less than or equal to 65535"),
        ("LOG_LEVEL", "LOUD", "'DEBUG'"),
        ("RSA_KEY_SIZE", "1024", "greater than or equal to 2048"),
        ("CERTIFICATE_KEY_TYPE", "dsa", "'rsa' or 'ecdsa-p256'"),
        ("OAUTH_JWT_ALGORITHM", "HS256", "expected RS256"),
        ("PROXY_REQUEST_TIMEOUT", "0", "greater than 0"),
        ("PROXY_HEADER_TIMEOUT", "0", "greater than 0"),
        ("PROXY_MAX_CONNECTIONS_PER_IP", "-1", "greater than or equal to 0"),
        ("API_ON_PUBLIC_PORT", "anyone", "'loopback' or 'off'"),
        ("TOKEN_MAX_ROUTES", "-1", "greater than or equal to 0"),
        ("OWNER_TARGET_DENY_NETWORKS", "10.0.0.0/8,intranet", "'intranet' is not an IP"),
    ],
)
def test_invalid_value_names_variable_value_and_expectation(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert message.count("\n") == 0
    assert message.startswith(f"invalid setting {variable}={value!r}: ")
    assert expected in message


def test_start_up_stops_with_one_line_on_a_bad_value(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _setting_names()}
    env["HTTP_PORT"] = "eighty"
    result = subprocess.run(
        [venv_bin("oauthproxy"), "run"],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "invalid setting HTTP_PORT='eighty': Input should be a valid integer, "
        "unable to parse string as an integer"
    ]
    assert "Traceback" not in result.stderr


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("HTTPS_PORT=8443\nADMIN_EMAIL=ops@example.com\n")
    settings = load_settings(_env_file=env_file)
    assert settings.https_port == 8443
    assert settings.admin_email == "ops@example.com"


def _setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}
