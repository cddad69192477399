"""A private Redis Cluster on loopback: 3 masters and 3 replicas from Debian's ``redis-server``.

Each node gets a free client port and a free cluster-bus port (``--cluster-port``: the
default, port + 10000, may be taken or out of range), its own directory with its
``--cluster-config-file``, and nothing persisted. The faults a test needs are here: kill a
master (SIGKILL) and promote its replica (``CLUSTER FAILOVER TAKEOVER``), with or without
writes the replica never received, migrate slots with
``redis-cli --cluster reshard``, restart every node empty on the same ports. ``stop`` kills
every node whatever happened; nothing here touches any other Redis.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from soak.servers import free_port

MASTERS = 3
NODE_TIMEOUT_MS = 2000
START_TIMEOUT_S = 30


def _free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


class LocalCluster:
    """``MASTERS`` masters with one replica each; ``url`` is what ``REDIS_URL`` takes."""

    def __init__(self, data_dir: Path) -> None:
        self.server = shutil.which("redis-server")
        self.cli = shutil.which("redis-cli")
        if self.server is None or self.cli is None:
            raise RuntimeError("redis-server/redis-cli missing (apt-get install redis-server)")
        self.data_dir = Path(data_dir)
        ports = _free_ports(4 * MASTERS)
        self.ports, self.bus_ports = ports[: 2 * MASTERS], ports[2 * MASTERS :]
        self.processes: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:2])

    def node(self, port: int) -> redis.Redis:
        """A plain client of one node (close it when done)."""
        return redis.Redis(port=port, decode_responses=True, socket_timeout=5)

    def _start_node(self, port: int, bus_port: int) -> None:
        node_dir = self.data_dir / str(port)
        shutil.rmtree(node_dir, ignore_errors=True)  # empty: no data, no cluster config
        node_dir.mkdir(parents=True)
        self.processes[port] = subprocess.Popen(
            [
                self.server,
                *("--port", str(port), "--bind", "127.0.0.1"),
                *("--cluster-enabled", "yes", "--cluster-port", str(bus_port)),
                *("--cluster-config-file", str(node_dir / "nodes.conf")),
                *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
                *("--dir", str(node_dir), "--save", "", "--appendonly", "no"),
                *("--daemonize", "no", "--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _wait(self, what: str, ready) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if ready():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis cluster: {what} did not happen in time")
            time.sleep(0.05)

    def _each_node(self, check) -> bool:
        for port in self.ports:
            client = self.node(port)
            try:
                if not check(client):
                    return False
            finally:
                client.close()
        return True

    def start(self) -> None:
        """Start every node empty and create the cluster; returns once every node says ok."""
        try:
            for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
                self._start_node(port, bus_port)
            self._wait("nodes answering", lambda: self._each_node(lambda c: c.ping()))
            subprocess.run(
                [
                    self.cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{p}" for p in self.ports),
                    *("--cluster-replicas", "1", "--cluster-yes"),
                ],
                check=True,
                capture_output=True,
                timeout=START_TIMEOUT_S,
            )
            self.wait_ok()
        except BaseException:
            self.stop()  # no node outlives a start that failed
            raise

    def wait_ok(self) -> None:
        """Until every live node reports ``cluster_state:ok`` and knows 3 masters."""

        def ok(client: redis.Redis) -> bool:
            info = client.execute_command("CLUSTER INFO")  # parsed into a dict
            return info["cluster_state"] == "ok" and int(info["cluster_size"]) == MASTERS

        self._wait(
            "cluster_state ok",
            lambda: all(self._node_ok(port, ok) for port, proc in self.processes.items() if proc),
        )

    def _node_ok(self, port: int, check) -> bool:
        client = self.node(port)
        try:
            return check(client)
        finally:
            client.close()

    def roles(self) -> dict[int, tuple[str, int | None]]:
        """Each live node's role and, for a replica, its master's port."""
        out = {}
        for port in self.processes:
            client = self.node(port)
            try:
                info = client.info("replication")
            finally:
                client.close()
            master = info.get("master_port") if info["role"] == "slave" else None
            out[port] = (info["role"], master)
        return out

    def kill_master_and_promote(self) -> tuple[int, int]:
        """SIGKILL a master, promote its replica (``TAKEOVER``); returns (master, replica)."""
        roles = self.roles()
        replica, (_, master) = next((p, r) for p, r in roles.items() if r[0] == "slave")
        killed = self.processes.pop(master)
        killed.kill()
        killed.wait(START_TIMEOUT_S)
        client = self.node(replica)
        try:
            client.execute_command("CLUSTER FAILOVER", "TAKEOVER")
        finally:
            client.close()
        self._wait("replica promoted", lambda: self.roles()[replica][0] == "master")
        self.wait_ok()
        return master, replica

    def fail_over_losing_writes(self, key: str, writes: Callable[[], object]) -> tuple[int, int]:
        """Promote the replica of ``key``'s master after that master acknowledged ``writes``
        the replica never received; returns (master, replica).

        Replication is asynchronous, so a master can die with acknowledged writes its replica
        has not had yet; here that is made certain, not left to timing: the replica is
        brought up to date (``WAIT``), stopped (SIGSTOP) and its link dropped (``CLIENT KILL
        TYPE replica``, so nothing already sent waits in its socket), ``writes`` run, the
        master is SIGKILLed, and the replica resumes and takes over (``CLUSTER FAILOVER
        TAKEOVER``) without the writes.
        """
        master = self._master_of(key)
        replica = next(p for p, (role, of) in self.roles().items() if of == master)
        # everything before ``writes`` has reached the replica
        synced = self._node_ok(master, lambda c: c.execute_command("WAIT", 1, 5000))
        if synced < 1:
            raise RuntimeError(f"the replica {replica} did not catch up with {master}")
        self.processes[replica].send_signal(signal.SIGSTOP)
        try:
            self._node_ok(master, lambda c: c.execute_command("CLIENT KILL TYPE replica"))
            writes()
            killed = self.processes.pop(master)
            killed.kill()
            killed.wait(START_TIMEOUT_S)
        finally:
            self.processes[replica].send_signal(signal.SIGCONT)
        self._node_ok(replica, lambda c: c.execute_command("CLUSTER FAILOVER", "TAKEOVER"))
        self._wait("replica promoted", lambda: self.roles()[replica][0] == "master")
        self.wait_ok()
        return master, replica

    def _master_of(self, key: str) -> int:
        """The port of the master that owns ``key``'s slot."""
        port = next(iter(self.processes))
        slot = self._node_ok(port, lambda c: c.execute_command("CLUSTER KEYSLOT", key))
        ranges = self._node_ok(port, lambda c: c.execute_command("CLUSTER SLOTS"))
        return next(int(r[2][1]) for r in ranges if int(r[0]) <= slot <= int(r[1]))

    def reshard(self, slots: int) -> None:
        """Move ``slots`` slots from one master to another, keys included, while traffic runs."""
        masters = [p for p, (role, _) in self.roles().items() if role == "master"]
        ids = {p: self._node_ok(p, lambda c: c.execute_command("CLUSTER MYID")) for p in masters}
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "reshard",
                f"127.0.0.1:{masters[0]}",
                *("--cluster-from", ids[masters[0]], "--cluster-to", ids[masters[1]]),
                *("--cluster-slots", str(slots), "--cluster-yes"),
                *("--cluster-pipeline", "10"),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.wait_ok()

    def restart_empty(self) -> None:
        """Kill every node and create the cluster again, empty, on the same ports."""
        self.stop()
        self.start()

    def keys(self) -> int:
        """How many keys the masters hold."""
        masters = [p for p, (role, _) in self.roles().items() if role == "master"]
        return sum(self._node_ok(p, lambda c: c.dbsize()) for p in masters)

    def master_ports(self) -> list[int]:
        return [p for p, (role, _) in self.roles().items() if role == "master"]

    def node_info(self, port: int, section: str) -> dict:
        return self._node_ok(port, lambda c: c.info(section))

    def memory_usage(self, org_ids) -> int:
        """``MEMORY USAGE`` summed over the orgs' ``cells`` and ``totals`` hashes."""
        from facets.extensions import make_redis

        client = make_redis(self.url)
        try:
            return sum(
                client.memory_usage(f"facets:{{{org_id}}}:{name}") or 0
                for org_id in org_ids
                for name in ("cells", "totals")
            )
        finally:
            client.close()

    def flushall(self) -> None:
        for port, (role, _) in self.roles().items():
            if role == "master":
                self._node_ok(port, lambda c: c.flushall())

    def stop(self) -> None:
        for proc in self.processes.values():
            proc.kill()
        for proc in self.processes.values():
            proc.wait(START_TIMEOUT_S)
        self.processes.clear()
