"""nginx in front of one gunicorn or several, from the repository's ``deploy/nginx.conf``, on
loopback.

The template is rendered here for tests and soaks exactly as ``envsubst`` renders it for the
proxy image (``deploy/Dockerfile.proxy``): only the ``${NAME}`` placeholders of
``PLACEHOLDERS`` are replaced, every one of them must be given, and nginx's own ``$variables``
are left alone. Each ``Nginx`` owns a fresh runtime directory (pid file, temporary files),
removed when it stops.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "nginx.conf"
PLACEHOLDERS = (
    "FACETS_PROXY_LISTEN",
    "FACETS_UPSTREAM_SERVERS",
    "MAX_CONTENT_LENGTH",
    "NGINX_RUNTIME_DIR",
)
START_TIMEOUT_S = 15
STOP_TIMEOUT_S = 10


def template_placeholders(text: str) -> set[str]:
    """The ``${NAME}`` placeholders a template uses."""
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", text))


def render(values: dict[str, str], template: Path = TEMPLATE) -> str:
    """The config with each placeholder replaced (``envsubst '${A} ${B} ...'`` semantics)."""
    if set(values) != set(PLACEHOLDERS):
        raise ValueError(f"give exactly {PLACEHOLDERS}, not {sorted(values)}")
    text = template.read_text()
    unknown = template_placeholders(text) - set(PLACEHOLDERS)
    if unknown:
        raise ValueError(f"{template} uses placeholders nobody renders: {sorted(unknown)}")
    for name in PLACEHOLDERS:
        text = text.replace("${" + name + "}", str(values[name]))
    return text


def upstream_servers(addresses: Sequence[str]) -> str:
    """``FACETS_UPSTREAM_SERVERS`` for these gunicorn addresses, as the proxy image's shell
    renders it from ``FACETS_UPSTREAM``."""
    return "".join(f"server {address} max_fails=0; " for address in addresses)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Nginx:
    """``nginx`` on a free loopback port, proxying to ``upstream`` (``host:port``, or several:
    round-robin)."""

    def __init__(
        self, upstream: str | Sequence[str], log_path: Path, max_content_length: int
    ) -> None:
        self.executable = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(self.executable, os.X_OK):
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        self.port = _free_port()
        self.upstreams = [upstream] if isinstance(upstream, str) else list(upstream)
        self.log_path = Path(log_path)
        self.max_content_length = max_content_length
        self.runtime_dir: Path | None = None
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # Outside pytest's private tmp: run as root, nginx's workers drop to "nobody", which
        # must reach the temporary-file directories.
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="facets-nginx-"))
        self.runtime_dir.chmod(0o755)
        conf = self.runtime_dir / "nginx.conf"
        conf.write_text(
            render(
                {
                    "FACETS_PROXY_LISTEN": f"127.0.0.1:{self.port}",
                    "FACETS_UPSTREAM_SERVERS": upstream_servers(self.upstreams),
                    "MAX_CONTENT_LENGTH": str(self.max_content_length),
                    "NGINX_RUNTIME_DIR": str(self.runtime_dir),
                }
            )
        )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.executable, "-e", "stderr", "-p", str(self.runtime_dir), "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._listening():
            if self.process.poll() is not None:
                self.process = None
                self._remove_runtime_dir()
                raise RuntimeError(f"nginx exited at start; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not listen in time; see {self.log_path}")
            time.sleep(0.05)

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Fast shutdown (SIGTERM), then SIGKILL of the group if it lingers."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT_S)
            except ProcessLookupError:
                pass
            self.process = None
        self._remove_runtime_dir()

    def _remove_runtime_dir(self) -> None:
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None
