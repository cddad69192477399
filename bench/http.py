"""The HTTP leg: the bench app under gunicorn (the project's gunicorn.conf.py), driven by wrk.

wrk keeps connections alive (HTTP/1.1). Warm small-org facets and the floor alternate, a few
seconds each, several rounds; the medians over rounds are reported, and the req/s ratio is the
median of each round's facets / floor ratio. wrk runs on the same two
cores as gunicorn, so absolute req/s are lower than on a separate load generator; the ratio is
the number to watch. Each run also measures the CPU a request costs each process
(``bench.cpu``): on a saturated machine the req/s ratio follows the whole machine's.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.cpu import PARTS, CpuMeter
from bench.floor import FLOOR_PATH

ROOT = Path(__file__).resolve().parents[1]
UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def wrk_path() -> str | None:
    return shutil.which("wrk")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(
    env_overrides: dict[str, str], log_path: Path, port: int, root: Path = ROOT
) -> subprocess.Popen:
    """gunicorn with the project's config on ``bench.wsgi``; its output goes to ``log_path``.

    ``root``: the checkout to serve (another worktree, to measure two versions side by side).
    """
    env = {**os.environ, **env_overrides, "GUNICORN_BIND": f"127.0.0.1:{port}"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_gunicorn
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(root / "gunicorn.conf.py"),
            "--chdir",
            str(root),
            "bench.wsgi:create_bench_app()",
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc.log_file = log  # type: ignore[attr-defined]
    return proc


def wait_ready(port: int, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{port}{FLOOR_PATH}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer in time")


def stop_gunicorn(proc: subprocess.Popen) -> None:
    """SIGTERM the gunicorn master we started (it stops its workers), then wait."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    proc.log_file.close()  # type: ignore[attr-defined]


def _to_us(value: str, unit: str) -> float:
    return float(value) * UNITS_US[unit]


def parse_wrk(output: str) -> dict:
    """Requests/s, p50/p99 latency (us) and non-2xx/3xx count from ``wrk --latency`` output."""
    result: dict = {"rps": None, "p50_us": None, "p99_us": None, "non_2xx": 0, "requests": None}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", output):
        result["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        if m := re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", output, re.M):
            result[key] = _to_us(m.group(1), m.group(2))
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        result["non_2xx"] = int(m.group(1))
    if m := re.search(r"(\d+) requests in", output):
        result["requests"] = int(m.group(1))
    return result


def run_wrk(
    url: str, headers: dict[str, str], seconds: float, connections: int, threads: int
) -> dict:
    duration = f"-d{max(1, round(seconds))}s"
    cmd = [wrk_path() or "wrk", f"-t{threads}", f"-c{connections}", duration, "--latency"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 30)
    parsed = parse_wrk(out.stdout)
    parsed["raw"] = out.stdout
    return parsed


def measure_http(
    env: dict[str, str],
    facets_path: str,
    key: str,
    *,
    seconds: float,
    rounds: int,
    connections: int,
    threads: int,
    log_path: Path,
    warm: bool = True,
) -> dict:
    """Warm facets vs the floor on one gunicorn, alternating; medians over the rounds."""
    port = free_port()
    proc = start_gunicorn(env, log_path, port)
    base = f"http://127.0.0.1:{port}"
    runs: dict[str, list[dict]] = {"facets": [], "floor": []}
    try:
        wait_ready(port, proc)
        auth = {"Authorization": f"Bearer {key}"}
        targets = {"facets": (base + facets_path, auth), "floor": (base + FLOOR_PATH, {})}
        for url, headers in targets.values() if warm else ():  # workers, pools, the cache
            run_wrk(url, headers, 1, connections, threads)
        meter = CpuMeter(proc.pid)
        for r in range(rounds):
            order = ("facets", "floor") if r % 2 == 0 else ("floor", "facets")
            for name in order:
                url, headers = targets[name]
                before = meter.snapshot()
                result = run_wrk(url, headers, seconds, connections, threads)
                result["cpu_us"] = meter.per_request(before, meter.snapshot(), result["requests"])
                runs[name].append(result)
    finally:
        stop_gunicorn(proc)
    summary: dict = {
        "connections": connections,
        "threads": threads,
        "seconds": seconds,
        "rounds": rounds,
        "gunicorn_workers": env.get("GUNICORN_WORKERS", "gunicorn.conf.py default"),
    }
    for name, results in runs.items():
        summary[name] = {
            "rps": _median([x["rps"] for x in results]),
            "p50_us": _median([x["p50_us"] for x in results]),
            "p99_us": _median([x["p99_us"] for x in results]),
            "non_2xx": sum(x["non_2xx"] for x in results),
            "requests": sum(x["requests"] or 0 for x in results),
            "rounds_rps": [x["rps"] for x in results],
            "cpu_us": {part: _median([x["cpu_us"][part] for x in results]) for part in PARTS},
        }
    # A burst of someone else's work slows neighbouring runs alike: the ratio of each round's
    # two runs (run back to back) is steadier than the ratio of the two medians.
    pairs = _round_ratios(runs, lambda run: run["rps"])
    summary["round_ratios"] = [round(x, 3) for x in pairs]
    summary["ratio"] = _median(pairs)
    summary["machine_cpu_ratio"] = _median(
        _round_ratios(runs, lambda run: run["cpu_us"]["machine"])
    )
    return summary


def _round_ratios(runs: dict[str, list[dict]], figure) -> list[float]:
    """Each round's facets / floor ratio of ``figure`` (rounds missing either are left out)."""
    return [
        figure(a) / figure(b)
        for a, b in zip(runs["facets"], runs["floor"], strict=True)
        if figure(a) and figure(b)
    ]


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
