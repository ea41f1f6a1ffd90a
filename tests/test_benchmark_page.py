"""docs/benchmarks.md shows the numbers of the committed `just bench` run, and its plot exists:
the page's generated sections are what `benchmarks/page.py` makes of benchmarks/results.json."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

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
