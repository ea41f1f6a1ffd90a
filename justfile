# oauthproxy: every command goes through just.
#
#   ./scripts/just RECIPE ...   on a machine with only python3 (installs uv and just into .tools/)
#   just RECIPE ...             when you already have just and uv
#
# Settings come from .env (see .env.example); recipes that run project code first bring .venv in
# line with uv.lock (scripts/sync-env, a no-op when nothing changed).

set dotenv-load
set no-exit-message  # a failing recipe's own message is its one error line

export PATH := justfile_directory() + "/.venv/bin:" + justfile_directory() + "/.tools/bin:" + env("PATH")

# `docker compose` after scripts/compose checked for it, .env and REDIS_PASSWORD (one line when not)
compose := quote(justfile_directory() / "scripts" / "compose")

# A recipe's `token` argument reaches proxy-client in its environment (TOKEN), never on its
# command line; it is on just's own while the recipe runs (`ps` shows every user the command lines
# of every process), so on a shared machine set TOKEN instead (README); without one, TOKEN as is.
_token_env := 'TOKEN="${token:-${TOKEN-}}"'

alias help := default

# List the recipes
default:
    @{{ just_executable() }} --justfile {{ quote(justfile()) }} --list --unsorted

# --- gateway -----------------------------------------------------------------------------------

# Start the gateway in the foreground (embedded Redis unless REDIS_URL is set); Ctrl-C stops it
[group('gateway')]
run: _venv
    exec oauthproxy run

# Print the web dashboard's URL (API_URL + /dashboard/); `just dashboard open` opens it in a browser
[group('gateway')]
[positional-arguments]
dashboard action="":
    #!/usr/bin/env sh
    set -eu
    url="${API_URL:-http://localhost:9000}"
    url="${url%/}/dashboard/"
    case "$1" in
        "" | open) ;;
        *) echo "dashboard: unknown action '$1' (use: just dashboard open)" >&2; exit 2 ;;
    esac
    echo "dashboard: $url (sign in with the admin token: ./scripts/just token-admin)"
    if [ "$1" = open ]; then exec python3 -m webbrowser -t "$url" >/dev/null; fi

# Check the running gateway's health (GET /health)
[group('gateway')]
health: _venv
    @proxy-client health

# After Redis lost its data and you restored it (config-load): serve what Redis holds now
[group('gateway')]
redis-accept $token="": _venv
    @{{ _token_env }} proxy-client redis-accept

# Redis CLI on the gateway's Redis (REDIS_URL, or the running embedded one)
[group('gateway')]
[positional-arguments]
redis-cli *args: _venv
    @oauthproxy redis-cli "$@"

# --- tokens ------------------------------------------------------------------------------------

# Print the admin token (ADMIN_TOKEN, or the one generated on the first run)
[group('tokens')]
token-admin: _venv
    @oauthproxy admin-token

# Create a token with a generated secret (and optional certificate email); prints the secret
[group('tokens')]
token-generate name email="" $token="": _venv
    @{{ _token_env }} proxy-client token generate {{ quote(name) }} {{ if email != "" { "--email " + quote(email) } else { "" } }}

# Show a token with its full secret
[group('tokens')]
token-show name $token="": _venv
    @{{ _token_env }} proxy-client token show {{ quote(name) }}

# List tokens (all of them for the admin token)
[group('tokens')]
token-list $token="": _venv
    @{{ _token_env }} proxy-client token list

# Delete a token and everything it owns
[group('tokens')]
token-delete name $token="": _venv
    @{{ _token_env }} proxy-client token delete {{ quote(name) }}

# Set who may sign in to the dashboard with GitHub as a token (comma-separated logins; "" for nobody)
[group('tokens')]
token-github-users name users $token="": _venv
    @{{ _token_env }} proxy-client token github-users {{ quote(name) }} {{ quote(users) }}

# Set a token's certificate email
[group('tokens')]
token-email name email $token="": _venv
    @{{ _token_env }} proxy-client token email {{ quote(name) }} {{ quote(email) }}

# Suspend a token: it answers 401 token_suspended (with the reason) until resumed; never the admin token
[group('tokens')]
token-suspend name reason="" $token="": _venv
    @{{ _token_env }} proxy-client token suspend {{ quote(name) }} {{ if reason != "" { "--reason " + quote(reason) } else { "" } }}

# Resume a suspended token (e.g. one an interrupted config-load left suspended)
[group('tokens')]
token-resume name $token="": _venv
    @{{ _token_env }} proxy-client token resume {{ quote(name) }}

# --- docker compose (compose.yaml: services api and redis) -------------------------------------

# Start all services in the background
[group('docker')]
up:
    @{{ compose }} up -d

# Stop and remove all services (volumes are kept)
[group('docker')]
down:
    @{{ compose }} down

# Restart all services
[group('docker')]
restart:
    @{{ compose }} restart

# Rebuild and recreate one service (api or redis)
[group('docker')]
rebuild service:
    @{{ compose }} up -d --build --force-recreate --no-deps {{ quote(service) }}

# Open a shell in the api container
[group('docker')]
shell:
    @{{ compose }} exec api bash

# Show a service's container logs (all services when none is given)
[group('docker')]
logs-service service="" lines="100":
    @{{ compose }} logs --tail {{ quote(lines) }} {{ if service != "" { quote(service) } else { "" } }}

# --- logs --------------------------------------------------------------------------------------

# Recent requests (hours, event: request|websocket|sse, level: INFO|WARNING|ERROR, hostname, limit)
[group('logs')]
logs hours="1" event="" level="" hostname="" limit="50" $token="": _venv
    @{{ _token_env }} proxy-client log recent --hours {{ quote(hours) }} {{ if event != "" { "--event " + quote(event) } else { "" } }} {{ if level != "" { "--level " + quote(level) } else { "" } }} {{ if hostname != "" { "--hostname " + quote(hostname) } else { "" } }} --limit {{ quote(limit) }}

# Requests from one client IP
[group('logs')]
logs-ip ip hours="24" event="" level="" limit="100" $token="": _venv
    @{{ _token_env }} proxy-client log ip {{ quote(ip) }} --hours {{ quote(hours) }} {{ if event != "" { "--event " + quote(event) } else { "" } }} {{ if level != "" { "--level " + quote(level) } else { "" } }} --limit {{ quote(limit) }}

# Requests to one hostname
[group('logs')]
logs-host hostname hours="24" limit="100" $token="": _venv
    @{{ _token_env }} proxy-client log host {{ quote(hostname) }} --hours {{ quote(hours) }} --limit {{ quote(limit) }}

# Requests made with one OAuth client's tokens
[group('logs')]
logs-client client-id hours="24" event="" level="" limit="100" $token="": _venv
    @{{ _token_env }} proxy-client log client {{ quote(client-id) }} --hours {{ quote(hours) }} {{ if event != "" { "--event " + quote(event) } else { "" } }} {{ if level != "" { "--level " + quote(level) } else { "" } }} --limit {{ quote(limit) }}

# Search the request log (query: status:500 host:H ip:IP user:U client:C path:/p errors slow, words)
[group('logs')]
logs-search query="" hours="24" event="" level="" hostname="" limit="100" $token="": _venv
    @{{ _token_env }} proxy-client log search {{ if query != "" { "--query " + quote(query) } else { "" } }} --hours {{ quote(hours) }} {{ if event != "" { "--event " + quote(event) } else { "" } }} {{ if level != "" { "--level " + quote(level) } else { "" } }} {{ if hostname != "" { "--hostname " + quote(hostname) } else { "" } }} --limit {{ quote(limit) }}

# Requests answered 4xx or 5xx
[group('logs')]
logs-errors hours="1" limit="50" $token="": _venv
    @{{ _token_env }} proxy-client log errors --hours {{ quote(hours) }} --limit {{ quote(limit) }}

# Failed requests with every field (include-warnings=true: 4xx too, not only 5xx)
[group('logs')]
logs-errors-debug hours="1" include-warnings="false" limit="50" $token="": _venv
    @{{ _token_env }} proxy-client log errors-debug --hours {{ quote(hours) }} {{ if include-warnings =~ '^(?i:true|yes|1)$' { "--include-warnings" } else { "" } }} --limit {{ quote(limit) }}

# Follow the live request stream, or with a name a Docker service's container output (Ctrl-C ends it)
[group('logs')]
logs-follow service="" $token="": _venv
    @{{ _token_env }} proxy-client {{ if service != "" { "service logs " + quote(service) + " --follow" } else { "log follow" } }}

# OAuth activity of one client IP, summarised (endpoint, status, user, client: count)
[group('logs')]
logs-oauth ip hours="24" limit="500" $token="": _venv
    @{{ _token_env }} proxy-client log oauth {{ quote(ip) }} --hours {{ quote(hours) }} --limit {{ quote(limit) }}

# Every OAuth request of one client IP, with every field
[group('logs')]
logs-oauth-debug ip hours="24" limit="100" $token="": _venv
    @{{ _token_env }} proxy-client log oauth-debug {{ quote(ip) }} --hours {{ quote(hours) }} --limit {{ quote(limit) }}

# One OAuth client's or user's flow, step by step, oldest first
[group('logs')]
logs-oauth-flow client-id="" username="" hours="1" $token="": _venv
    @{{ _token_env }} proxy-client log oauth-flow {{ if client-id != "" { "--client-id " + quote(client-id) } else { "" } }} {{ if username != "" { "--username " + quote(username) } else { "" } }} --hours {{ quote(hours) }}

# Requests and errors per hour, unique visitors and latency percentiles per host, dropped entries
[group('logs')]
logs-stats hours="24" $token="": _venv
    @{{ _token_env }} proxy-client log stats --hours {{ quote(hours) }}

# Send a test request through the gateway and show its log entry arriving
[group('logs')]
logs-test $token="": _venv
    @{{ _token_env }} proxy-client log test

# The request log of the last hours, then the last lines of each of your Docker services
[group('logs')]
logs-all lines="100" hours="1" $token="": _venv
    #!/bin/sh
    set -eu
    export {{ _token_env }}
    client="proxy-client"
    $client log recent --hours {{ quote(hours) }} --limit {{ quote(lines) }}
    names=$($client --format json service list | python3 -c 'import json, sys; print(" ".join(s["service_name"] for s in json.load(sys.stdin)))')
    for name in $names; do
        echo "--- Docker service $name"
        $client service logs "$name" {{ quote(lines) }} || true
    done

# Delete every request log entry, index and statistic (admin only)
[group('logs')]
logs-clear $token="": _venv
    @{{ _token_env }} proxy-client log clear

# The logging commands
[group('logs')]
logs-help:
    @just --list --unsorted | grep -E '^\s+logs'

# Prometheus metrics of the running gateway (requests by host and status class, latency, upstream failures, connections, instances, request-log drops)
[group('logs')]
metrics $token="": _venv
    @{{ _token_env }} proxy-client metrics

# --- development -------------------------------------------------------------------------------

# pytest-xdist for the whole suite: its tests mostly wait on sockets and subprocesses, so four
# worker processes keep 2 cores busy; a test file runs whole on one worker, and the files that
# start a dockerd all on one (--dist loadgroup; groups in tests/conftest.py).
parallel := "-n 4 --dist loadgroup"

# Install what the tests need (scripts/test-deps), lint, type-check, then pytest in 4 processes (slow tests excluded); with FILES, only pytest on those files, in one process
[group('development')]
[positional-arguments]
test *files: _venv
    #!/bin/sh
    set -eu
    if [ "$#" -gt 0 ]; then
        echo "pytest $*" >&2
        exec pytest "$@"
    fi
    scripts/test-deps
    {{ just_executable() }} --justfile {{ quote(justfile()) }} lint
    echo 'pytest -m "not slow" {{ parallel }}' >&2
    exec pytest -m "not slow" {{ parallel }}

# Everything: lint, type-check and the whole test suite in 4 processes, slow tests included
[group('development')]
test-all: lint
    scripts/test-deps
    pytest {{ parallel }}

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

# jupyter-book runs in its own uv tool environment, so it is not a project dependency.

# Build the documentation (JupyterBook, docs/) into docs/_build/html
[group('development')]
docs-build:
    uvx --python 3.11 --from 'jupyter-book==1.0.4.post1' jupyter-book build --warningiserror docs
    @echo "open docs/_build/html/index.html"

# Bring .venv in line with uv.lock (a no-op when it already is)
_venv:
    @scripts/sync-env

# --- benchmarks --------------------------------------------------------------------------------

# Benchmark the data plane (direct, gateway, nginx; HTTPS and TLS handshakes; auth; streaming; create→200; 1,000 hosts; proxy-bound beside nginx, haproxy, Caddy; HTTP/2; WORKERS). Options: --quick, --duration S, --connections N, --rounds N, --only-logging, --only-proxy-bound
[group('benchmarks')]
[positional-arguments]
bench *args: _venv
    #!/bin/sh
    set -eu
    if ! scripts/bench-tool bench wrk; then
        echo "bench: wrk is required and could not be installed (install it, e.g. apt-get install wrk)" >&2
        exit 1
    fi
    if ! scripts/bench-tool bench nginx; then
        echo "bench: nginx is not installed and could not be installed: the nginx rows are skipped" >&2
    fi
    # the proxy-bound part's peers and HTTP/2 client: each missing one skips its rows, with a note
    for pair in haproxy:haproxy caddy:caddy h2load:nghttp2-client; do
        if ! scripts/bench-tool bench "${pair%%:*}" "${pair#*:}"; then
            echo "bench: ${pair%%:*} is not installed and could not be installed: its proxy-bound rows are skipped" >&2
        fi
    done
    exec python benchmarks/run.py "$@"

# docs/benchmarks.md's tables and docs/benchmarks.png from a completed run (default benchmarks/results.json)
[group('benchmarks')]
bench-page results="benchmarks/results.json": _venv
    python benchmarks/page.py {{ quote(results) }}

# Instructions per new TLS connection (handshake + GET / + close) under callgrind, load-independent: this checkout's gateway, then each OTHER checkout's (with its .venv), and nginx with --nginx; split by library. Options: --connections N, --rounds N, --clients K
[group('benchmarks')]
[positional-arguments]
bench-instructions *args: _venv
    #!/bin/sh
    set -eu
    for program in valgrind nginx; do
        if ! scripts/bench-tool bench-instructions "$program"; then
            echo "bench-instructions: $program is required (apt-get install $program)" >&2
            exit 1
        fi
    done
    exec python benchmarks/instructions.py "$@"

# Python bytecodes per new TLS connection (handshake + GET / + close), by function and by package (oauthproxy, trio, the standard library): the gateway under an opcode tracer, exact counts. Options: --connections N, --clients K, --top T, --keep-alive or --h2 (per keep-alive HTTP or HTTP/2 request instead), --auth with --keep-alive (auth on, a JWT per request)
[group('benchmarks')]
[positional-arguments]
bench-opcodes *args: _venv
    #!/bin/sh
    set -eu
    if ! scripts/bench-tool bench-opcodes nginx; then
        echo "bench-opcodes: nginx is required (apt-get install nginx)" >&2
        exit 1
    fi
    exec python benchmarks/opcodes.py "$@"

# Replay bench-like request-log batches into a valkey of its own: Redis CPU µs/entry (from /proc), the gateway's encoding CPU, memory per million entries. Options: --batches N, --size N
[group('benchmarks')]
[positional-arguments]
bench-log-replay *args: _venv
    python benchmarks/log_replay.py "$@"

# --- routes ------------------------------------------------------------------------------------

# List all routes in a table, highest priority first
[group('routes')]
route-list $token="": _venv
    @{{ _token_env }} proxy-client route list

# Show a route's details in JSON
[group('routes')]
route-show route-id $token="": _venv
    @{{ _token_env }} proxy-client --format json route show {{ quote(route-id) }}

# Create a global route, admin token only (methods: GET,POST; is-regex: true makes the path a regular expression)
[group('routes')]
route-create path target-type target-value priority="50" methods="" is-regex="false" description="" $token="": (_route-create "global" "" path target-type target-value priority methods is-regex description token)

# Delete a route
[group('routes')]
route-delete route-id $token="": _venv
    @{{ _token_env }} proxy-client route delete {{ quote(route-id) }}

# Create a route that applies to every proxy (admin token only)
[group('routes')]
route-create-global path target-type target-value priority="50" methods="" is-regex="false" description="" $token="": (_route-create "global" "" path target-type target-value priority methods is-regex description token)

# Create a route that applies only to the given proxies (comma-separated hostnames the token owns)
[group('routes')]
route-create-proxy path target-type target-value proxies priority="50" methods="" is-regex="false" description="" $token="": (_route-create "proxy" proxies path target-type target-value priority methods is-regex description token)

# List the routes of one scope: all, global or proxy
[group('routes')]
route-list-by-scope scope="all" $token="": _venv
    @{{ _token_env }} proxy-client route list-by-scope {{ quote(scope) }}

_route-create scope proxies path target-type target-value priority methods is-regex description $token: _venv
    @{{ _token_env }} proxy-client route create {{ quote(path) }} {{ quote(target-type) }} {{ quote(target-value) }} --scope {{ scope }} {{ if proxies != "" { "--proxies " + quote(proxies) } else { "" } }} {{ if priority != "" { "--priority " + quote(priority) } else { "" } }} {{ if methods != "" { "--methods " + quote(methods) } else { "" } }} {{ if is-regex =~ '^(?i:true|yes|1)$' { "--regex" } else { "" } }} {{ if description != "" { "--description " + quote(description) } else { "" } }}

# --- proxies -----------------------------------------------------------------------------------

# Create a proxy and say what happened to its HTTPS (booleans: true/false; staging and email are for its certificate; wait=true: until that certificate is issued or fails)
[group('proxies')]
proxy-create hostname target-url staging="false" preserve-host="true" enable-http="true" enable-https="true" email="" $token="" wait="false": _venv
    @{{ _token_env }} proxy-client proxy create {{ quote(hostname) }} {{ quote(target-url) }} --staging={{ quote(staging) }} --preserve-host={{ quote(preserve-host) }} --http={{ quote(enable-http) }} --https={{ quote(enable-https) }} {{ if email != "" { "--email " + quote(email) } else { "" } }} {{ if wait =~ '^(?i:true|yes|1)$' { "--wait" } else { "" } }}

# Delete a proxy (delete-cert=true: its certificate too, if yours; force=true: no error if missing)
[group('proxies')]
proxy-delete hostname delete-cert="false" force="false" $token="": _venv
    @{{ _token_env }} proxy-client proxy delete {{ quote(hostname) }} --delete-cert={{ quote(delete-cert) }} --force={{ quote(force) }}

# List all proxies
[group('proxies')]
proxy-list $token="": _venv
    @{{ _token_env }} proxy-client proxy list

# Show a proxy's key settings (all=true: every one)
[group('proxies')]
proxy-show hostname $token="" all="false": _venv
    @{{ _token_env }} proxy-client proxy show {{ quote(hostname) }} {{ if all =~ '^(?i:true|yes|1)$' { "--all" } else { "" } }}

# Turn auth on (mode: forward, redirect or passthrough; scopes and audiences comma-separated)
[group('proxies')]
proxy-auth-enable hostname auth-proxy="" mode="" allowed-scopes="" allowed-audiences="" $token="": _venv
    @{{ _token_env }} proxy-client proxy auth enable {{ quote(hostname) }} {{ if auth-proxy != "" { "--auth-proxy " + quote(auth-proxy) } else { "" } }} {{ if mode != "" { "--mode " + quote(mode) } else { "" } }} {{ if allowed-scopes != "" { "--scopes " + quote(allowed-scopes) } else { "" } }} {{ if allowed-audiences != "" { "--audiences " + quote(allowed-audiences) } else { "" } }}

# Turn auth off and reset every auth setting
[group('proxies')]
proxy-auth-disable hostname $token="": _venv
    @{{ _token_env }} proxy-client proxy auth disable {{ quote(hostname) }}

# Set who may pass, comma-separated ("*": every GitHub user; "": the global default / none)
[group('proxies')]
proxy-auth-config hostname users="" emails="" groups="" allowed-scopes="" allowed-audiences="" $token="": _venv
    @{{ _token_env }} proxy-client proxy auth config {{ quote(hostname) }} --users {{ quote(users) }} --emails {{ quote(emails) }} --groups {{ quote(groups) }} --scopes {{ quote(allowed-scopes) }} --audiences {{ quote(allowed-audiences) }}

# Show a proxy's auth settings
[group('proxies')]
proxy-auth-show hostname $token="": _venv
    @{{ _token_env }} proxy-client proxy auth show {{ quote(hostname) }}

# Set protected resource metadata (RFC 9728); "" keeps a value's default, JSON for server-info/custom-metadata
[group('proxies')]
proxy-resource-set hostname endpoint="" scopes="" stateful="false" override-backend="false" bearer-methods="" doc-suffix="" server-info="" custom-metadata="" hacker-one-research="" $token="": _venv
    @{{ _token_env }} proxy-client proxy resource set {{ quote(hostname) }} --stateful={{ quote(stateful) }} --override-backend={{ quote(override-backend) }} {{ if endpoint != "" { "--endpoint " + quote(endpoint) } else { "" } }} {{ if scopes != "" { "--scopes " + quote(scopes) } else { "" } }} {{ if bearer-methods != "" { "--bearer-methods " + quote(bearer-methods) } else { "" } }} {{ if doc-suffix != "" { "--doc-suffix " + quote(doc-suffix) } else { "" } }} {{ if server-info != "" { "--server-info " + quote(server-info) } else { "" } }} {{ if custom-metadata != "" { "--custom-metadata " + quote(custom-metadata) } else { "" } }} {{ if hacker-one-research != "" { "--hacker-one-research " + quote(hacker-one-research) } else { "" } }}

# Remove a proxy's protected resource metadata
[group('proxies')]
proxy-resource-clear hostname $token="": _venv
    @{{ _token_env }} proxy-client proxy resource clear {{ quote(hostname) }}

# Show a proxy's protected resource metadata
[group('proxies')]
proxy-resource-show hostname $token="": _venv
    @{{ _token_env }} proxy-client proxy resource show {{ quote(hostname) }}

# List the proxies that serve protected resource metadata
[group('proxies')]
proxy-resource-list $token="": _venv
    @{{ _token_env }} proxy-client proxy resource list

# --- services ----------------------------------------------------------------------------------

# Register an external service: a name for a URL that routes can target
[group('services')]
service-register name target-url description="" $token="": _venv
    @{{ _token_env }} proxy-client service register {{ quote(name) }} {{ quote(target-url) }} {{ if description != "" { "--description " + quote(description) } else { "" } }}

# List the external services
[group('services')]
service-list-external $token="": _venv
    @{{ _token_env }} proxy-client service list-external

# Show an external service
[group('services')]
service-show-external name $token="": _venv
    @{{ _token_env }} proxy-client service show-external {{ quote(name) }}

# Point an external service at a new URL
[group('services')]
service-update-external name target-url description="" $token="": _venv
    @{{ _token_env }} proxy-client service update-external {{ quote(name) }} {{ quote(target-url) }} {{ if description != "" { "--description " + quote(description) } else { "" } }}

# Delete an external service
[group('services')]
service-unregister name $token="": _venv
    @{{ _token_env }} proxy-client service unregister {{ quote(name) }}

# Register the gateway's OAuth authorization server (its issuer URL) as the external service `oauth`
[group('services')]
service-register-oauth $token="": _venv
    @{{ _token_env }} proxy-client service register-oauth

# Remove what an older or crashed gateway left behind (admin; dry-run=true only lists it)
[group('services')]
service-cleanup-orphaned $token="" dry-run="false": _venv
    @{{ _token_env }} proxy-client service cleanup-orphaned {{ if dry-run =~ '^(?i:true|yes|1|dry-run)$' { "--dry-run" } else { "" } }}

# List every service: internal, external and Docker (type: docker, external or internal)
[group('services')]
service-list-all type="" $token="": _venv
    @{{ _token_env }} proxy-client service list-all {{ if type != "" { "--type " + quote(type) } else { "" } }}

# --- Docker services and ports (docs/services.md) -------------------------------------------

# Create and start a Docker service from an image or a Dockerfile (auto-proxy: also {name}.BASE_DOMAIN)
[group('services')]
service-create name image="" dockerfile="" port="" memory="512m" cpu="1.0" auto-proxy="false" $token="": _venv
    @{{ _token_env }} proxy-client service create {{ quote(name) }} {{ if image != "" { quote(image) } else { "" } }} {{ if dockerfile != "" { "--dockerfile " + quote(dockerfile) } else { "" } }} {{ if port != "" { "--port " + quote(port) } else { "" } }} --memory {{ quote(memory) }} --cpu {{ quote(cpu) }} {{ if auto-proxy =~ '^(?i:true|yes|1)$' { "--auto-proxy" } else { "" } }}

# Create a Docker service with its port exposed on the host (bind-address: 127.0.0.1 or 0.0.0.0)
[group('services')]
service-create-exposed name image port bind-address="127.0.0.1" memory="512m" cpu="1.0" $token="": _venv
    @{{ _token_env }} proxy-client service create {{ quote(name) }} {{ quote(image) }} --port {{ quote(port) }} --expose --bind {{ quote(bind-address) }} --memory {{ quote(memory) }} --cpu {{ quote(cpu) }}

# List the Docker services (owned-only: only this token's)
[group('services')]
service-list owned-only="false" $token="": _venv
    @{{ _token_env }} proxy-client service list {{ if owned-only =~ '^(?i:true|yes|1)$' { "--owned-only" } else { "" } }}

# Show a Docker service and its container's status (all=true: every field)
[group('services')]
service-show name $token="" all="false": _venv
    @{{ _token_env }} proxy-client service show {{ quote(name) }} {{ if all =~ '^(?i:true|yes|1)$' { "--all" } else { "" } }}

# Delete a Docker service: container, record, ports (force: even running; delete-proxy: its proxies too)
[group('services')]
service-delete name force="true" delete-proxy="false" $token="": _venv
    @{{ _token_env }} proxy-client service delete {{ quote(name) }} {{ if force =~ '^(?i:false|no|0)$' { "--no-force" } else { "" } }} {{ if delete-proxy =~ '^(?i:true|yes|1)$' { "--delete-proxy" } else { "" } }}

# Start a Docker service's container
[group('services')]
service-start name $token="": _venv
    @{{ _token_env }} proxy-client service start {{ quote(name) }}

# Stop a Docker service's container
[group('services')]
service-stop name $token="": _venv
    @{{ _token_env }} proxy-client service stop {{ quote(name) }}

# Restart a Docker service's container
[group('services')]
service-restart name $token="": _venv
    @{{ _token_env }} proxy-client service restart {{ quote(name) }}

# A Docker service's container output (the last `lines` lines; follow=true keeps printing new ones)
[group('services')]
service-logs name lines="100" timestamps="false" $token="" follow="false": _venv
    @{{ _token_env }} proxy-client service logs {{ quote(name) }} {{ quote(lines) }} {{ if timestamps =~ '^(?i:true|yes|1)$' { "--timestamps" } else { "" } }} {{ if follow =~ '^(?i:true|yes|1)$' { "--follow" } else { "" } }}

# CPU, memory, network and block I/O of a Docker service's container
[group('services')]
service-stats name $token="": _venv
    @{{ _token_env }} proxy-client service stats {{ quote(name) }}

# Create a proxy to a Docker service (hostname: default {name}.BASE_DOMAIN)
[group('services')]
service-proxy-create name hostname="" enable-https="false" $token="": _venv
    @{{ _token_env }} proxy-client service proxy-create {{ quote(name) }} {{ if hostname != "" { quote(hostname) } else { "" } }} {{ if enable-https =~ '^(?i:true|yes|1)$' { "--https" } else { "" } }}

# Remove our containers without a service record, and records without a container (admin)
[group('services')]
service-cleanup $token="": _venv
    @{{ _token_env }} proxy-client service cleanup

# Allocate a host port for a service (11000-65535; restricted ports refused)
[group('services')]
service-port-add name port bind-address="127.0.0.1" source-token="" $token="": _venv
    @{{ _token_env }} proxy-client service port-add {{ quote(name) }} {{ quote(port) }} {{ quote(bind-address) }} {{ if source-token != "" { quote(source-token) } else { "" } }}

# Release one of a service's ports
[group('services')]
service-port-remove name port-name $token="": _venv
    @{{ _token_env }} proxy-client service port-remove {{ quote(name) }} {{ quote(port-name) }}

# A service's ports
[group('services')]
service-port-list name $token="": _venv
    @{{ _token_env }} proxy-client service port-list {{ quote(name) }}

# Whether a host port could be allocated now, and if not why
[group('services')]
service-port-check port bind-address="127.0.0.1" $token="": _venv
    @{{ _token_env }} proxy-client service port-check {{ quote(port) }} {{ quote(bind-address) }}

# Every allocated port (available-only: the ranges and the next free port)
[group('services')]
service-ports-global available-only="false" $token="": _venv
    @{{ _token_env }} proxy-client service ports-global {{ if available-only =~ '^(?i:true|yes|1)$' { "--available-only" } else { "" } }}
# --- certificates ------------------------------------------------------------------------------

# Order a certificate for one domain (ACME HTTP-01 in the background; staging: true/false; wait=true: until issued or failed)
[group('certificates')]
cert-create name domain staging="false" email="" $token="" wait="false": _venv
    @{{ _token_env }} proxy-client cert create {{ quote(name) }} {{ quote(domain) }} --staging={{ quote(staging) }} {{ if email != "" { "--email " + quote(email) } else { "" } }} {{ if wait =~ '^(?i:true|yes|1)$' { "--wait" } else { "" } }}

# Delete a certificate; its proxies fall back to HTTP (force=true: no error if missing)
[group('certificates')]
cert-delete name force="false" $token="": _venv
    @{{ _token_env }} proxy-client cert delete {{ quote(name) }} --force={{ quote(force) }}

# List certificates: status, expiry, last error
[group('certificates')]
cert-list $token="": _venv
    @{{ _token_env }} proxy-client cert list

# Show a certificate's key fields (pem=true: print only its PEM chain; all=true: every field; never the private key)
[group('certificates')]
cert-show name pem="false" $token="" all="false": _venv
    @{{ _token_env }} proxy-client cert show {{ quote(name) }} --pem={{ quote(pem) }} {{ if all =~ '^(?i:true|yes|1)$' { "--all" } else { "" } }}

# Show a certificate's generation status: stage, last error, next retry
[group('certificates')]
cert-status name $token="": _venv
    @{{ _token_env }} proxy-client cert status {{ quote(name) }}

# Issue a certificate again now (it keeps serving until the new one is ready; wait=true: until it is)
[group('certificates')]
cert-renew name $token="" wait="false": _venv
    @{{ _token_env }} proxy-client cert renew {{ quote(name) }} {{ if wait =~ '^(?i:true|yes|1)$' { "--wait" } else { "" } }}

# --- oauth -------------------------------------------------------------------------------------

# Generate an RS256 signing key locally; prints OAUTH_JWT_PRIVATE_KEY_B64=… for .env
[group('oauth')]
oauth-key-generate $token="": _venv
    @{{ _token_env }} proxy-client oauth key-generate

# Create the OAuth routes (priority 95, every proxy → the gateway's API); keeps existing ones
[group('oauth')]
oauth-routes-setup domain $token="": _venv
    @{{ _token_env }} proxy-client oauth routes-setup {{ quote(domain) }}

# Register a trusted OAuth client (no consent page; redirect default http://127.0.0.1/callback)
[group('oauth')]
oauth-client-register name redirect-uri="" scope="" $token="": _venv
    @{{ _token_env }} proxy-client oauth register {{ quote(name) }} {{ if redirect-uri != "" { "--redirect-uri " + quote(redirect-uri) } else { "" } }} {{ if scope != "" { "--scope " + quote(scope) } else { "" } }}

# List OAuth clients (active-only: true for those with an active session)
[group('oauth')]
oauth-clients-list active-only="false" $token="": _venv
    @{{ _token_env }} proxy-client oauth clients {{ if active-only =~ '^(?i:true|yes|1|active-only)$' { "--active-only" } else { "" } }}

# List the active OAuth sessions (one per login)
[group('oauth')]
oauth-sessions-list $token="": _venv
    @{{ _token_env }} proxy-client oauth sessions

# Revoke an OAuth session: its refresh and access tokens stop working everywhere
[group('oauth')]
oauth-session-revoke session-id $token="": _venv
    @{{ _token_env }} proxy-client oauth revoke-session {{ quote(session-id) }}

# FOR TESTING: mint an access token for an MCP server URL (a revocable session)
[group('oauth')]
oauth-test-tokens server-url $token="": _venv
    @{{ _token_env }} proxy-client oauth test-tokens {{ quote(server-url) }}

# The authorization server at a glance: health, clients, sessions, tokens
[group('oauth')]
oauth-status $token="": _venv
    @{{ _token_env }} proxy-client oauth status

# --- configuration backup ----------------------------------------------------------------------

# Save the full configuration to a YAML backup (admin; default oauthproxy-config-<timestamp>.yaml; holds token secrets, mode 0600)
[group('config')]
config-save filename="": _venv
    @cd {{ quote(invocation_directory()) }} && proxy-client config save {{ if filename != "" { quote(filename) } else { "" } }}

# Load a configuration YAML backup (admin); existing items are skipped unless force=true; wait=true: then wait until the certificates it ordered are issued
[group('config')]
config-load filename force="false" wait="false": _venv
    @cd {{ quote(invocation_directory()) }} && proxy-client config load {{ quote(filename) }} {{ if force =~ '^(?i:true|yes|1|force)$' { "--force" } else { "" } }} {{ if wait =~ '^(?i:true|yes|1)$' { "--wait" } else { "" } }}
