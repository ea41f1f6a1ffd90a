"""docs/benchmarks.md shows the numbers of the committed `just bench` run, and its plot exists:
the page's generated sections are what `benchmarks/page.py` makes of benchmarks/results.json."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE = runpy.run_path(str(ROOT / "benchmarks" / "page.py"))


def test_the_page_shows_the_committed_run() -> None:
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    assert results["error"] is None
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    assert PAGE["render_page"](page, results) == page  # else: just bench-page
    gateway = next(row for row in results["throughput"] if row["name"] == "gateway")
    assert f"| gateway | {gateway['wrk']['rps']:,.0f} |" in page


def test_the_plot_is_a_png() -> None:
    assert (ROOT / "docs" / "benchmarks.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def _row(name: str, rates: list[float], cpus: list[float | None]) -> dict[str, Any]:
    """A proxy-bound row as benchmarks/run.py writes it (its NaNs as null)."""
    rounds = [
        {"rate": rate, "p99_ms": 2.5, "cpu_us": cpu, "count": 1000, "errors": 0}
        for rate, cpu in zip(rates, cpus, strict=True)
    ]
    return {
        "name": name,
        "setup": f"{name} setup",
        "measured": name,
        "rounds": rounds,
        "rate": None,
        "p99_ms": None,
        "cpu_us": None,
        "errors": 0,
        "detail": "",
    }


def _results(proxy_bound: dict[str, Any] | None) -> dict[str, Any]:
    return {"options": {"rounds": 3}, "proxy_bound": proxy_bound}


def test_the_proxy_bound_tables_show_the_medians_of_the_rounds_and_the_ratios_to_caddy() -> None:
    bound = {
        "layout": "each proxy on CPU 0",
        "table": [
            _row("gateway", [3000, 5000, 4000], [120, None, 100]),
            _row("caddy", [8000, 6000, 7000], [60, 50, 40]),
        ],
        "http2": [],
        "handshakes": [
            _row("gateway", [400, 400, 400], [1300, 1200, 1400]),
            _row("nginx", [600, 600, 600], [600, 600, 600]),
        ],
        "workers": [],
        "notes": ["gateway: HTTP/2 not negotiated (ALPN selected http/1.1): no HTTP/2 row"],
    }
    section = PAGE["proxy_bound_tables"](_results(bound))
    # gateway: req/s median 4,000, CPU median of the two measured rounds (120 and 100) is 120
    assert "| gateway | 4,000 | 2.50 | 120 | 0.57 | 0.42 | 0 | gateway setup |" in section
    assert "| caddy | 7,000 | 2.50 | 50 | 1.00 | 1.00 | 0 | caddy setup |" in section
    assert "gateway ÷ Caddy = 0.57 in req/s" in section
    assert "not met" in section
    assert "gateway CPU ÷ nginx CPU = 2.17 per handshake" in section
    assert "- gateway: HTTP/2 not negotiated" in section
    assert "WORKERS" not in section.split("- ")[0]  # no WORKERS table without rows


def test_a_run_without_the_proxy_bound_part_says_so() -> None:
    assert PAGE["proxy_bound_tables"](_results(None)) == "Not measured in this run.\n"


H2LOAD_OUTPUT = """\
Application protocol: h2
finished in 10.00s, 46811.00 req/s, 3.21MB/s
requests: 4681 total, 4685 started, 4681 done, 4680 succeeded, 7 failed, 2 errored, 1 timeout
status codes: 4670 2xx, 0 3xx, 0 4xx, 10 5xx
"""


def test_h2load_output_gives_the_rate_the_good_and_bad_requests_and_the_protocol() -> None:
    parse = runpy.run_path(str(ROOT / "benchmarks" / "proxy_bound_tls.py"))["parse_h2load"]
    assert parse(H2LOAD_OUTPUT) == (46811.0, 4680, 7, "h2")
