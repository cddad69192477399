"""Every facets answer of a traffic phase, judged against SQL once the phase is over.

The dashboards log each answer they get (``Answer``: the org, the status, its
``X-Facets-Version``, its ETag and, for a ``200``, the body; a ``304``'s body is the one its
ETag named earlier in the phase). When a phase's clients have stopped nothing writes any more,
so each org's SQL counts are those of its last version: every answer of that version is
compared with the body ``soak.oracle`` builds from SQL, independently of the read path. An
answer of an earlier version was overtaken by a write of the same phase and cannot be recounted
afterwards (SQL keeps no history): those are counted as ``overtaken``, and a phase without
writes has none. A wrong answer is kept, in full, in the phase's results.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from sqlalchemy import create_engine, select

from models import Org
from soak.oracle import Oracle
from soak.traffic import Caller

OWNER = Caller("owner", "", uuid.UUID(int=0), sees_all=True)  # the dashboards' view


@dataclass(frozen=True)
class Answer:
    slug: str
    status: int  # 200 or 304
    version: int
    etag: str
    body: bytes | None  # a 200's


def judge(database_url: str, answers: list[Answer]) -> dict:
    """How the phase's answers compare with SQL: checked, overtaken, wrong (with examples)."""
    engine = create_engine(database_url, isolation_level="REPEATABLE READ", pool_size=2)
    checked = overtaken = 0
    wrong: list[dict] = []
    try:
        with engine.connect() as conn:
            org_ids = dict(conn.execute(select(Org.slug, Org.id)).all())
        by_org: dict[str, list[Answer]] = {}
        for answer in answers:
            by_org.setdefault(answer.slug, []).append(answer)
        for slug, logged in by_org.items():
            version, expected = Oracle(None, org_ids[slug], engine=engine).facets(OWNER, (), None)
            named = {a.etag: a.body for a in logged if a.status == 200}
            for answer in logged:
                if answer.version != version:
                    overtaken += 1
                    continue
                body = answer.body if answer.status == 200 else named.get(answer.etag)
                if body is not None and json.loads(body) == expected:
                    checked += 1
                else:
                    wrong.append(
                        {
                            "org": slug,
                            "status": answer.status,
                            "version": answer.version,
                            "body": body.decode() if body else None,
                            "expected": expected,
                        }
                    )
    finally:
        engine.dispose()
    return {"checked": checked, "overtaken": overtaken, "wrong": len(wrong), "examples": wrong[:5]}
