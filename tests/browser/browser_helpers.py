"""Helpers for driving the explainer in a real headless Chromium (tests/browser/, benchmarks/app_latency.py).

The app is served by `python -m streamlit run explainer/app.py` from the repo root; the browser is Debian's
`/usr/bin/chromium` driven by Python Playwright (Playwright's own browser download is never used).

Synchronisation is by conditions, never by sleeping: a rerun has finished when Streamlit's app root says
`data-test-script-state="notRunning"`, no element is stale (`data-stale="true"`), and the status widget
(`[data-testid=stStatusWidget]`) is gone; each action also waits for its own visible effect (a new metric,
a changed heatmap, the active navigation link), because right after a key press the app is still idle.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # pragma: no cover - the dev requirements install it; the tests then fail with a message
    PlaywrightTimeout = TimeoutError

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MISSING_CHROMIUM = (
    f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. "
    "Run `bash tests/run.sh` (it installs it), then run the tests again."
)

# Vega-Lite draws every datum as an SVG element with role=graphics-symbol inside a "<mark> mark container"
# group ("rect mark", "bar", "line mark", "point" ...); legend entries live elsewhere and are not counted.
MARKS = "[aria-roledescription$='mark container'] > [role='graphics-symbol']"
RECT_MARKS = "[aria-roledescription='rect mark']"
CHART = "[data-testid='stVegaLiteChart']"
STATUS = "[data-testid='stStatusWidget']"
EXCEPTION = "[data-testid='stException']"

_IDLE_JS = """() => {
    const app = document.querySelector("[data-testid='stApp']");
    return !!app && app.getAttribute("data-test-script-state") === "notRunning"
        && app.getAttribute("data-test-connection-state") === "CONNECTED"
        && !document.querySelector("[data-testid='stStatusWidget']")
        && !document.querySelector("[data-stale='true']");
}"""


# ---------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health(url: str) -> str:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.read().decode().strip()
    except OSError:
        return ""


@contextlib.contextmanager
def running_app(timeout: float = 60.0) -> Iterator[str]:
    """Serve the explainer on a free local port; yield its URL; stop the server (by its pid) on exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()
    cmd = [sys.executable, "-m", "streamlit", "run", "explainer/app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while _health(url) != "ok":
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                out = log.read().decode(errors="replace")[-4000:]
                ended = proc.poll() is not None
                why = f"exited with code {proc.returncode}" if ended else f"was not healthy after {timeout:.0f} s"
                raise RuntimeError(f"the Streamlit server ({' '.join(cmd)}) {why}; its output:\n{out}")
            time.sleep(0.2)  # polling an HTTP endpoint: there is no event to wait for
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and nothing else
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


# ---------------------------------------------------------------- the browser
@contextlib.contextmanager
def chromium_context(playwright, *, width: int = 1400, height: int = 1000):
    """A Chromium context on a fresh user-data dir (deleted on exit); FileNotFoundError if Chromium is missing."""
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(MISSING_CHROMIUM)
    data_dir = tempfile.mkdtemp(prefix="explainer-chromium-")
    try:
        ctx = playwright.chromium.launch_persistent_context(
            data_dir, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": width, "height": height},
        )  # fmt: skip
        ctx.set_default_timeout(30_000)
        try:
            yield ctx
        finally:
            ctx.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until the app is connected, no script runs, nothing is stale and the status widget is gone."""
    page.wait_for_function(_IDLE_JS, timeout=timeout)


def open_app(page, url: str, path: str = "", timeout: float = 60_000) -> None:
    """Load the app (optionally a page: "attention") and wait for its first run to finish."""
    page.goto(f"{url}/{path}")
    page.wait_for_selector("[data-testid='stSidebarUserContent'] input[aria-label='Example']", timeout=timeout)
    page.wait_for_selector(f"[data-testid='stMain'] h1, {EXCEPTION}", timeout=timeout)
    wait_idle(page, timeout)


def example_box(page):
    return page.locator("[data-testid='stSidebar']").get_by_label("Example", exact=True)


def type_example(page, text: str) -> float:
    """Replace the sidebar's example text and press Enter; returns the time (perf_counter) Enter was pressed."""
    box = example_box(page)
    box.fill(text)
    t = time.perf_counter()
    box.press("Enter")
    return t


def metric(page, label: str) -> str:
    """The value shown by the `st.metric` labelled `label`."""
    m = page.locator("[data-testid='stMetric']").filter(
        has=page.locator("[data-testid='stMetricLabel']", has_text=label))
    return m.locator("[data-testid='stMetricValue']").inner_text().strip()


def wait_metric(page, label: str, value: str, timeout: float = 30_000) -> None:
    page.wait_for_function(
        """([label, value]) => [...document.querySelectorAll("[data-testid='stMetric']")].some(m =>
            m.querySelector("[data-testid='stMetricLabel']")?.innerText.trim() === label
            && m.querySelector("[data-testid='stMetricValue']")?.innerText.trim() === value)""",
        arg=[label, value], timeout=timeout,
    )  # fmt: skip


def nav_link(page, title: str):
    """The sidebar navigation link of the page titled `title`."""
    return page.locator(f"a[data-testid='stSidebarNavLink']:has(span[label={_css_string(title)}])")


def nav_titles(page) -> list[str]:
    return page.locator("a[data-testid='stSidebarNavLink'] span[label]").evaluate_all(
        "els => els.map(e => e.getAttribute('label'))")


def go_to(page, title: str, timeout: float = 60_000) -> None:
    """Open a page by clicking its sidebar link and wait until its run has finished.

    The link is highlighted as soon as it is clicked, before the server starts the run; the address bar
    changes when the new run starts (the same message that sets the script state to running), so the
    condition is: the address's path == the link's, then idle. (The query string is the app's: a training run
    puts ?job=<id> on every page.)
    """
    link = nav_link(page, title)
    href = link.get_attribute("href").split("?")[0]
    if page.url.split("?")[0] != href:  # (clicking the page we are on would start a rerun we could not tell apart)
        link.click()
        page.wait_for_function("href => location.href.split('?')[0] === href", arg=href, timeout=timeout)
    wait_idle(page, timeout)


def _css_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def chart_with_title(page, title_part: str):
    """The first Vega-Lite chart whose (sub)title contains `title_part` (case-insensitive)."""
    return page.locator(CHART).filter(
        has=page.locator("[aria-roledescription='title']", has_text=_ci(title_part))).first


def _ci(text: str):
    return re.compile(re.escape(text), re.IGNORECASE)


def chart_titles(page) -> list[str]:
    return page.locator(f"{CHART} [aria-roledescription='title']").evaluate_all(
        "els => els.map(e => e.textContent.trim())")


def mark_labels(locator) -> list[str]:
    """The aria-labels (the tooltips' text) of every mark inside `locator` (a chart or the page)."""
    return locator.locator(MARKS).evaluate_all("els => els.map(e => e.getAttribute('aria-label') || '')")


def sidebar_select(page, label: str):
    """The sidebar's `st.selectbox` labelled `label` (a react-aria combobox in Streamlit 1.67)."""
    return page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").filter(
        has=page.locator(f"input[role='combobox'][aria-label={_css_string(label)}]"))


def select_options(page, label: str) -> list[str]:
    """The options of the sidebar select `label` (opens its list, reads it, closes it)."""
    box = sidebar_select(page, label)
    box.locator("button[aria-label='Open']").click()
    listbox = page.locator(f"[role='listbox'][aria-label={_css_string(label)}]")
    listbox.locator("[role='option']").first.wait_for()
    options = [t.strip() for t in listbox.locator("[role='option']").all_inner_texts()]
    page.keyboard.press("Escape")
    listbox.wait_for(state="detached")
    return options


def select_value(page, label: str) -> str:
    return sidebar_select(page, label).locator("input[role='combobox']").input_value()


def choose(page, label: str, option: str, timeout: float = 60_000) -> None:
    """Pick `option` in the sidebar select `label` and wait until the app has rerun with it."""
    box = sidebar_select(page, label)
    box.locator("button[aria-label='Open']").click()
    listbox = page.locator(f"[role='listbox'][aria-label={_css_string(label)}]")
    item = listbox.locator("[role='option']").filter(has_text=re.compile(rf"^\s*{re.escape(option)}\s*$"))
    # the box shows the new value at once, before the server has even started the rerun: watch for the run
    watch_for_run(page)
    item.click()
    listbox.wait_for(state="detached")
    try:
        wait_run_finished(page, min(timeout, 20_000))
    except PlaywrightTimeout:
        # On a loaded machine the watcher can miss a short rerun; the box then shows the option and the app
        # is idle. Anything else is a real failure. (The callers check what the page shows afterwards.)
        if select_value(page, label) != option.strip():
            raise
        wait_idle(page, timeout)


_WATCH_JS = """() => {
    window.__runSeen = false;
    const seen = (records) => {
        const app = document.querySelector("[data-testid='stApp']");
        // A fast rerun can start and end between two callbacks: the records' old values still show it.
        const ranMeanwhile = (records || []).some(
            r => r.attributeName === "data-test-script-state" && r.oldValue === "running");
        if (ranMeanwhile || app?.getAttribute("data-test-script-state") === "running"
            || document.querySelector("[data-stale='true'], [data-testid='stStatusWidget']")) {
            window.__runSeen = true; obs.disconnect();
        }
    };
    const obs = new MutationObserver(seen);
    obs.observe(document, {subtree: true, childList: true, attributes: true, attributeOldValue: true,
                           attributeFilter: ["data-test-script-state", "data-stale", "data-testid"]});
}"""


def watch_for_run(page) -> None:
    """Arm a watcher, before an action, that notes when the app starts a rerun (script state "running")."""
    page.evaluate(_WATCH_JS)


def wait_run_finished(page, timeout: float = 60_000) -> None:
    """After `watch_for_run` and an action: wait until the rerun it caused has started and finished."""
    page.wait_for_function("() => window.__runSeen === true", timeout=timeout)
    wait_idle(page, timeout)


def screenshot(page, name: str, max_height: int = 12_000) -> Path:
    """Save the whole page to tests/artifacts/<name>.png.

    Streamlit scrolls its main area inside a container, so a "full page" screenshot is one viewport high:
    the viewport is stretched to the content's height for the shot, then restored.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    # an idle app may still be drawing elements it has received: Streamlit shows a skeleton until each is drawn
    page.wait_for_function("() => !document.querySelector(\"[data-testid='stSkeleton']\")", timeout=30_000)
    size = page.viewport_size
    height = page.evaluate(
        """() => Math.max(...[...document.querySelectorAll("[data-testid='stMain'], [data-testid='stSidebarContent']")]
                            .map(e => e.scrollHeight), document.documentElement.scrollHeight)"""
    )
    page.set_viewport_size({"width": size["width"], "height": min(max(height, size["height"]), max_height)})
    try:
        page.screenshot(path=str(path))
    finally:
        page.set_viewport_size(size)
    return path


_CHART_LABELS_JS = """([title, marks]) => {
    const t = title.toLowerCase();
    const chart = [...document.querySelectorAll("[data-testid='stVegaLiteChart']")].find(c =>
        [...c.querySelectorAll("[aria-roledescription='title']")].some(e => e.textContent.toLowerCase().includes(t)));
    return chart ? [...chart.querySelectorAll(marks)].map(e => e.getAttribute("aria-label") || "") : null;
}"""


def wait_chart_changed(page, title_part: str, before: list[str], timeout: float = 30_000) -> None:
    """Wait until the chart titled `title_part` has marks whose labels differ from `before`."""
    page.wait_for_function(
        f"""([title, marks, before]) => {{ const l = ({_CHART_LABELS_JS})([title, marks]);
               return !!l && l.length > 0 && l.join("\\n") !== before; }}""",
        arg=[title_part, MARKS, "\n".join(before)], timeout=timeout,
    )  # fmt: skip


# Elements of the main area whose text is wider than the box that clips it (Streamlit's "…" on a metric, a page
# link or a button label). KaTeX's hidden MathML copies and the charts and tables (which scroll) are not text cut.
_CUT_JS = """() => [...document.querySelectorAll("[data-testid='stMain'] *")].filter(e =>
    e.scrollWidth > e.clientWidth + 1 && ["hidden", "clip"].includes(getComputedStyle(e).overflowX)
    && e.textContent.trim() && !e.closest(".katex")
    && !e.closest("[data-testid='stVegaLiteChart'], [data-testid='stDataFrame']")).map(e => e.textContent.trim())"""


def cut_texts(page) -> list[str]:
    """The texts of the main area that are cut short where they are shown (empty when all show whole)."""
    return page.evaluate(_CUT_JS)
