"""Keyset pagination of the sandbox list: every sandbox once, ties and concurrent writes too."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from itsdangerous import URLSafeSerializer

from facets.api.cursor import CURSOR_SALT
from models.services import sandboxes as sandbox_service

BASE = "/api/v1/org/acme/sandboxes"


@pytest.fixture
def owner(world):
    world.org("acme")
    return world.caller("acme", "owner")


def walk(client, caller, query: str = "", limit: int = 5, between=None) -> list[dict]:
    """Every page from the first until ``next_cursor`` is null; ``between`` runs after each."""
    seen, cursor = [], None
    while True:
        url = f"{BASE}?limit={limit}{'&' + query if query else ''}"
        response = client.get(url + (f"&cursor={cursor}" if cursor else ""), headers=caller.headers)
        assert response.status_code == 200, response.json
        page = response.json
        assert len(page["sandboxes"]) <= limit
        seen.extend(page["sandboxes"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
        if between is not None:
            between()


def keys(items: list[dict]) -> list[tuple[str, str]]:
    return [(item["created_at"], item["id"]) for item in items]


@pytest.fixture
def frozen_clock(monkeypatch):
    """Every sandbox created from now on gets the same ``created_at``."""
    instant = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    monkeypatch.setattr(sandbox_service, "utcnow", lambda: instant)
    return instant


def test_pages_cover_every_sandbox_once_newest_first(client, world, owner):
    made = {str(i) for i in world.sandboxes("acme", None, "running", 23)}
    seen = walk(client, owner, limit=5)
    assert len(seen) == 23
    assert {s["id"] for s in seen} == made
    ordered = sorted(keys(seen), key=lambda k: (datetime.fromisoformat(k[0]), k[1]), reverse=True)
    assert [k[0] for k in keys(seen)] == [k[0] for k in ordered]


def test_the_last_full_page_has_no_cursor(client, world, owner):
    world.sandboxes("acme", None, "running", 10)
    first = client.get(f"{BASE}?limit=10", headers=owner.headers).json
    assert len(first["sandboxes"]) == 10
    assert first["next_cursor"] is None


def test_created_at_ties_are_broken_by_id(client, world, owner, frozen_clock):
    made = {str(i) for i in world.sandboxes("acme", None, "paused", 17)}
    seen = walk(client, owner, limit=4)
    assert len(seen) == 17
    assert {s["id"] for s in seen} == made
    assert {s["created_at"] for s in seen} == {frozen_clock.isoformat()}


@pytest.mark.parametrize("tied", [False, True])
def test_inserts_between_pages_neither_repeat_nor_hide_a_sandbox(
    client, world, owner, monkeypatch, tied
):
    if tied:  # new sandboxes share created_at with the ones already paged over
        instant = datetime(2024, 5, 1, tzinfo=UTC)
        monkeypatch.setattr(sandbox_service, "utcnow", lambda: instant)
    before = {str(i) for i in world.sandboxes("acme", None, "running", 20)}
    inserted: set[str] = set()

    def insert_some():
        inserted.update(str(i) for i in world.sandboxes("acme", None, "running", 3))

    seen = [s["id"] for s in walk(client, owner, limit=4, between=insert_some)]
    assert len(seen) == len(set(seen))
    assert before <= set(seen)
    assert set(seen) <= before | inserted


def test_deletes_and_state_changes_between_pages_skip_nothing_else(client, world, owner):
    made = [str(i) for i in world.sandboxes("acme", None, "running", 12)]
    doomed = iter(made[:3])  # the oldest: not yet paged over when they go

    def change_some():
        client.delete(f"{BASE}/{next(doomed)}", headers=owner.headers)

    seen = [s["id"] for s in walk(client, owner, limit=3, between=change_some)]
    assert len(seen) == len(set(seen))
    assert set(made[3:]) <= set(seen)


def test_filters_apply_on_every_page(client, world, owner):
    running = {str(i) for i in world.sandboxes("acme", None, "running", 7)}
    world.sandboxes("acme", None, "paused", 6)
    seen = walk(client, owner, query="state=running", limit=2)
    assert {s["id"] for s in seen} == running
    assert len(seen) == 7


def test_concurrent_writer_never_causes_duplicates_or_losses(app, client, world, owner):
    before = {str(i) for i in world.sandboxes("acme", None, "running", 40)}
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        try:
            while not stop.is_set():
                world.sandboxes("acme", None, "paused", 2)
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = [s["id"] for s in walk(client, owner, limit=3)]
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert len(seen) == len(set(seen))
    assert before <= set(seen)


GOOD_KEY = ["2024-05-01T00:00:00+00:00", "0" * 32]


@pytest.mark.parametrize(
    "secret, salt, payload",
    [
        (None, None, "garbage"),
        (None, None, "WyIyMDI0Il0.bad-signature"),
        ("another-secret", CURSOR_SALT, GOOD_KEY),
        ("", "another-salt", GOOD_KEY),
        ("", CURSOR_SALT, ["not a date", "0" * 32]),
        ("", CURSOR_SALT, ["2024-05-01T00:00:00", "0" * 32]),
        ("", CURSOR_SALT, ["2024-05-01T00:00:00+00:00", "not-hex"]),
        ("", CURSOR_SALT, ["2024-05-01T00:00:00+00:00", 7]),
        ("", CURSOR_SALT, {"created_at": "2024-05-01T00:00:00+00:00"}),
        ("", CURSOR_SALT, 3),
    ],
)
def test_an_invalid_or_tampered_cursor_is_400(app, client, owner, secret, salt, payload):
    """``secret`` None: ``payload`` is the cursor; "": signed with the app's own secret."""
    cursor = payload
    if secret is not None:
        signer = URLSafeSerializer(secret or app.config["JWT_SECRET"], salt=salt)
        cursor = signer.dumps(payload)
    response = client.get(f"{BASE}?cursor={cursor}", headers=owner.headers)
    assert response.status_code == 400
    assert response.json["type"] == "invalid_error"
    assert response.json["code"] == 400


def test_a_tampered_real_cursor_is_400(client, world, owner):
    world.sandboxes("acme", None, "running", 3)
    cursor = client.get(f"{BASE}?limit=1", headers=owner.headers).json["next_cursor"]
    payload, _, signature = cursor.rpartition(".")
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + signature
    response = client.get(f"{BASE}?cursor={flipped}", headers=owner.headers)
    assert response.status_code == 400
    assert response.json["type"] == "invalid_error"
