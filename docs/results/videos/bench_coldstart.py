"""Cold start of the Ask page on a fresh clone, in headless Chromium (issue 11): ``python bench_coldstart.py CLONE``.

Starts ``streamlit run app.py`` in ``CLONE`` (its own empty ``.cache``: delete it first for a cold run),
opens ``/ask``, waits for the question box (and, with ``WAIT_IDLE=1``, for the page's first run to end, as
a user reads before typing), types a question, presses Enter and times until the answer is on the page.
Prints one JSON line: server start to healthy, page open to the box, Enter to answer, what the page itself
says, the top result and the load average. How the committed numbers were made: bench_coldstart.md.
"""
import json, os, re, signal, socket, subprocess, sys, time, urllib.request

clone, question = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "what is an eigenvector, intuitively?"
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "PYTHONPATH": clone, "PYTHONUNBUFFERED": "1"}
t0 = time.time()
proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
                         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"], cwd=clone, env=env,
                        stdout=open(f"{clone}/streamlit.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
url = f"http://127.0.0.1:{port}"
try:
    while True:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except Exception:
            time.sleep(0.2)
    t_healthy = time.time()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                     args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        t_goto = time.time()
        page.goto(f"{url}/ask")
        box = page.get_by_label("Your question")
        box.wait_for(timeout=300_000)
        t_input = time.time()
        if os.environ.get("WAIT_IDLE") == "1":  # let the page's first run finish (a user reads before typing)
            page.wait_for_timeout(500)
            while page.locator('[data-testid="stStatusWidget"]').count():
                page.wait_for_timeout(100)
        t_idle = time.time()
        box.fill(question)
        t_enter = time.time()
        box.press("Enter")
        page.get_by_text(re.compile("query embedded in")).wait_for(timeout=600_000)
        t_answer = time.time()
        waited = page.get_by_text(re.compile(r"ms from pressing Enter")).first.inner_text()
        main = page.locator('[data-testid="stMain"]').inner_text()
        titles = re.findall(r"\n1\. ([^\n]+)", main)[:1]
        browser.close()
    print(json.dumps({"server_start_to_healthy_s": round(t_healthy - t0, 2), "page_open_to_input_s": round(t_input - t_goto, 2), "page_open_to_idle_s": round(t_idle - t_goto, 2),
                      "enter_to_answer_s": round(t_answer - t_enter, 2), "page_says": waited, "top1": titles,
                      "load_average": os.getloadavg()}, ensure_ascii=False))
finally:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=20)
