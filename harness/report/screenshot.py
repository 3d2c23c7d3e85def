"""Screenshot a report in headless Chromium, for the README and for eyeballing a report in CI logs.

    python -m harness.report.screenshot reports/x.html docs/img/report.png [--section scatter] [--width 1400]

Needs Playwright for Python (the ``test`` extra) and a Chromium binary (Debian package ``chromium``);
it never downloads a browser. The page is opened from disk with every non-file request refused, the
same way the real-browser test opens it.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """``$CHROMIUM`` or the first of /usr/bin/chromium, chromium, chromium-browser found on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(report: Path, out: Path, section: str | None = None, width: int = 1400, timeout_s: float = 60) -> Path:
    """Render ``report`` and save a PNG of the whole page, or of one section (its ``name``)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("no Chromium found: install the 'chromium' package or set CHROMIUM=/path/to/chromium")
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": 900}, offline=True)
            context.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
            page = context.new_page()
            page.goto(report.resolve().as_uri())
            page.wait_for_function("window.__reportReady === true", timeout=timeout_s * 1000)
            page.evaluate("window.__drawAllPlots ? window.__drawAllPlots() : null")  # lazy plots too
            page.evaluate("document.querySelector('nav').style.position = 'static'")  # no sticky bar over crops
            if section:
                page.locator(f'section[data-section="{section}"]').screenshot(path=str(out))
            else:
                page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--section", help="only this section, e.g. summary, scatter, samples")
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args(argv)
    print(screenshot(args.report, args.out, args.section, args.width))


if __name__ == "__main__":
    main()
