"""Serve the app from N Streamlit processes behind nginx, with session affinity and a production profile.

    python deploy/serve.py                         # 2 processes on http://0.0.0.0:8080
    python deploy/serve.py --processes 3 --port 80 --allowed-host app.example.com

One Streamlit process runs every session's Python under one interpreter lock, so it saturates at
some actions per second whatever the cores; N processes on N cores share the load. A session is
one websocket plus the HTTP requests its page makes (file uploads, downloads), and all of them
must reach the process that holds the session: nginx gives each browser a random cookie
(`stlb`) on its first response and routes by a consistent hash of it. Requests before the
cookie exists (the first page load) are stateless and may go anywhere.

The processes share one limit on training runs (EXPLAINER_MAX_TRAINING_JOBS, default 1, for the whole machine):
each run holds a slot file in a directory they all share (EXPLAINER_TRAINING_SLOTS_DIR, by default in the run
directory), so a class's runs wait in line instead of N training at once.

The profile: tracebacks never reach users (`client.showErrorDetails = "none"`), the websocket
accepts only the named hosts, and nginx adds security headers (CSP, frame-ancestors, nosniff,
referrer policy), hides `/_stcore/metrics`, and answers `/healthz` when a backend is healthy.

Needs Debian's nginx (`apt-get install nginx`). Stops everything on Ctrl-C or SIGTERM.
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

ROOT = Path(__file__).resolve().parent.parent
SLOTS_ENV = "EXPLAINER_TRAINING_SLOTS_DIR"  # model_core/training/slots.py (not imported: this script needs no NumPy)
FIRST_BACKEND_PORT = 8601

# Streamlit's front end evaluates Vega expressions with `new Function` ('unsafe-eval') and sets inline
# styles ('unsafe-inline'); everything else comes from this origin, but images: data: URIs, and the page icons'
# Material Symbols, which Streamlit fetches from fonts.gstatic.com for the tab's favicon.
CSP = "; ".join([
    "default-src 'self'", "script-src 'self' 'unsafe-inline' 'unsafe-eval'", "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob: https://fonts.gstatic.com", "font-src 'self' data:", "connect-src 'self' ws: wss:",
    "worker-src 'self' blob:", "frame-ancestors 'none'", "base-uri 'self'", "form-action 'self'", "object-src 'none'",
])

NGINX_CONF = """\
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    client_max_body_size {max_upload_mb}m;
    client_body_buffer_size {max_upload_mb}m;  # uploads stay in memory: no temp files for the workers to write

    # Session affinity: route by the browser's `stlb` cookie; give a browser without one a random one.
    map $cookie_stlb $affinity {{ "" $request_id; default $cookie_stlb; }}
    map $cookie_stlb $new_affinity {{ "" "stlb=$request_id; Path=/; HttpOnly; SameSite=Lax"; default ""; }}
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}

    upstream streamlit {{
        hash $affinity consistent;
{servers}
    }}

    server {{
        listen {host}:{port};
        server_tokens off;
        add_header Set-Cookie $new_affinity always;
        add_header Content-Security-Policy "{csp}" always;
        add_header X-Frame-Options "DENY" always;
        add_header X-Content-Type-Options "nosniff" always;
        add_header Referrer-Policy "same-origin" always;

        location = /healthz {{ proxy_pass http://streamlit/_stcore/health; }}
        location = /_stcore/metrics {{ return 404; }}
        location / {{
            proxy_pass http://streamlit;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;  # with its port: Streamlit checks the websocket's Origin against it
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1d;  # a websocket stays open as long as its tab
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""


def nginx_conf(*, host: str, port: int, backends: list[int], run_dir: Path, max_upload_mb: int) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in backends)
    return NGINX_CONF.format(run=run_dir, servers=servers, host=host, port=port, csp=CSP, max_upload_mb=max_upload_mb)


def streamlit_cmd(port: int, allowed_hosts: list[str]) -> list[str]:
    """One backend: loopback only (nginx is the way in), the production profile on top of .streamlit/config.toml."""
    hosts = [arg for h in allowed_hosts for arg in ("--server.allowedHosts", h)]  # a list option: once per host
    return [sys.executable, "-m", "streamlit", "run", str(ROOT / "explainer" / "app.py"),
            "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
            "--client.showErrorDetails", "none", *hosts,
            "--server.enableXsrfProtection", "true", "--browser.gatherUsageStats", "false"]  # fmt: skip


def wait_healthy(url: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not become healthy within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=2, help="Streamlit processes (one per core)")
    ap.add_argument("--host", default="0.0.0.0", help="address nginx listens on")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--backend-port", type=int, default=FIRST_BACKEND_PORT, help="the first backend's port")
    ap.add_argument("--allowed-host", action="append", default=[],
                    help="a hostname the app is reached by (repeat; default: localhost and 127.0.0.1)")
    args = ap.parse_args(argv)
    if not 1 <= args.processes <= 64:
        ap.error("--processes must be between 1 and 64")
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        print("error: nginx is not installed (Debian: apt-get install nginx)", file=sys.stderr)
        return 2
    hosts = args.allowed_host or ["localhost", "127.0.0.1"]
    backends = [args.backend_port + i for i in range(args.processes)]
    run_dir = Path(tempfile.mkdtemp(prefix="explainer-lb-"))
    conf = run_dir / "nginx.conf"
    conf.write_text(nginx_conf(host=args.host, port=args.port, backends=backends, run_dir=run_dir,
                               max_upload_mb=6))  # fmt: skip
    procs: list[subprocess.Popen] = []

    def stop(*_) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(run_dir, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        # one training limit for the machine, not one per process: the processes share slot files (training/slots.py)
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        env.setdefault(SLOTS_ENV, str(run_dir / "training-slots"))
        for port in backends:
            procs.append(subprocess.Popen(streamlit_cmd(port, hosts), cwd=ROOT, env=env, stdout=subprocess.DEVNULL))
        for port in backends:
            wait_healthy(f"http://127.0.0.1:{port}/_stcore/health")
        procs.append(subprocess.Popen([nginx, "-c", str(conf), "-p", str(run_dir), "-g", "daemon off;"]))
        shown = "127.0.0.1" if args.host == "0.0.0.0" else args.host
        wait_healthy(f"http://{shown}:{args.port}/healthz", timeout=20)
        print(f"serving {len(backends)} processes at http://{shown}:{args.port} (health: /healthz)", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("error: a process stopped; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
