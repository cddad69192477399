"""CPU time spent per request under load, by process, read from Linux's ``/proc``.

The HTTP leg is CPU-bound on a small machine (gunicorn, PostgreSQL, Redis and the load
generator share its cores), so a req/s ratio is, to first order, the inverse ratio of the CPU
each request costs the whole machine. ``CpuMeter`` says where that CPU goes: the gunicorn
master and its workers ("app"), every PostgreSQL and Redis server process, the load
generator (the bench's own finished child processes, from ``getrusage``), the whole machine
(``/proc/stat``, which also counts anything else running meanwhile) and the time the
hypervisor gave this VM's CPUs to someone else (``steal``: a round with much of it was slowed
down from outside). A process that starts during a measure counts from zero; one that exits
during it loses its share (a PostgreSQL backend of a new pooled connection, say), so the parts
need not add up exactly.
Where ``/proc`` is missing (not Linux) nothing is measured and every figure is None.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

PROC = Path("/proc")
PARTS = ("app", "postgres", "redis", "load_generator", "machine", "steal")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # /proc's unit of CPU time, per second


def _process_part(pid: str, app_pids: set[str]) -> tuple[str | None, float]:
    """The part a process belongs to (None: none of ours) and its CPU seconds so far."""
    stat = (PROC / pid / "stat").read_text()
    comm, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
    values = fields.split()
    # After the command: state, ppid, ... utime and stime are fields 14 and 15 of stat(5).
    ppid, cpu = values[1], (int(values[11]) + int(values[12])) / CLOCK_TICKS
    if pid in app_pids or ppid in app_pids:
        return "app", cpu
    if comm.startswith("postgres"):
        return "postgres", cpu
    if comm.startswith("redis-server"):
        return "redis", cpu
    return None, cpu


def _machine_s() -> tuple[float, float]:
    """CPU seconds all cores spent busy, and stolen (``/proc/stat``'s first line: busy is all
    but idle, iowait and steal)."""
    values = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    steal = values[7] if len(values) > 7 else 0
    return (sum(values[:7]) - values[3] - values[4]) / CLOCK_TICKS, steal / CLOCK_TICKS


def children_s() -> float:
    """CPU seconds (user + sys) of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """Snapshots of CPU seconds by part; ``per_request`` turns two of them into us/request."""

    def __init__(self, app_pid: int | None) -> None:
        """``app_pid``: the process whose own and whose children's CPU is the app's (None:
        no app)."""
        self.app_pids = set() if app_pid is None else {str(app_pid)}
        self.available = (PROC / "stat").exists()

    def snapshot(self) -> dict | None:
        if not self.available:
            return None
        processes: dict[str, tuple[str, float]] = {}
        for entry in PROC.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                part, cpu = _process_part(entry.name, self.app_pids)
            except (OSError, ValueError, IndexError):  # it exited meanwhile
                continue
            if part is not None:
                processes[entry.name] = (part, cpu)
        machine, steal = _machine_s()
        return {
            "processes": processes,
            "load_generator": children_s(),
            "machine": machine,
            "steal": steal,
        }

    @staticmethod
    def per_request(before: dict | None, after: dict | None, requests: int | None) -> dict:
        """Microseconds of CPU per request of each part between two snapshots."""
        if before is None or after is None or not requests:
            return dict.fromkeys(PARTS)
        spent = dict.fromkeys(PARTS, 0.0)
        for pid, (part, cpu) in after["processes"].items():
            earlier = before["processes"].get(pid)
            spent[part] += cpu - (earlier[1] if earlier and earlier[0] == part else 0.0)
        for part in ("load_generator", "machine", "steal"):
            spent[part] = after[part] - before[part]
        return {part: round(seconds * 1e6 / requests, 1) for part, seconds in spent.items()}
