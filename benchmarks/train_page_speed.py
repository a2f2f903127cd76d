"""Training speed with the Train page attached vs navigated away vs headless, and the live view's update rate.

Run from the repo root:  python benchmarks/train_page_speed.py [rounds, default 3]

STEPS=800 trains a fixed number of steps instead of stopping at 100% validation accuracy.
Here Chromium shares the server's two cores, which a real user's browser does not. PIN_BROWSER=1 puts
the browser on CPU 1 and the server (and the headless run) on CPU 0, as a stand-in for a browser on the
user's own machine; the server then has one core, where it normally has two.
Each run uses the page's defaults. Seed 0 is deterministic, so every run does the same steps.
Each round opens a new tab (a new session); round 1 is the server's first run, in which the live
charts' specs are built, and later rounds stand for a new user of a running server.
For each run it prints the training time and steps/s that the page reports, how often the progress
text and the loss curve's number of points changed on screen (the curve is counted while it has fewer
than 500 points; longer runs are thinned to 500), and the CPU seconds used meanwhile by the server,
Chromium and this script. The changes are recorded in the page by a MutationObserver, so that measuring does not
poll the browser (Playwright checks for the end of the run every 0.25 s). It also prints the same run
headless (benchmarks/train_defaults.py, with one BLAS thread as the server has), and at the end the median
steps/s of each kind of run over rounds 2-N.

The page snapshots every 10 steps up to step 200 (and measures the mechanism on a probe set at every
snapshot), so a run's figures include those measurements. Compare two checkouts by running this script
(the same copy of it) from each.
"""

import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "browser"), str(ROOT)]

from browser_helpers import chromium_context, go_to, open_app, running_app, wait_idle  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

PROGRESS = "[data-testid='stProgress']"
RATE = re.compile(r"step ([\d,]+) of [\d,]+ · ([\d.]+) s · (\d+) steps/s")
PINNED = os.environ.get("PIN_BROWSER") == "1"
# Records (time in s, value) each time the progress text or the number of points of the loss curve changes.
RECORDER_JS = """() => {
  let chart = null;  // the loss chart's element, looked up again only when it has been replaced
  const lossPath = () => {
    if (!chart || !chart.isConnected) {
      chart = [...document.querySelectorAll("[data-testid='stVegaLiteChart']")]
        .find(c => c.textContent.includes('Loss and accuracy'));
    }
    const line = "[aria-roledescription='line mark'] path, path[aria-roledescription='line mark']";
    const p = chart && chart.querySelector(line);
    // The number of points drawn: it grows with every new dataset (up to 500, then the curve is thinned).
    return p ? String(p.getAttribute('d').split(/[ML]/).length - 1) : '';
  };
  const progress = () => document.querySelector("[data-testid='stProgress']")?.innerText ?? '';
  const rec = window.__trainRecord = {texts: [], paths: []};
  const push = (list, value) => {
    if (value && (!list.length || list[list.length - 1][1] !== value)) list.push([performance.now() / 1000, value]);
  };
  window.__trainObserver?.disconnect();
  window.__trainObserver = new MutationObserver(() => { push(rec.texts, progress()); push(rec.paths, lossPath()); });
  const what = {subtree: true, childList: true, characterData: true, attributes: true};
  window.__trainObserver.observe(document.body, what);
}"""
STOP_ENABLED_JS = "() => { const b = document.querySelector('.st-key-train_stop button'); return b && !b.disabled; }"
DONE_JS = (
    "() => [...document.querySelectorAll(\"[data-testid='stAlertContentSuccess']\")]"
    ".some(e => e.innerText.includes('Trained for') || e.innerText.includes('Reached'))"
)


def progress_text(page) -> str:
    loc = page.locator(PROGRESS)
    return loc.first.inner_text() if loc.count() else ""


def start(page) -> None:
    page.locator(".st-key-train_start button").click()
    page.wait_for_function(STOP_ENABLED_JS, timeout=120_000)  # a loaded machine can take a while


def rate(page) -> dict:
    m = RATE.search(progress_text(page))
    if os.environ.get("STEPS") and m[1].replace(",", "") != os.environ["STEPS"]:
        raise RuntimeError(f"the run ended after {m[1]} steps, not STEPS={os.environ['STEPS']}")
    return {"steps": m[1], "train_s": float(m[2]), "steps_per_s": int(m[3])}


def per_second(events: list[tuple[float, str]]) -> float | None:
    """How often the observed value changed, per second."""
    span = events[-1][0] - events[0][0] if len(events) > 1 else 0
    return round((len(events) - 1) / span, 2) if span else None


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) used so far by this machine's processes, grouped by what they are."""
    tick = os.sysconf("SC_CLK_TCK")
    groups: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        group = ("server" if "streamlit" in cmd else "chromium" if "chrom" in cmd
                 else "benchmark" if int(entry) == os.getpid() or "playwright" in cmd else "other")  # fmt: skip
        groups[group] = groups.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return groups


def cpu_used(before: dict[str, float]) -> dict[str, float]:
    after = cpu_seconds()
    return {k: round(after[k] - before.get(k, 0.0), 2) for k in sorted(after) if after[k] - before.get(k, 0.0) > 0}


def run_attached(page) -> dict:
    """Train while watching the page: record each change of the progress text and of the loss curve."""
    page.evaluate(RECORDER_JS)
    cpu = cpu_seconds()
    start(page)
    page.wait_for_function(DONE_JS, timeout=300_000, polling=250)
    wait_idle(page)
    used = cpu_used(cpu)
    record = page.evaluate("() => window.__trainRecord")
    return rate(page) | {"progress_updates_per_s": per_second(record["texts"]),
                         "curve_updates_per_s": per_second(record["paths"]), "cpu_s": used}  # fmt: skip


def run_away(page, wait_s: float) -> dict:
    """Train while another page is open (nothing polls), then come back and read the result."""
    cpu = cpu_seconds()
    start(page)
    go_to(page, "Overview")
    time.sleep(wait_s)
    go_to(page, "Train")
    page.wait_for_function(DONE_JS, timeout=300_000, polling=250)
    wait_idle(page)
    return rate(page) | {"cpu_s": cpu_used(cpu)}


def pin(pid: int, cpu: int) -> None:
    """Run every thread of process `pid` on `cpu`; threads and processes it starts later inherit it."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), {cpu})


def processes(word: str) -> list[int]:
    """The pids whose command line contains `word`."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if word.encode() in open(f"/proc/{entry}/cmdline", "rb").read():
                    pids.append(int(entry))
    return pids


def headless() -> str:
    args = ["taskset", "-c", "0"] if PINNED else []
    args += [sys.executable, str(ROOT / "benchmarks" / "train_defaults.py")]
    if os.environ.get("STEPS"):
        args.append(os.environ["STEPS"])
    env = os.environ | {"OPENBLAS_NUM_THREADS": "1"}  # as the server (explainer/state.py): one BLAS thread
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env).stdout.strip()


def configure(page) -> None:
    """With STEPS set, train that many steps without the early stop."""
    if os.environ.get("STEPS"):
        page.get_by_text("More", exact=True).click()
        stop_at = page.locator(".st-key-train_stop_at input")
        while stop_at.is_checked():  # (a click before the widget is ready is lost)
            page.locator(".st-key-train_stop_at label").click()
            wait_idle(page)
        box = page.locator(".st-key-train_steps input")
        box.fill(os.environ["STEPS"])
        box.press("Enter")
        wait_idle(page)
        assert box.input_value() == os.environ["STEPS"], box.input_value()


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    slowdowns, rates = [], {"attached": [], "away": [], "headless": []}
    with running_app() as url, sync_playwright() as p, chromium_context(p) as ctx:
        if PINNED:
            for pid in processes("streamlit"):
                pin(pid, 0)
            for pid in processes("chrom"):
                pin(pid, 1)
            print("pinned: the server on CPU 0, Chromium on CPU 1", flush=True)
        for r in range(1, rounds + 1):
            # Each round is a new tab, so a new session: a new user of a server that is already running
            # (in round 1, the server has just started and builds the live charts' specs for the first time).
            page = ctx.new_page()
            open_app(page, url, "train")
            configure(page)
            print(f"round {r}" + (" (the server's first run)" if r == 1 else ""), flush=True)
            attached = run_attached(page)
            print("  attached (page open):   ", attached, flush=True)
            away = run_away(page, wait_s=attached["train_s"] * 1.3)
            print("  away (another page):    ", away, flush=True)
            alone = headless()
            print("  headless (no server):   ", alone, flush=True)
            if r > 1:
                rates["attached"].append(attached["steps_per_s"])
                rates["away"].append(away["steps_per_s"])
                m = re.search(r"([\d.]+) steps/s", alone)
                rates["headless"] += [float(m[1])] if m else []
            print("  load average:", open("/proc/loadavg").read().strip(), flush=True)
            slowdown = 1 - attached["steps_per_s"] / away["steps_per_s"]
            print(f"  attached is {slowdown:.0%} slower than away", flush=True)
            slowdowns.append(slowdown)
            page.close()
    if len(slowdowns) > 1:
        print(f"median slowdown, rounds 2-{rounds}: {statistics.median(slowdowns[1:]):.0%}")
        print(f"median steps/s, rounds 2-{rounds}: " + ", ".join(
            f"{k} {statistics.median(v):.1f}" for k, v in rates.items() if v))


if __name__ == "__main__":
    main()
