"""docs/benchmarks.md from a `just bench` run: its tables and its plot, docs/benchmarks.png.

    python benchmarks/page.py [benchmarks/results.json]      # or: just bench-page

The page's prose is written by hand; what lies between the `<!-- bench:NAME -->` and
`<!-- bench:end -->` markers is generated here from the JSON, so the numbers on the page are the
run's (tests/test_benchmark_page.py checks that they still are).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run by path (runpy, another directory): proxy_rows is beside it
    sys.path.insert(0, str(HERE))

from proxy_rows import from_json, markdown  # noqa: E402

ROOT = HERE.parent
RESULTS = ROOT / "benchmarks" / "results.json"
PAGE = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmarks.png"
SECTION = re.compile(r"(<!-- bench:(?P<name>[a-z]+) -->\n)(.*?)(<!-- bench:end -->)", re.S)

Results = dict[str, Any]


def _number(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def throughput_table(results: Results) -> str:
    rows = [
        "| path | req/s | p50 ms | p99 ms | vs direct | CPU µs/req | CPU of | errors |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in results["throughput"]:
        wrk = row["wrk"]
        errors = wrk["non_2xx"] + sum(wrk["socket_errors"].values())
        rows.append(
            f"| {row['name']} | {_number(wrk['rps'])} | {wrk['p50_ms']:.2f} | {wrk['p99_ms']:.2f} "
            f"| {_number(row['ratio'], 2)} | {_number(row['cpu_us_per_request'])} "
            f"| {row['measured']} | {errors} |"
        )
    return "\n".join(rows) + "\n"


def other_table(results: Results) -> str:
    """Handshakes, streaming, create → 200, 1,000 hostnames, the request log's cost."""
    lines = ["| measure | result |", "|---|---|"]
    for shake in results["handshakes"]:
        lines.append(
            f"| new TLS handshakes/s, {shake['name']} | {_number(shake['per_second'])}/s "
            f"({_number(shake['cpu_us_per_handshake'])} µs CPU per handshake) |"
        )
    for transfer in results["transfers"]:
        growth = transfer["rss_growth_mib"]
        rss = "" if growth is None else f", RSS growth {growth:.1f} MiB"
        lines.append(
            f"| {transfer['direction']} {transfer['bytes'] // 2**20} MiB "
            f"| {_number(transfer['mib_per_s'])} MiB/s{rss} |"
        )
    created = results["create_to_200"]
    lines.append(
        f"| create → first 200 ({created['hostnames']} hostnames) | median "
        f"{created['median_ms']:.1f} ms, p95 {created['p95_ms']:.1f} ms |"
    )
    many = results["many_hosts"]
    lines.append(
        f"| {many['hostnames']:,} hostnames | RSS {many['rss_live_mib']:.0f} MiB (empty "
        f"{many['rss_empty_mib']:.0f} MiB); restart: ready in {many['startup_seconds']:.2f} s, "
        f"all sampled serving after {many['all_serving_seconds']:.2f} s |"
    )
    log = results["request_log"]
    if log:
        lines.append(
            f"| request log during the gateway row | {log['written']:,} entries written, "
            f"{log['dropped']:,} dropped |"
        )
    return "\n".join(lines) + "\n"


def run_table(results: Results) -> str:
    machine = results["machine"]
    options = ", ".join(f"{name} {value}" for name, value in results["options"].items())
    return (
        f"Run of {results['started']} (commit {machine.get('commit', '?')}), {options}; "
        f"{machine['cpus']} CPUs, load average at start "
        f"{', '.join(f'{load:.2f}' for load in machine['load_average_at_start'])}; "
        f"{machine.get('nginx') or 'no nginx'}; {machine['wrk']}.\n"
    )


def proxy_bound_tables(results: Results) -> str:
    """The proxy-bound tables: the gateway, nginx, haproxy and Caddy, one core each; HTTP/2;
    new TLS handshakes; WORKERS."""
    if not results.get("proxy_bound"):
        return "Not measured in this run.\n"
    return markdown(from_json(results["proxy_bound"]), results["options"]["rounds"])


SECTIONS: dict[str, Callable[[Results], str]] = {
    "run": run_table,
    "throughput": throughput_table,
    "other": other_table,
    "proxybound": proxy_bound_tables,
}


def render_page(page: str, results: Results) -> str:
    """The page with each marked section regenerated from `results`."""

    def regenerate(match: re.Match[str]) -> str:
        return match[1] + SECTIONS[match["name"]](results) + match[4]

    return SECTION.sub(regenerate, page)


def draw(results: Results, path: Path) -> None:
    import matplotlib  # a dev dependency: only this script draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["throughput"]
    bound = (results.get("proxy_bound") or {}).get("table") or []
    figure, axes = plt.subplots(
        2 if bound else 1,
        2,
        figsize=(12, 8 if bound else 4.5),
        constrained_layout=True,
        squeeze=False,
    )
    names = [row["name"] for row in rows]
    colours = [
        "#888888" if name == "direct" else "#2a6f97" if "gateway" in name else "#c06c2b"
        for name in names
    ]
    _bars(
        axes[0],
        names,
        colours,
        [row["wrk"]["rps"] for row in rows],
        [row["cpu_us_per_request"] for row in rows],
        "wrk, 50 connections; backend: benchmarks/backend.py",
    )
    if bound:
        names = [row["name"] for row in bound]
        colours = ["#2a6f97" if name == "gateway" else "#c06c2b" for name in names]
        _bars(
            axes[1],
            names,
            colours,
            [row["rate"] for row in bound],
            [row["cpu_us"] for row in bound],
            "proxy-bound: one core each, backend nginx return 200",
        )
    figure.suptitle(
        f"oauthproxy beside {'nginx, haproxy and Caddy' if bound else 'nginx'}, "
        f"{results['started'][:10]}, "
        f"{results['machine']['cpus']} CPUs (shared machine)"
    )
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)


def _bars(
    axes: Any,
    names: list[str],
    colours: list[str],
    rates: list[float],
    cpus: list[float],
    what: str,
) -> None:
    rate, cost = axes
    rate.barh(names, rates, color=colours)
    rate.set_xlabel(f"requests per second ({what})")
    rate.invert_yaxis()
    cost.barh(names, [math.nan if value is None else value for value in cpus], color=colours)
    cost.set_xlabel("CPU µs per request (of the proxy, or of the backend for 'direct')")
    cost.invert_yaxis()
    cost.set_yticklabels([])


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    results = json.loads(source.read_text())
    if results.get("error"):
        raise SystemExit(f"{source} is from a run that failed: {results['error']}")
    PAGE.write_text(render_page(PAGE.read_text(), results))
    draw(results, PLOT)
    print(f"written: {PAGE.relative_to(ROOT)}, {PLOT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
