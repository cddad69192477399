"""What a soak observed, and the rules that make it fail."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from soak.traffic import Call

KILL_WINDOW_S = 0.05


@dataclass
class Report:
    duration_s: float
    faults: list[tuple[float, str]] = field(default_factory=list)
    kill_times: list[float] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    verified: int = 0
    unverifiable: int = 0
    not_modified: int = 0
    mismatches: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    acknowledged: int = 0
    uncertain: int = 0
    unacknowledged_creates: int = 0
    lost: list[str] = field(default_factory=list)
    verify_rc: int | None = None
    verify_output: str = ""
    workers_after: int = 0

    def server_errors(self) -> list[Call]:
        """5xx answers, less the 504 the facets document."""
        return [
            c
            for c in self.calls
            if c.status is not None
            and c.status >= 500
            and not (c.status == 504 and c.path.endswith("/facets"))
        ]

    def unexplained_transport_errors(self) -> list[Call]:
        """Requests with no answer that were not in flight when a worker was killed."""
        return [
            c
            for c in self.calls
            if c.status is None
            and not any(
                c.started <= t + KILL_WINDOW_S and c.ended >= t - KILL_WINDOW_S
                for t in self.kill_times
            )
        ]

    def failures(self) -> list[str]:
        out = list(self.problems)
        out += [f"server error {c.status} on {c.method} {c.path}" for c in self.server_errors()]
        out += [
            f"no answer ({c.error}) for {c.method} {c.path}, not during a worker kill"
            for c in self.unexplained_transport_errors()
        ]
        if self.verify_rc != 0:
            out.append(f"flask facets verify exited {self.verify_rc}: {self.verify_output}")
        out += self.lost
        out += [f"facets differ from SQL at their version: {m}" for m in self.mismatches[:3]]
        if len(self.mismatches) > 3:
            out.append(f"... and {len(self.mismatches) - 3} more facets answers differed")
        if self.verified == 0:
            out.append("no facets answer could be verified")
        return out

    def summary(self) -> str:
        statuses = Counter(c.status for c in self.calls)
        methods = Counter(c.method for c in self.calls)
        facets = self.verified + self.unverifiable
        return "\n".join(
            [
                f"== fault soak: {self.duration_s:.0f} s of traffic ==",
                "faults: " + ", ".join(f"{what} at {at:.1f}s" for at, what in self.faults),
                f"requests: {len(self.calls)} ({dict(methods)}); statuses: "
                + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=str)),
                f"facets answers checked against SQL: {self.verified} verified, "
                f"{self.unverifiable} unverifiable (version moved), of {facets}; "
                f"{self.not_modified} were 304s; {len(self.mismatches)} differed",
                f"mutations: {self.acknowledged} acknowledged, {len(self.lost)} lost, "
                f"{self.uncertain} sandboxes uncertain, "
                f"{self.unacknowledged_creates} creates unanswered",
                f"flask facets verify: exit {self.verify_rc}: {self.verify_output.strip()}",
                f"workers after: {self.workers_after}",
                f"verdict: {'FAILED' if self.failures() else 'passed'}",
            ]
        )
