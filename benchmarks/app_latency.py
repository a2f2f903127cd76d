"""How fast the explainer follows an edit of the example: under AppTest, and in a real browser.

    python benchmarks/app_latency.py [--reps 10] [--skip-apptest] [--skip-browser]

(a) AppTest (streamlit.testing.v1), one app per page, the shipped default model: the time of
    `at.text_input(key="example_text").input(text).run()`, i.e. one full rerun of the entry script and
    the page after an edit. "fresh" = an example never run in this process (every cache misses: the
    model's forward pass with all hooks, the backward pass, anything a page caches); "cached" =
    alternating between two examples already run (the text changes, the caches hit).
    Target: <= 0.5 s per page rerun.
(b) A real headless Chromium (Debian's /usr/bin/chromium via Playwright) on `python -m streamlit run
    explainer/app.py`: type an example into the sidebar's "Example" box and press Enter. Timed in the page
    with performance.now() from the Enter keydown to
      - "charts": the page's chart (Overview: probability bars; Attention: the attention-pattern heatmap)
        has SVG marks that differ from before the edit (and, on the Overview, the "Example" metric shows it),
      - "finished": Streamlit reports the script not running, no element is stale,
      - "status gone": and the status widget ([data-testid=stStatusWidget]) is gone.
    Every example is new to the server (a cold run) unless marked "cached".
    Target: typing -> re-rendered <= 1.5 s (the mechanism page "How it answers": <= 1 s).

Medians are printed with p10/p90 and the conditions (CPU count, load average, versions): the machine may be
shared, and a loaded machine is slower. Nothing here is a test; speed is only reported.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import browser_helpers as bh  # noqa: E402

PAGES = {  # AppTest path (relative to the entry script) -> name
    None: "Overview",
    "../pages/tokens.py": "Tokens & embeddings",
    "../pages/attention.py": "Attention",
    "../pages/residual.py": "Residual, LayerNorm & FFN",
    "../pages/output.py": "Output & softmax",
    "../pages/backprop.py": "Backprop",
    "../pages/train.py": "Train",
    "../pages/mechanism.py": "How it answers",
    "../pages/heads.py": "Heads across all inputs",
}
OPS = ("First", "Second", "Last", "Max", "Min")
PAGE_FILTER: list[str] = []  # --pages: measure only these


def examples():
    """An endless supply of distinct valid examples (digits 0-9), never the app's default."""
    for a, b, c in itertools.product(range(10), repeat=3):
        for op in OPS:
            text = f"{op} ( {a} {b} {c} )"
            if text != "Max ( 7 2 9 )":
                yield text


def stats(xs: list[float]) -> str:
    xs = sorted(xs)
    if not xs:
        return "n/a"
    q = statistics.quantiles(xs, n=10) if len(xs) >= 2 else [xs[0]] * 9
    med = statistics.median(xs)
    return f"median {med * 1000:7.1f} ms  (p10 {q[0] * 1000:6.1f}, p90 {q[-1] * 1000:6.1f}, n={len(xs)})"


def conditions() -> str:
    load = os.getloadavg()
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("streamlit", "altair", "numpy", "playwright"))
    return (f"{os.cpu_count()} CPUs, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} (1/5/15 min), "
            f"Python {platform.python_version()}, {versions}")  # fmt: skip


# ---------------------------------------------------------------- (a) AppTest
def apptest(reps: int, supply) -> None:
    from tests.app.app_helpers import open_app, set_example

    # AppTest's "missing ScriptRunContext" warnings (harmless) would drown the table
    # (a filter: AppTest resets the loggers' levels)
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
        lambda record: "missing ScriptRunContext" not in record.getMessage())

    print(f"(a) AppTest page rerun after editing the example; {reps} fresh + {reps} cached per page")
    for path, name in PAGES.items():
        at = open_app(path)
        fresh, cached = [], []
        seen = [next(supply), next(supply)]
        for text in seen:  # make them cached
            set_example(at, text)
        for i in range(reps):
            for kind, text in (("fresh", next(supply)), ("cached", seen[i % 2])):
                t = time.perf_counter()
                set_example(at, text)
                (fresh if kind == "fresh" else cached).append(time.perf_counter() - t)
                if at.exception:
                    raise SystemExit(f"{name}: exception after {text!r}: {at.exception}")
        flag = "ok" if statistics.median(fresh) <= 0.5 else "OVER 0.5 s"
        print(f"  {name:27s} fresh  {stats(fresh)}  [{flag}]")
        print(f"  {'':27s} cached {stats(cached)}")


# ---------------------------------------------------------------- (b) the browser
_ARM_JS = """([chart, marks, metricLabel, text]) => {
    const labels = () => {
        const c = [...document.querySelectorAll("[data-testid='stVegaLiteChart']")].find(c =>
            [...c.querySelectorAll("[aria-roledescription='title']")]
                .some(e => e.textContent.toLowerCase().includes(chart)));
        return c ? [...c.querySelectorAll(marks)].map(e => e.getAttribute("aria-label") || "").join("\\n") : null;
    };
    const metricShows = () => !metricLabel || [...document.querySelectorAll("[data-testid='stMetric']")].some(m =>
        m.querySelector("[data-testid='stMetricLabel']")?.innerText.trim() === metricLabel
        && m.querySelector("[data-testid='stMetricValue']")?.innerText.trim() === text);
    const app = () => document.querySelector("[data-testid='stApp']");
    const finished = () => app()?.getAttribute("data-test-script-state") === "notRunning"
        && !document.querySelector("[data-stale='true']");
    const statusGone = () => !document.querySelector("[data-testid='stStatusWidget']");
    const before = labels();
    const b = window.__bench = {t0: null, charts: null, finished: null, status: null, done: false, sawRun: false};
    const check = () => {
        if (b.t0 === null || b.done) return;
        const now = performance.now();
        if (app()?.getAttribute("data-test-script-state") === "running") b.sawRun = true;
        if (b.charts === null) {
            const l = labels();
            if (l && l.length && l !== before && metricShows()) b.charts = now;
        }
        if (b.charts !== null && b.finished === null && finished()) b.finished = now;
        if (b.finished !== null && statusGone()) { b.status = now; b.done = true; obs.disconnect(); }
    };
    const obs = new MutationObserver(check);
    obs.observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
    window.addEventListener("keydown", e => { if (e.key === "Enter" && b.t0 === null) b.t0 = performance.now(); },
                            {capture: true, once: true});
}"""


def browser(reps: int, supply) -> None:
    from playwright.sync_api import sync_playwright

    print(f"\n(b) Browser: Enter in the sidebar's Example box -> re-rendered; {reps} fresh + {reps} cached per page")
    with bh.running_app() as url, sync_playwright() as pw, bh.chromium_context(pw) as ctx:
        for path, name, chart, metric, target in (("", "Overview", "first answer token", "Example", 1.5),
                                                  ("attention", "Attention", "attention pattern", None, 1.5),
                                                  ("mechanism", "How it answers", "direct contributions", None,
                                                   1.0)):  # fmt: skip
            if PAGE_FILTER and name not in PAGE_FILTER:
                continue
            page = ctx.new_page()
            bh.open_app(page, url, path)
            seen = [next(supply), next(supply)]
            for text in seen:
                _edit(page, text, chart, metric)
            rows = {"fresh": [], "cached": []}
            for i in range(reps):
                for kind, text in (("fresh", next(supply)), ("cached", seen[i % 2])):
                    rows[kind].append(_edit(page, text, chart, metric))
            for kind, got in rows.items():
                for j, what in enumerate(("charts", "finished", "status gone")):
                    times = [g[j] for g in got]
                    flag = ("ok" if statistics.median(times) <= target else f"OVER {target} s") if j == 0 else ""
                    label = f"{name} {kind}" if j == 0 else ""
                    print(f"  {label:18s} {what:12s} {stats(times)}  {flag}")
            page.close()


def _edit(page, text: str, chart: str, metric: str | None) -> tuple[float, float, float]:
    page.evaluate(_ARM_JS, [chart, bh.MARKS, metric, text])
    bh.type_example(page, text)
    page.wait_for_function("() => window.__bench.done", timeout=60_000)
    b = page.evaluate("window.__bench")
    if page.locator(bh.EXCEPTION).count():
        raise SystemExit(f"exception on the page after {text!r}")
    return tuple((b[k] - b["t0"]) / 1000 for k in ("charts", "finished", "status"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--skip-apptest", action="store_true")
    ap.add_argument("--skip-browser", action="store_true")
    ap.add_argument("--pages", nargs="*", help="only these pages (names as printed, e.g. 'How it answers')")
    args = ap.parse_args()
    if args.pages:
        PAGE_FILTER.extend(args.pages)
        for path in [p for p, name in PAGES.items() if name not in args.pages]:
            del PAGES[path]
    os.chdir(ROOT)
    print("Conditions:", conditions())
    supply = examples()
    if not args.skip_apptest:
        apptest(args.reps, supply)
    if not args.skip_browser:
        browser(args.reps, supply)
    print("Conditions at the end:", conditions())


if __name__ == "__main__":
    main()
