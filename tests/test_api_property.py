"""Property: after any sequence of API writes, facets and list agree with a brute-force count.

Each example gets a fresh org in the same database (``api_model.Scenario``); operations name
sandboxes, projects and callers by index into what exists so far, so Hypothesis can shrink a
failing sequence. Checks are interleaved with the writes (and always follow each one's first
facets read), so both the cold recount and the counts kept warm by the after-commit hook are
compared.
"""

from __future__ import annotations

from api_model import ROLES, Scenario, operation, view
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(operation, min_size=6, max_size=30),
    views=st.lists(view, min_size=1, max_size=4),
)
@example(  # a project deleted under a warm cache: its sandboxes must reach "no project"
    ops=[("create", 0, 0, "running"), ("create", 1, 0, "paused"), ("delete_project", 0, 0)],
    views=[(2, [], None, 1)],
)
def test_facets_and_pages_equal_brute_force_after_any_writes(app, client, world, ops, views):
    with app.app_context():
        scenario = Scenario(client, world)
        scenario.check(0, [], None, 50)
        for op in ops:
            scenario.apply(op)
        for who in range(len(ROLES)):
            scenario.check(who, [], None, 50)
        for who, states, project_slot, limit in views:
            scenario.check(who, states, project_slot, limit)
