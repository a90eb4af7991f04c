"""Time from opening the Anime page to its first personal list, on a fresh cache, in headless Chromium.

``python benchmarks/anime_first_visit.py [--root CHECKOUT ...] [--repeats N]`` starts ``streamlit run app.py``
of each checkout on an empty ``RECSYS_CACHE_DIR`` (data from ``$RECSYS_DATA_DIR`` or the usual places),
waits for the server's health endpoint (server start is not counted), opens ``/anime`` and reports the
seconds until the page's title and until the first recommendation table (``stTable``). Several roots run
alternately (e.g. an exported older commit and this checkout), so a shared machine's load hits both alike;
the load average is printed with each number. A measurement tool, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(root: Path, port: int) -> tuple[float, float]:
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT))
    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

    cache = Path(tempfile.mkdtemp(prefix="anime-first-visit-"))
    env = {**os.environ, "RECSYS_CACHE_DIR": str(cache / "cache"), "RECSYS_RUNS_DIR": str(cache / "runs"),
           "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                               "--server.headless", "true", "--browser.gatherUsageStats", "false"], env=env,
                              cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page()
            started = time.time()
            page.goto(f"http://127.0.0.1:{port}/anime")
            page.get_by_text("Anime recommender").first.wait_for(timeout=300_000)
            title = time.time() - started
            page.locator('[data-testid="stTable"]').first.wait_for(timeout=300_000)
            first = time.time() - started
            browser.close()
        return title, first
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()
        shutil.rmtree(cache, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, nargs="+", default=[ROOT], help="checkouts to compare (alternately)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--port", type=int, default=8790)
    args = parser.parse_args(argv)
    for repeat in range(args.repeats):
        for i, root in enumerate(args.root):
            title, first = measure(root, args.port + i)
            print(f"{root}: title after {title:.1f} s, first personal list after {first:.1f} s "
                  f"(fresh cache, load average {os.getloadavg()[0]:.1f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
