"""The server side of benchmarks/serve_latency.py: start, wait for, sample and stop
the API process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

console = Console()
#: the API key the benchmark server is started with, and the list length asked for
API_KEY = "serve-latency-bench-key"
K = 10


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(launcher: str, port: int, access_log: bool = False, workers: int = 1) -> list[str]:
    log_flag = "--access-log" if access_log else "--no-access-log"
    if launcher == "cli":  # exactly `shopformer serve` (uvicorn; uvloop + httptools when installed)
        return [sys.executable, "-m", "shopformer.cli", "serve", "--host", "127.0.0.1", "--port", str(port), log_flag,
                "--workers", str(workers)]
    if workers > 1:
        raise SystemExit("--workers needs --launcher cli (shopformer serve passes the settings to the workers)")
    return [sys.executable, "-m", "uvicorn", "shopformer.serve:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), log_flag, "--log-level", "warning"]


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) in kB of a process and its descendants together (the
    worker processes of ``serve --workers N``)."""
    out: dict[str, int] = {}
    for p in _descendants(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = out.get(key, 0) + int(value.split()[0])
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (/proc; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15 of stat)


def proc_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process and its descendants (the workers of
    ``serve --workers N``, the impression writer's child)."""
    return sum(cpu_seconds(p) for p in _descendants(pid))


def wait_ready(proc: subprocess.Popen, base: str, timeout: float, log: Path) -> dict:
    """Poll /health until the model is loaded; returns the health body."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with console.status("waiting for the server (loading the run, building indexes) ...") as status:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with code {proc.returncode}:\n{_tail(log)}")
            try:
                r = httpx.get(f"{base}/health", timeout=2)
                body = r.json()
                if r.status_code == 200 and body.get("status") == "ok":
                    return body
                last = f"{r.status_code} {body}"
            except (httpx.HTTPError, ValueError) as exc:
                last = type(exc).__name__
            rss = proc_memory(proc.pid).get("VmRSS", 0)
            status.update(f"waiting for the server ({last}; RSS {rss / 1024:,.0f} MB) ...")
            time.sleep(0.5)
    raise SystemExit(f"the server was not ready after {timeout:.0f} s (last: {last}):\n{_tail(log)}")


def wait_warm(proc: subprocess.Popen, base: str, timeout: float, log: Path) -> None:
    """Poll /health until the pages' background warm-up is over (``warm_up`` is not
    "running"): answers measured before it would time the warm-up's competition for the
    CPU, not the steady state."""
    deadline = time.monotonic() + timeout
    with console.status("waiting for the server's warm-up ..."):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with code {proc.returncode}:\n{_tail(log)}")
            try:
                if httpx.get(f"{base}/health", timeout=2).json().get("warm_up") != "running":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.25)
    raise SystemExit(f"the server's warm-up was not over after {timeout:.0f} s:\n{_tail(log)}")


def _tail(log: Path, n: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cache_counts(base: str) -> dict[str, float]:
    """The server's history cache hits / misses (Prometheus text)."""
    try:
        text = httpx.get(f"{base}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    found = re.findall(r'^shopformer_history_cache_total\{result="(\w+)"\} ([0-9.e+]+)$', text, re.M)
    return {k: float(v) for k, v in found}


