#!/usr/bin/env python
"""How big a report is and how long headless Chromium takes to make it interactive.

"Interactive" is the page's own signal: ``window.__reportReady`` becomes true after every plot is drawn
and the sample browser is filled (harness/report/assets.py). Timed from the start of navigation
(``performance.timeOrigin``) to that moment, read inside the page (``performance.now()``), so the Python
and Playwright overhead is not counted; the median of --reps fresh page loads is printed, with the
file size, the CPU model and the load average (a busy machine renders slower).

Reproduce (the main job's report; see docs/reports.md):
    harness run tinystories --models 10m,7m,5m,2.5m --out runs/main
    python benchmarks/report_load.py runs/main/report.html --reps 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_times(report: Path, reps: int, timeout_s: float = 120) -> list[float]:
    from playwright.sync_api import sync_playwright

    from harness.report.screenshot import CHROMIUM_ARGS, chromium_path

    executable = chromium_path()
    if executable is None:
        raise SystemExit("no Chromium found: install the 'chromium' package or set CHROMIUM=/path/to/chromium")
    times = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            for _ in range(reps):
                context = browser.new_context(viewport={"width": 1400, "height": 900}, offline=True)
                context.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
                page = context.new_page()
                page.goto(report.resolve().as_uri())
                page.wait_for_function("window.__reportReady === true", timeout=timeout_s * 1000)
                # the ready moment, stamped by the page itself
                times.append(page.evaluate("window.__reportReadyAt || performance.now()") / 1000)
                context.close()
        finally:
            browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    size = args.report.stat().st_size
    times = load_times(args.report, args.reps)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"report_load: {args.report} · CPU {cpu_model()} × {os.cpu_count()} · load avg {load:.2f}")
    print(f"  size {size:,} bytes ({size / 1e6:.2f} MB; target <= 7 MB)")
    print(
        f"  interactive after {statistics.median(times):.2f} s (median of {len(times)}; "
        f"min {min(times):.2f}, max {max(times):.2f}; target <= 2 s)"
    )


if __name__ == "__main__":
    main()
