"""deploy/serve.py on loopback: two Streamlit processes behind nginx. Each browser keeps to one process (an upload,
which must reach the process that holds the session, works through the balancer every time), the production
profile holds (security headers, no metrics, a health check), and the app draws its charts under the CSP."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import sync_playwright

from tests.browser import browser_helpers as bh

pytestmark = pytest.mark.browser
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
CHECKPOINT = bh.ROOT / "pretrained" / "digits-0-9.safetensors"
BROWSERS = 4  # without affinity each upload would reach the wrong process half the time: all pass 1 in 16


@contextlib.contextmanager
def balanced_app(processes: int = 2):
    port, first = bh.free_port(), bh.free_port()
    cmd = [sys.executable, "deploy/serve.py", "--processes", str(processes), "--host", "127.0.0.1", "--port",
           str(port), "--backend-port", str(first)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=bh.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        break
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"deploy/serve.py did not come up: {proc.stdout.read()[-3000:]}")
            time.sleep(0.3)  # polling an HTTP endpoint: there is no event to wait for
        yield url, [first + i for i in range(processes)]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (tests/run.sh installs Debian's)")
def test_two_processes_behind_nginx_keep_each_session_on_its_process():
    with balanced_app() as (url, backends):
        with urllib.request.urlopen(url + "/") as r:
            headers = r.headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
        assert headers["Set-Cookie"].startswith("stlb=")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "/_stcore/metrics")
        assert err.value.code == 404
        for port in backends:  # both processes up
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health") as r:
                assert r.read().decode().strip() == "ok"

        with sync_playwright() as pw:
            for i in range(BROWSERS):  # each a new browser: a new cookie, so a new draw of the process
                with bh.chromium_context(pw, width=1280, height=900) as ctx:
                    page = ctx.new_page()
                    refused: list[str] = []
                    page.on("console", lambda m, out=refused: out.append(m.text))
                    bh.open_app(page, url, "train")
                    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(CHECKPOINT))
                    note = page.locator("[data-testid='stAlertContainer']").filter(has_text="is now in the sidebar")
                    note.wait_for(timeout=30_000)
                    if i == 0:  # the charts draw under the CSP (Vega compiles its expressions)
                        bh.go_to(page, "Overview")
                        page.locator("[data-testid='stVegaLiteChart'] [role='graphics-symbol']").first.wait_for(
                            state="attached", timeout=30_000)
                    blocked = [t for t in refused if "Content Security Policy" in t]
                    assert not blocked, blocked
