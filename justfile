# oauthproxy: every command goes through just.
#
#   ./scripts/just RECIPE ...   on a machine with only python3 (installs uv and just into .tools/)
#   just RECIPE ...             when you already have just and uv
#
# Settings come from .env (see .env.example); recipes that run project code first bring .venv in
# line with uv.lock (scripts/sync-env, a no-op when nothing changed).

set dotenv-load
set positional-arguments

export PATH := justfile_directory() + "/.venv/bin:" + justfile_directory() + "/.tools/bin:" + env("PATH")

compose := "docker compose"

alias help := default

# List the recipes
default:
    @{{ just_executable() }} --justfile {{ quote(justfile()) }} --list --unsorted

# --- gateway -----------------------------------------------------------------------------------

# Start the gateway in the foreground (embedded Redis unless REDIS_URL is set); Ctrl-C stops it
[group('gateway')]
run: _venv
    exec oauthproxy run

# Check the running gateway's health (GET /health)
[group('gateway')]
health: _venv
    @proxy-client health

# Redis CLI on the gateway's Redis (REDIS_URL, or the running embedded one)
[group('gateway')]
redis-cli *args: _venv
    @oauthproxy redis-cli "$@"

# --- tokens ------------------------------------------------------------------------------------

# Print the admin token (ADMIN_TOKEN, or the one generated on the first run)
[group('tokens')]
token-admin: _venv
    @oauthproxy admin-token

# Create a token with a generated secret (and optional certificate email); prints the secret
[group('tokens')]
token-generate name email="" token="": _venv
    @proxy-client {{ if token != "" { "--token " + quote(token) } else { "" } }} token generate {{ quote(name) }} {{ if email != "" { "--email " + quote(email) } else { "" } }}

# Show a token with its full secret
[group('tokens')]
token-show name token="": _venv
    @proxy-client {{ if token != "" { "--token " + quote(token) } else { "" } }} token show {{ quote(name) }}

# List tokens (all of them for the admin token)
[group('tokens')]
token-list token="": _venv
    @proxy-client {{ if token != "" { "--token " + quote(token) } else { "" } }} token list

# Delete a token and everything it owns
[group('tokens')]
token-delete name token="": _venv
    @proxy-client {{ if token != "" { "--token " + quote(token) } else { "" } }} token delete {{ quote(name) }}

# Set a token's certificate email
[group('tokens')]
token-email name email token="": _venv
    @proxy-client {{ if token != "" { "--token " + quote(token) } else { "" } }} token email {{ quote(name) }} {{ quote(email) }}

# --- docker compose (compose.yaml: services api and redis) -------------------------------------

# Start all services in the background
[group('docker')]
up:
    {{ compose }} up -d

# Stop and remove all services (volumes are kept)
[group('docker')]
down:
    {{ compose }} down

# Restart all services
[group('docker')]
restart:
    {{ compose }} restart

# Rebuild and recreate one service (api or redis)
[group('docker')]
rebuild service:
    {{ compose }} up -d --build --force-recreate --no-deps {{ quote(service) }}

# Open a shell in the api container
[group('docker')]
shell:
    {{ compose }} exec api bash

# Show a service's container logs (all services when none is given)
[group('docker')]
logs-service service="" lines="100":
    {{ compose }} logs --tail {{ quote(lines) }} {{ if service != "" { quote(service) } else { "" } }}

# --- development -------------------------------------------------------------------------------

# Lint, type-check, then pytest (slow tests excluded); with FILES, only pytest on those files
[group('development')]
test *files: _venv
    #!/bin/sh
    set -eu
    if [ "$#" -gt 0 ]; then
        echo "pytest $*" >&2
        exec pytest "$@"
    fi
    {{ just_executable() }} --justfile {{ quote(justfile()) }} lint
    echo 'pytest -m "not slow"' >&2
    exec pytest -m "not slow"

# Everything: lint, type-check and the whole test suite, slow tests included
[group('development')]
test-all: lint
    pytest

# ruff check, ruff format --check and mypy (strict, configured in pyproject.toml)
[group('development')]
lint: _venv
    ruff check .
    ruff format --check .
    mypy

# Format the code and apply ruff's safe fixes
[group('development')]
fmt: _venv
    ruff check --fix .
    ruff format .

# Bring .venv in line with uv.lock (a no-op when it already is)
_venv:
    @scripts/sync-env
