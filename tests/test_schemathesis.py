"""Schemathesis against the app's own OpenAPI document: every operation, both legs.

The org path parameter is fixed to a seeded org and every request carries its owner's API key,
so the generated cases reach the views instead of stopping at 401/404. The seeded project,
sandbox and user ids and the member's email are offered to the generator as dictionaries (half
of the cases use one), so PATCH/DELETE and project membership also run on rows that exist.
Rate limits are raised far above what the test sends, so no 429 (undocumented on mutations)
appears. Bounded: a few dozen examples per operation and phase, no deadline.
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from conftest import World
from schemathesis.checks import CHECKS

ORG = "st-org"
MAX_EXAMPLES = 30
CHECK_NAMES = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "ignored_auth",
    "negative_data_rejection",
)
HIGH_LIMIT = "100000/second"


@pytest.fixture
def app_config(app_config: dict) -> dict:
    """The leg's config with rate limits out of reach."""
    limits = ("FACETS_RATE_LIMIT", "READ_RATE_LIMIT", "MUTATION_RATE_LIMIT")
    return {**app_config, **dict.fromkeys(limits, HIGH_LIMIT)}


@pytest.fixture
def api_schema(app, world: World):
    """The app's OpenAPI document, with a seeded org, its owner's key and known ids."""
    world.org(ORG)
    projects = [world.project(ORG, key) for key in ("alpha", "beta", "gamma")]
    member = world.caller(ORG, "member", projects_=projects[:1])
    outsider = world.caller(None)
    owner = world.caller(ORG, "owner")
    sandboxes = []
    for project_id, state_ in zip(
        [*projects, None, projects[0], projects[1]],
        ["running", "paused", "killed", "running", "running", "paused"],
        strict=True,
    ):
        sandboxes += world.sandboxes(ORG, project_id, state_, n=2)
    ids = [str(i) for i in (*projects, *sandboxes, member.user_id)]
    config = schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {owner.key}"},
            "dictionaries": {
                "ids": {"values": ids},
                "emails": {"values": [member.email, outsider.email]},
            },
            "parameters": {
                "path.org": ORG,
                "path.project_id": {"dictionary": "ids", "probability": 0.5},
                "path.sandbox_id": {"dictionary": "ids", "probability": 0.5},
                "path.user_id": {"dictionary": "ids", "probability": 0.5},
                "query.project_id": {"dictionary": "ids", "probability": 0.5},
                "body.project_id": {"dictionary": "ids", "probability": 0.5},
                "body.email": {"dictionary": "emails", "probability": 0.5},
            },
            "continue-on-failure": True,
            "generation": {"max-examples": MAX_EXAMPLES, "mode": "all"},
            "checks": {
                "enabled": False,
                **{name: {"enabled": True} for name in CHECK_NAMES},
            },
        }
    )
    return schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis.settings(deadline=None, max_examples=MAX_EXAMPLES)
def test_api_conforms_to_its_openapi_document(case):
    """Every response of every operation conforms to the document; bad input is rejected."""
    checks = [check for check in CHECKS.get_all() if check.__name__ in CHECK_NAMES]
    assert len(checks) == len(CHECK_NAMES)
    case.call_and_validate(checks=checks)
