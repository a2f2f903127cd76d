"""A classroom on the app: N simulated sessions speaking Streamlit's websocket protocol, plus T trainers.

    python benchmarks/classroom.py --sessions 20 --trainers 4 --duration 60            # starts one streamlit run
    python benchmarks/classroom.py --sessions 40 --duration 60 --processes 2          # deploy/serve.py behind nginx
    python benchmarks/classroom.py --sessions 10 --duration 30 --url http://127.0.0.1:8501   # a running server

No browser: each session is a `benchmarks/st_client.StreamlitSession` (one websocket, Streamlit's protobufs), so
the client costs little next to the server. An explorer opens the app, then every `--think` seconds (jittered
0.5-1.5x) either switches to a random page or types a random valid example for digits-0-9 (`Max ( 3 8 1 )`)
into the sidebar; its latency is BackMsg sent -> script_finished. A trainer opens Train, sets the largest model
the limits allow (4 blocks, 8 heads, d_model 256, the widest FFN under the parameter cap, the most steps),
presses Start, and then reruns the page's fragments at the intervals the server gave them (`run_every`, which
the frontend's timers drive), reading its progress: steps done, or its place in the line, or why it was refused.

Every second it samples the server's processes (the server and all its descendants: the streamlit processes,
nginx): RSS from /proc/<pid>/status, CPU from /proc/<pid>/stat. At the end it prints the actions, throughput,
latency p50/p95/max per kind of action and overall, the errors (exception elements, protocol errors, timeouts),
RSS and CPU every 5 s, and each trainer's status and steps.

Bounded: the sessions stop starting actions at --duration; whatever is still running is abandoned at
--duration + --grace; at most --max-actions actions in all. Loopback only: a --url whose host is not a loopback
address is refused, and a server it starts listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from st_client import ProtocolError, RunResult, StreamlitSession  # noqa: E402
from websockets.exceptions import WebSocketException  # noqa: E402

from model_core import TaskConfig  # noqa: E402
from model_core.config import TrainConfig  # noqa: E402
from model_core.limits import (  # noqa: E402
    MAX_D_FF,
    MAX_D_MODEL,
    MAX_HEADS,
    MAX_LAYERS,
    MAX_PARAMS,
    LimitError,  # noqa: E402
    count_params,
)
from model_core.presets import train_page_defaults  # noqa: E402
from model_core.task import OPERATIONS  # noqa: E402
from model_core.training import job as tj  # noqa: E402
from model_core.training.memory import check_memory, tokens_per_example  # noqa: E402

OPS = ("First", "Second", "Last", "Max", "Min")  # digits-0-9, the default model: three values 0-9
EXPLORER_KINDS = ("page", "example")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------- the largest trainable model
# The tasks the Train page allows whose examples are longest, each as the widgets that make it (in the order a user
# sets them: the number of values after what caps it). Values 0-9 nested 3 values with Sum: 32 tokens per example,
# but the largest model's evaluation passes on it are over the per-job memory cap.
HEAVY_TASKS = {
    "wide": (TaskConfig(max_value=tj.MAX_TRAIN_VALUE, n_args=tj.MAX_ARGS_WIDE),
             {"train_max_value": str(tj.MAX_TRAIN_VALUE), "train_n_args": tj.MAX_ARGS_WIDE}),
    "long": (TaskConfig(n_args=tj.MAX_ARGS), {"train_n_args": tj.MAX_ARGS}),
    "nested": (TaskConfig(operations=tuple(OPERATIONS), n_args=tj.MAX_ARGS_NESTED, max_depth=2),
               {"train_ops": list(OPERATIONS), "train_nested": True, "train_n_args": tj.MAX_ARGS_NESTED}),
}


def heaviest_task(model_options: dict) -> str:
    """The HEAVY_TASKS entry with the most tokens per example that a model of `model_options` may train (the
    per-job memory estimate refuses the largest model on the longest ones: their evaluation passes)."""
    def allowed(key: str) -> bool:
        task = HEAVY_TASKS[key][0]
        try:
            check_memory(task, tj.model_config(model_options, task), TrainConfig(batch_size=16, steps=1))
            return True
        except LimitError:
            return False

    fits = [k for k in HEAVY_TASKS if allowed(k)]
    if not fits:
        raise SystemExit("the memory limit allows this model none of the heavy tasks")
    return max(fits, key=lambda k: tokens_per_example(HEAVY_TASKS[k][0], tj.model_config(model_options,
                                                                                          HEAVY_TASKS[k][0])))


def largest_batch(task: TaskConfig, model) -> int:
    """The largest of the Train page's batch sizes whose run the per-job memory estimate allows."""
    for batch in sorted({16, 32, 64, 128, 256, tj.MAX_BATCH}, reverse=True):
        try:
            check_memory(task, model, TrainConfig(batch_size=batch, steps=1))
            return batch
        except LimitError:
            continue
    raise SystemExit("no batch size of the Train page fits the memory limit for the heaviest task")


def trainer_settings(task: str) -> dict[str, object]:
    """The Train page's widgets (by key, in the order a user sets them) for the largest model the limits allow:
    every size at its cap, and the FFN as wide as the parameter cap leaves room for (4 x 8 x 256 with d_ff 1,024
    would be 3.2M parameters), for the most steps. task "largest": also the heaviest task that model may train
    (`heaviest_task`: the longest examples the memory cap allows it; today 0-99 x 5 values) at the largest batch the
    cap allows (`largest_batch`); "page": the
    page's own task (0-9, three values) and batch. The steps: as many as the limits allow at that size."""
    sizes = {"n_layers": MAX_LAYERS, "n_heads": MAX_HEADS, "d_model": MAX_D_MODEL}
    page = train_page_defaults()
    fits = [f for f in range(4, MAX_D_FF + 1) if count_params(tj.model_config({**sizes, "d_ff": f})) <= MAX_PARAMS]
    widest = {**sizes, "d_ff": max(fits), "causal": True}
    task_cfg, heavy = HEAVY_TASKS[heaviest_task(widest)] if task == "largest" else (page.task, {})
    model = tj.model_config({**sizes, "d_ff": max(fits), "causal": task == "largest"}, task_cfg)
    batch = largest_batch(task_cfg, model) if task == "largest" else page.train.batch_size
    steps = tj.max_steps_for(task_cfg, model, batch)
    batch_widget = {"train_batch": str(batch)} if task == "largest" else {}
    return {**heavy, **batch_widget, "train_layers": MAX_LAYERS, "train_heads": MAX_HEADS,
            "train_d_model": MAX_D_MODEL, "train_d_ff": max(fits), "train_steps": steps}  # fmt: skip


# ---------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_run(n: int) -> int:
    """The first of n consecutive free loopback ports (deploy/serve.py numbers its backends from one)."""
    for _ in range(100):
        base = random.randint(20000, 60000 - n)
        try:
            socks = [socket.socket() for _ in range(n)]
            for i, s in enumerate(socks):
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


def health(url: str, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}{path}", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start_server(processes: int) -> tuple[subprocess.Popen, str, object]:
    """One `streamlit run` (processes == 1) or deploy/serve.py, on loopback free ports; (process, URL, log)."""
    log = tempfile.TemporaryFile()
    port = free_port()
    if processes == 1:
        cmd = [sys.executable, "-m", "streamlit", "run", "explainer/app.py", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true"]  # fmt: skip
        probe = "/_stcore/health"
    else:
        cmd = [sys.executable, "deploy/serve.py", "--processes", str(processes), "--host", "127.0.0.1",
               "--port", str(port), "--backend-port", str(free_port_run(processes))]  # fmt: skip
        probe = "/healthz"
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=os.environ | {"PYTHONPATH": str(ROOT)})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while not health(url, probe):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            log.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} did not come up:\n{log.read().decode(errors='replace')[-3000:]}")
        time.sleep(0.3)  # polling an HTTP endpoint: there is no event to wait for
    return proc, url, log


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server by its process group (its own session: the server and its children, nothing else)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def check_loopback(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise SystemExit(f"error: --url must be a loopback address (127.0.0.1, ::1, localhost), not {host!r}")


# ---------------------------------------------------------------- sampling /proc
def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime in clock ticks), or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid ...
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    children = defaultdict(list)
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (st := _stat(int(d.name))) is not None:
            children[st[0]].append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def listener_pid(port: int) -> int | None:
    """The process listening on a loopback TCP port (for --url), via /proc/net/tcp* and the fds' socket inodes."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (d / "fd").iterdir()):
                return int(d.name)
        except OSError:
            continue
    return None


def server_root(url: str) -> int | None:
    """For --url: the listener, or its parent when that is deploy/serve.py (nginx listens; serve.py owns all)."""
    pid = listener_pid(urllib.parse.urlsplit(url).port or 80)
    if pid is None:
        return None
    st = _stat(pid)
    while st is not None:  # nginx's worker -> master -> serve.py
        try:
            cmdline = Path(f"/proc/{st[0]}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            break
        if "serve.py" in cmdline or "nginx" in cmdline:
            pid, st = st[0], _stat(st[0])
        else:
            break
    return pid


def process_name(pid: int) -> str:
    """"streamlit :8601", "nginx", "serve.py", ... for the report."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return str(pid)
    if "streamlit" in argv:
        port = argv[argv.index("--server.port") + 1] if "--server.port" in argv else "?"
        return f"streamlit :{port}"
    if argv[0].startswith("nginx:"):  # nginx retitles itself: "nginx: master process /usr/sbin/nginx -c ..."
        return f"nginx {argv[0].split()[1]}"
    return next((Path(a).name for a in argv[1:] if a.endswith(".py")), Path(argv[0]).name or str(pid))


@dataclass
class Sample:
    t: float  # seconds since the start
    rss: int  # bytes, summed over the tree
    cpu_ticks: int  # utime + stime summed over the tree (processes alive now)
    n_procs: int
    per: dict[int, tuple[int, int]]  # pid -> (cpu ticks, RSS bytes)


async def sample_server(root: int, t0: float, out: list[Sample], stop: asyncio.Event) -> None:
    while not stop.is_set():
        pids = await asyncio.to_thread(process_tree, root)
        per = {p: (st[1], _rss_bytes(p)) for p in pids if (st := _stat(p)) is not None}
        t = time.monotonic() - t0
        out.append(Sample(t, sum(r for _, r in per.values()), sum(c for c, _ in per.values()), len(per), per))
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass


# ---------------------------------------------------------------- the sessions
@dataclass
class Record:
    kind: str  # "open", "page", "example", "train_setting", "train_start", "train_poll"
    page: str
    start: float  # seconds since the benchmark's start
    elapsed_s: float


@dataclass
class Trainer:
    name: str
    status: str = "not started"  # the last state read: running / queued / refused / finished / ...
    message: str = ""
    first_steps: int | None = None
    steps: int = 0
    total_steps: int = 0
    views: int = 0  # polls that redrew the live view (the progress bar)
    queued_views: int = 0
    first_running_s: float | None = None  # when it was first seen running, and last seen
    last_running_s: float | None = None
    first_step_s: float | None = None  # when its step count was first above the first one seen


@dataclass
class Run:
    t0: float
    stop_at: float  # monotonic: no action starts after this
    max_actions: int
    records: list[Record] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started: int = 0

    def may_act(self) -> bool:
        return time.monotonic() < self.stop_at and self.started < self.max_actions

    async def act(self, kind: str, coro) -> RunResult | None:
        """Run one action, recording its latency, or its error (and then None)."""
        self.started += 1
        start = time.monotonic() - self.t0
        try:
            result = await coro
        except (ProtocolError, KeyError, OSError, WebSocketException, NotImplementedError) as err:
            self.errors.append(f"{kind}: {type(err).__name__}: {err}")
            return None
        self.records.append(Record(kind, result.page, start, result.elapsed_s))
        self.errors.extend(f"{kind} on {result.page}: {e}" for e in result.exceptions + result.errors)
        return result


def random_example(rng: random.Random) -> str:
    return f"{rng.choice(OPS)} ( {' '.join(str(rng.randint(0, 9)) for _ in range(3))} )"


async def pause(run: Run, rng: random.Random, think: float) -> None:
    await asyncio.sleep(min(think * rng.uniform(0.5, 1.5), max(0.0, run.stop_at - time.monotonic())))


async def explorer(url: str, run: Run, rng: random.Random, think: float) -> None:
    await asyncio.sleep(rng.uniform(0, min(think, 2.0)))  # a class does not arrive in the same millisecond
    async with StreamlitSession(url) as s:
        if await run.act("open", s.connect()) is None:
            return
        pages = sorted(p for p in s.pages if p)
        while True:
            await pause(run, rng, think)
            if not run.may_act():
                return
            if rng.random() < 0.5:
                page = rng.choice([p for p in pages if p != s.page] or pages)
                result = await run.act("page", s.switch_page(page))
            else:
                result = await run.act("example", s.set_widget("example_text", random_example(rng)))
            if result is None:
                return  # a broken session stops (its error is recorded)


STEP = re.compile(r"step ([\d,]+) of ([\d,]+)")


def read_progress(trainer: Trainer, result: RunResult, t: float) -> None:
    """What the Train page's live view says, when it ran: the progress bar's text and its status box (the
    view's first alert: the job's message, or its place in the line)."""
    for text in result.progress:
        trainer.views += 1
        if m := STEP.search(text):
            trainer.steps, trainer.total_steps = int(m[1].replace(",", "")), int(m[2].replace(",", ""))
            trainer.status, trainer.last_running_s = "running", t
            if trainer.first_steps is None:
                trainer.first_steps, trainer.first_running_s = trainer.steps, t
            if trainer.first_step_s is None and trainer.steps > trainer.first_steps:
                trainer.first_step_s = t
        elif "waiting in line" in text:
            trainer.status = "queued"
            trainer.queued_views += 1
        if result.alerts:
            trainer.message = re.sub(r"\\(.)", r"\1", result.alerts[0])  # Markdown escapes off: plain text


async def trainer(url: str, run: Run, rng: random.Random, info: Trainer, settings: dict[str, object]) -> None:
    await asyncio.sleep(rng.uniform(0, 2.0))
    async with StreamlitSession(url) as s:
        if await run.act("open", s.connect("train")) is None:
            return
        for key, value in settings.items():  # one widget at a time, as a user changes them
            if not run.may_act() or await run.act("train_setting", s.set_widget(key, value)) is None:
                return
        result = await run.act("train_start", s.click("train_start"))
        if result is None:
            return
        read_progress(info, result, time.monotonic() - run.t0)
        if not result.progress:  # a refused job ("failed") shows its message and no progress bar
            info.status, info.message = "refused", (result.alerts or [""])[-1]
            return
        # The frontend reruns each fragment with run_every on its own timer; here, one at a time, each when due.
        due = {fid: time.monotonic() + every for fid, every in s.auto_reruns.items()}
        while run.may_act() and s.auto_reruns:
            fid = min(due, key=due.get)
            await asyncio.sleep(max(0.0, min(due[fid], run.stop_at) - time.monotonic()))
            if not run.may_act():
                break
            result = await run.act("train_poll", s.run_fragment(fid))
            if result is None:
                return
            read_progress(info, result, time.monotonic() - run.t0)
            due = {f: due.get(f, time.monotonic()) for f in s.auto_reruns}  # a full rerun may add or drop timers
            if fid in due:
                due[fid] = time.monotonic() + s.auto_reruns[fid]
        if not s.auto_reruns and info.status == "running":
            info.status = "ended"  # the job finished: the page dropped its timers


# ---------------------------------------------------------------- the report
def ms(x: float) -> str:
    return f"{x * 1000:.0f}"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def latency_line(name: str, xs: list[float]) -> str:
    if not xs:
        return f"  {name:<14} {0:>6}"
    return (f"  {name:<14} {len(xs):>6} {ms(statistics.median(xs)):>8} {ms(pct(xs, 0.95)):>8} "
            f"{ms(max(xs)):>8}")  # fmt: skip


def report(args, run: Run, samples: list[Sample], trainers: list[Trainer], wall: float, client_cpu: float,
           load: tuple, url: str) -> None:  # fmt: skip
    recs = run.records
    explore = [r for r in recs if r.kind in EXPLORER_KINDS]
    task = f" ({args.trainer_task} task)" if args.trainers else ""
    print(f"\nclassroom: {args.sessions} sessions + {args.trainers} trainers{task}, "
          f"{args.duration:.0f} s, think "
          f"{args.think} s, seed {args.seed}, server {url} "
          f"({'--url' if args.url else f'{args.processes} process' + ('es' if args.processes > 1 else '')})")
    la = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs; load average before {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}, "
          f"after {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f} (1/5/15 min)")
    print(f"actions: {len(recs)} completed ({len(explore)} explorer), {run.started} started; wall {wall:.1f} s")
    print(f"throughput: {len(explore) / args.duration:.2f} explorer actions/s, {len(recs) / args.duration:.2f} "
          "actions/s in all (fragment polls included)")
    print(f"\nlatency (ms, BackMsg sent -> script_finished)\n  {'kind':<14} {'n':>6} {'p50':>8} {'p95':>8} {'max':>8}")
    for kind in ("open", "page", "example", "train_setting", "train_start", "train_poll"):
        xs = [r.elapsed_s for r in recs if r.kind == kind]
        if xs:
            print(latency_line(kind, xs))
    print(latency_line("explorer all", [r.elapsed_s for r in explore]))
    by_page = defaultdict(list)
    for r in explore:
        by_page[r.page].append(r.elapsed_s)
    print("  explorer actions by the page that ran: " + ", ".join(
        f"{p} {ms(statistics.median(v))}/{ms(pct(v, 0.95))}" for p, v in sorted(by_page.items())) + " (p50/p95)")
    print(f"\nerrors: {len(run.errors)}")
    for e in run.errors[:5]:
        print(f"  {e[:300]}")
    if samples:
        span = samples[-1].t - samples[0].t or 1.0
        cpu = (samples[-1].cpu_ticks - samples[0].cpu_ticks) / CLK_TCK / span * 100
        print(f"\nserver: RSS max {max(s.rss for s in samples) / 2**20:,.0f} MB (sum over {samples[-1].n_procs} "
              f"processes), CPU {cpu:.0f}% average (100% = one core); this client used {client_cpu / wall * 100:.0f}%")
        print("  per process (CPU % average, RSS max): " + ", ".join(
            f"{process_name(pid)} {(samples[-1].per[pid][0] - samples[0].per[pid][0]) / CLK_TCK / span * 100:.0f}% "
            f"{max(s.per.get(pid, (0, 0))[1] for s in samples) / 2**20:,.0f} MB"
            for pid in samples[-1].per if pid in samples[0].per))  # fmt: skip
        print(f"  {'t (s)':>6} {'RSS MB':>8} {'CPU %':>6} {'actions/s':>9}")
        marks = [samples[0]]  # the first sample at or after each 5 s mark, and the last one
        for s in samples[1:]:
            if s is samples[-1] or s.t // 5 > marks[-1].t // 5:
                marks.append(s)
        for a, b in zip(marks, marks[1:], strict=False):
            dt = (b.t - a.t) or 1.0
            n = sum(a.t <= r.start + r.elapsed_s < b.t for r in recs)
            print(f"  {b.t:>6.0f} {b.rss / 2**20:>8,.0f} {(b.cpu_ticks - a.cpu_ticks) / CLK_TCK / dt * 100:>6.0f} "
                  f"{n / dt:>9.1f}")
    else:
        print("\nserver: no process to sample (--url with a server this user cannot see)")
    if trainers:
        print("\ntrainers:")
        for t in trainers:
            steps = f"steps {t.first_steps}->{t.steps} of {t.total_steps}" if t.first_steps is not None else "no steps"
            adv = ""
            if t.first_steps is not None and t.steps > t.first_steps:
                rate = (t.steps - t.first_steps) / max(t.last_running_s - t.first_running_s, 1e-9)
                adv = (f" (advancing: running at {t.first_running_s:.0f} s, a step done by {t.first_step_s:.0f} s, "
                       f"{rate:.2f} steps/s)")  # fmt: skip
            elif t.first_steps is not None:
                adv = f" (running since {t.first_running_s:.0f} s, no step done)"
            q = f", queued in {t.queued_views} of {t.views} live-view refreshes" if t.queued_views else ""
            msg = f"; says: {t.message[:160]}" if t.message and t.status != "running" else ""
            print(f"  {t.name}: {t.status}, {steps}{adv}{q}{msg}")


# ---------------------------------------------------------------- main
async def main_async(args, url: str, root: int | None) -> None:
    t0 = time.monotonic()
    run = Run(t0, t0 + args.duration, args.max_actions)
    rng = random.Random(args.seed)
    settings = trainer_settings(args.trainer_task)
    trainers = [Trainer(f"trainer {i + 1}") for i in range(args.trainers)]
    samples: list[Sample] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_server(root, t0, samples, stop)) if root else None
    load = os.getloadavg()
    cpu0 = sum(os.times()[:2])
    tasks = [asyncio.create_task(explorer(url, run, random.Random(rng.random()), args.think))
             for _ in range(args.sessions)]  # fmt: skip
    tasks += [asyncio.create_task(trainer(url, run, random.Random(rng.random()), t, settings)) for t in trainers]
    done, pending = await asyncio.wait(tasks, timeout=args.duration + args.grace)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for t in done:
        if t.exception() is not None:
            run.errors.append(f"session: {type(t.exception()).__name__}: {t.exception()}")
    if pending:
        run.errors.append(f"{len(pending)} sessions still busy at the hard deadline (--duration + --grace): cut off")
    wall = time.monotonic() - t0
    stop.set()
    if sampler:
        await sampler
    report(args, run, samples, trainers, wall, sum(os.times()[:2]) - cpu0, load, url)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10, help="explorer sessions")
    ap.add_argument("--trainers", type=int, default=0, help="sessions that train the largest model")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--grace", type=float, default=30.0, help="seconds after --duration before busy sessions are cut")
    ap.add_argument("--think", type=float, default=2.0, help="seconds between a session's actions (x 0.5-1.5)")
    ap.add_argument("--trainer-task", choices=("largest", "page"), default="largest",
                    help="largest: the longest examples the page allows (nested 0-9 with Sum), batch 512 (the heaviest "
                         "job); page: the page's task")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-actions", type=int, default=20_000, help="stop starting actions after this many")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--url", help="a running server (loopback only); default: start one")
    where.add_argument("--processes", type=int, default=1, help="1: streamlit run; more: deploy/serve.py")
    args = ap.parse_args(argv)
    if not (0 <= args.sessions <= 500 and 0 <= args.trainers <= 50 and 0 < args.duration <= 3600):
        ap.error("--sessions 0-500, --trainers 0-50, --duration up to 3600 s")
    if not 1 <= args.processes <= 16:
        ap.error("--processes must be between 1 and 16")
    proc = log = None
    if args.url:
        check_loopback(args.url)
        url, root = args.url.rstrip("/"), server_root(args.url)
    else:
        proc, url, log = start_server(args.processes)
        root = proc.pid
    try:
        asyncio.run(main_async(args, url, root))
    finally:
        if proc is not None:
            stop_server(proc)
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
