"""Browser-test fixtures: one Streamlit server and one headless Chromium for the session.

The server runs ``streamlit run app.py`` on a free port with ``RECSYS_RUNS_DIR`` and
``RECSYS_CACHE_DIR`` in a temporary folder (the costly run-independent cache folders are
linked to the project's cache; ``RECSYS_E2E_KEEP_CACHE=1`` uses the project's cache as is), and the test-only ``toy-linear``
recipe registered (``RECSYS_EXTRA_RECIPES=tests.toy_recipe``) so training tests are fast.
Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright (never ``playwright install``).
Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from recsys.paths import PROJECT_ROOT

CHROMIUM = os.environ.get("RECSYS_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
STARTUP_TIMEOUT = 120
SHARED_CACHE = ("anime", "embeddings", "videos", "encoders")


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: browser test against a real Streamlit server (headless Chromium)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds; still runs in CI")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.slow)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def e2e_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    dirs = {"runs": root / "runs", "cache": root / "cache", "log": root / "streamlit.log"}
    dirs["runs"].mkdir()
    dirs["cache"].mkdir()
    return dirs


@pytest.fixture(scope="session")
def server(e2e_dirs) -> str:
    """Base URL of a Streamlit server running app.py; killed (with its process group) at the end."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    port = _free_port()
    env = {
        **os.environ,
        "RECSYS_RUNS_DIR": str(e2e_dirs["runs"]),
        "RECSYS_EXTRA_RECIPES": "tests.toy_recipe",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    }
    if os.environ.get("RECSYS_E2E_KEEP_CACHE") != "1":
        env["RECSYS_CACHE_DIR"] = str(e2e_dirs["cache"])
        # Share the expensive, run-independent artefacts (parsed anime data and the trained
        # anime bundle, text embeddings, video checkpoints and serving packs, the ONNX encoders)
        # with the project's cache, so a test session builds each at most once; everything else
        # (projections...) stays private.
        project_cache = Path(os.environ.get("RECSYS_CACHE_DIR", PROJECT_ROOT / ".cache" / "recsys"))
        for name in SHARED_CACHE:
            (project_cache / name).mkdir(parents=True, exist_ok=True)
            (e2e_dirs["cache"] / name).symlink_to(project_cache / name, target_is_directory=True)
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
        "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ]
    log = open(e2e_dirs["log"], "wb")
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + STARTUP_TIMEOUT
        while not _healthy(url):
            if process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {process.returncode}:\n{e2e_dirs['log'].read_text()}")
            if time.time() > deadline:
                raise RuntimeError(f"streamlit not healthy after {STARTUP_TIMEOUT}s:\n{e2e_dirs['log'].read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        # stop training workers the tests launched (each in its own session), then the server
        for stop_file_dir in e2e_dirs["runs"].glob("*/"):
            (stop_file_dir / "STOP").touch()
        try:
            os.killpg(process.pid, 15)
            process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, 9)
        log.close()


@pytest.fixture(scope="session")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        # A deep link as the very first request of a fresh server must show the app's own
        # navigation (a folder named pages/ would make Streamlit list its files instead, which
        # is why the pages live in app_pages/). This also warms the server for the tests.
        warm = browser.new_page()
        warm.goto(f"{server}/studio")
        warm.wait_for_selector("h1", timeout=180_000)
        nav = warm.locator('[data-testid="stSidebarNav"]').inner_text()
        assert "Training studio" in nav and "Ask (linear algebra)" in nav, nav
        warm.close()
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS

