"""The report as a reader first sees it: a screenshot of its first screen and its height.

    .venv/bin/python scripts/report_screenshot.py runs/reproduce.html [--out first.png]
        [--full full.png] [--width 1280] [--height 900]

Runs a headless Chromium (Debian's ``chromium``; ``apt-get install -y chromium``) twice:
once for a screenshot of the first screen (``--out``, window ``--width`` x ``--height``),
once to measure the page: a copy of the page with a script that writes
``document.documentElement.scrollHeight`` (after every image has loaded) into the DOM, which
``--dump-dom`` prints. With ``--full`` a third run takes a screenshot of the whole page at
its measured height. Prints ``height: N px (M screens of H px)``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = (
    "<script>addEventListener('load',()=>{const p=document.createElement('pre');"
    "p.id='featavg-height';p.textContent='HEIGHT='+document.documentElement.scrollHeight;"
    "document.body.appendChild(p);});</script>"
)
FLAGS = [
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
TIMEOUT_S = 180


def chromium() -> str:
    """The Chromium binary, or exit with what to install."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("report_screenshot: no chromium on PATH (apt-get install -y chromium)")


def _run(args: list[str]) -> str:
    """Run Chromium with a fresh profile; its stdout."""
    with tempfile.TemporaryDirectory() as profile:
        extra = ["--no-sandbox"] if os.geteuid() == 0 else []  # root: no sandbox possible
        cmd = [chromium(), *FLAGS, *extra, f"--user-data-dir={profile}", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if done.returncode != 0:
        sys.exit(f"report_screenshot: chromium failed ({done.returncode}): {done.stderr[-400:]}")
    return done.stdout


def page_height(page: Path, width: int, height: int) -> int:
    """The rendered page's height in CSS pixels at the given window width."""
    html = page.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "measure.html"
        probe.write_text(html.replace("</body>", MEASURE + "</body>", 1), encoding="utf-8")
        dom = _run(["--dump-dom", f"--window-size={width},{height}", probe.as_uri()])
    match = re.search(r"HEIGHT=(\d+)", dom)
    if match is None:
        sys.exit("report_screenshot: the page did not report its height")
    return int(match[1])


def screenshot(page: Path, png: Path, width: int, height: int) -> None:
    """A screenshot of the page's top ``height`` pixels."""
    _run([f"--screenshot={png.resolve()}", f"--window-size={width},{height}", page.as_uri()])


def main(argv: list[str] | None = None) -> int:
    """Screenshot the first screen, measure the page, print its height."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="the report's HTML file")
    parser.add_argument("--out", type=Path, default=Path("report-first-screen.png"))
    parser.add_argument("--full", type=Path, help="also a screenshot of the whole page")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args(argv)
    page = args.page.resolve()
    if not page.is_file():
        sys.exit(f"report_screenshot: no such file: {args.page}")
    screenshot(page, args.out, args.width, args.height)
    total = page_height(page, args.width, args.height)
    if args.full:
        screenshot(page, args.full, args.width, total)
    print(f"first screen: {args.out}")
    print(f"height: {total} px ({total / args.height:.1f} screens of {args.height} px)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
