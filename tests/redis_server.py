"""A private ``redis-server`` on a free loopback port that a test can stop, restart and flush.

It never touches the shared Redis: each instance owns its port and its data directory. With
``--save ''`` nothing is written unless the test asks for a snapshot (``snapshot()``), which
the next ``start()`` then loads, like a Redis that comes back from an old RDB file.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

START_TIMEOUT_S = 10
DUMP_FILE = "dump.rdb"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, started and stopped on demand."""

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
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--dir", str(self.data_dir),
                "--dbfilename", DUMP_FILE,
                "--loglevel", "warning",
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
