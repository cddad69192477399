"""The processes and the database a soak owns: a scratch PostgreSQL database, a private
``redis-server`` it can kill and restart empty on the same port, and gunicorn with 2 workers.

Everything listens on 127.0.0.1 only, and everything started here is stopped by its owner
(process groups are killed, the database dropped), whatever happened in between.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from facets.config import normalize_database_url

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
DUMP_FILE = "dump.rdb"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the process group ``proc`` leads (started with ``start_new_session``)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


class ScratchDatabase:
    """A database of our own on the server of ``server_url``, created empty and dropped after."""

    def __init__(self, server_url: str, prefix: str = "facets_soak") -> None:
        self.name = f"{prefix}_{secrets.token_hex(4)}"
        server = make_url(normalize_database_url(server_url))
        self._admin_url = server.set(database="postgres")
        self.url = server.set(database=self.name).render_as_string(hide_password=False)

    def _admin(self, statement: str) -> None:
        engine = create_engine(self._admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(statement))
        finally:
            engine.dispose()

    def create(self) -> None:
        self._admin(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class PrivateRedis:
    """A private ``redis-server`` on a free loopback port that a test can stop, restart and flush.

    It never touches the shared Redis: each instance owns its port and its data directory. With
    ``--save ''`` nothing is written unless ``snapshot()`` is asked for, which the next
    ``start(keep_snapshot=True)`` then loads, like a Redis back from an old RDB file; any other
    start is empty, like a Redis that lost its memory.
    """

    def __init__(self, data_dir: Path) -> None:
        self.executable = shutil.which("redis-server")
        if self.executable is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A fresh client of this server (close it when done)."""
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)

    def start(self, *, keep_snapshot: bool = False) -> None:
        """Start the server; it loads the last ``snapshot()`` only with ``keep_snapshot``."""
        assert self.process is None, "already running"
        if not keep_snapshot:
            (self.data_dir / DUMP_FILE).unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.data_dir),
                "--dbfilename",
                DUMP_FILE,
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"redis-server on port {self.port} exited at start")
            client = self.client()
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                pass
            except redis.BusyLoadingError:
                pass
            finally:
                client.close()
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer in time")
            time.sleep(0.02)

    def snapshot(self) -> None:
        """Write the data set to disk now (``SAVE``), for a later ``start(keep_snapshot=True)``."""
        client = self.client()
        try:
            client.save()
        finally:
            client.close()

    def stop(self) -> None:
        """Kill the server (no save); connections to it fail from now on."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(START_TIMEOUT_S)
        self.process = None

    def flushall(self) -> None:
        client = self.client()
        try:
            client.flushall()
        finally:
            client.close()


class Gunicorn:
    """``gunicorn -c gunicorn.conf.py 'app:create_app()'`` on a free loopback port."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.env = {
            **env,
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "GUNICORN_WORKERS": str(workers),
        }
        self.workers = workers
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(self.worker_pids()) < self.workers or not self._ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not become ready; see {self.log_path}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.base_url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def worker_pids(self) -> list[int]:
        """The master's children (its workers), from ``/proc``."""
        if self.process is None:
            return []
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except FileNotFoundError:
            return []

    def kill_worker(self) -> int:
        """SIGKILL one worker mid-traffic; the master forks a replacement. Returns its pid."""
        pids = self.worker_pids()
        if not pids:
            raise RuntimeError("gunicorn has no workers to kill")
        os.kill(pids[0], signal.SIGKILL)
        return pids[0]

    def stop(self) -> None:
        """SIGTERM the master (workers finish), then SIGKILL the group if it lingers."""
        if self.process is None:
            return
        _kill_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _kill_group(self.process)
            self.process.wait(STOP_TIMEOUT_S)
        _kill_group(self.process)  # any worker orphaned by the master's exit
        self.process = None
