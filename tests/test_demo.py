"""``flask demo``: skewed demo data created once, and a working key for its owner."""

from __future__ import annotations

from sqlalchemy import func, select

from facets.cli.demo import MEMBER_EMAIL, OWNER_EMAIL, SANDBOX_COUNT
from facets.extensions import state
from models import ApiKey, Membership, Org, Project, ProjectMember, Sandbox, User
from models.services import accounts

FACETS = "/api/v1/org/demo/sandboxes/facets"


def row_counts(app) -> dict[str, int]:
    """How many rows each demo table holds, API keys aside."""
    with app.app_context(), state().db.read_session() as session:
        return {
            model.__name__: session.scalar(select(func.count()).select_from(model))
            for model in (Org, User, Membership, Project, ProjectMember, Sandbox)
        }


def run_demo(runner) -> str:
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def test_demo_is_idempotent_and_prints_a_working_owner_key(app, client, runner):
    first_key = run_demo(runner)
    counts = row_counts(app)
    assert counts["Sandbox"] == SANDBOX_COUNT
    assert counts["Project"] == 8
    second_key = run_demo(runner)
    assert row_counts(app) == counts
    assert second_key != first_key
    for key in (first_key, second_key):
        assert key.startswith("sk_")
        response = client.get(FACETS, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
        assert sum(entry["count"] for entry in response.json["states"]) == SANDBOX_COUNT
    with app.app_context(), state().db.read_session() as session:
        owner_keys = session.scalar(
            select(func.count()).select_from(ApiKey).join(User).where(User.email == OWNER_EMAIL)
        )
    assert owner_keys == 2


def test_demo_data_is_skewed_with_an_empty_project_and_loose_sandboxes(app, client, runner):
    key = run_demo(runner)
    with app.app_context(), state().db.read_session() as session:
        per_project = dict(
            session.execute(
                select(Project.key, func.count(Sandbox.id))
                .outerjoin(Sandbox, Sandbox.project_id == Project.id)
                .group_by(Project.key)
            ).all()
        )
        loose = session.scalar(
            select(func.count()).select_from(Sandbox).where(Sandbox.project_id.is_(None))
        )
        states = set(session.scalars(select(Sandbox.state).distinct()))
    assert sorted(per_project.values()).count(0) == 1
    non_empty = [n for n in per_project.values() if n]
    assert max(non_empty) > 10 * min(non_empty)
    assert 0 < loose < SANDBOX_COUNT / 5
    assert states == {"running", "paused", "killed"}
    projects = client.get("/api/v1/org/demo/projects", headers={"Authorization": f"Bearer {key}"})
    assert len(projects.json["projects"]) == 8


def test_demo_member_sees_two_projects(app, client, runner):
    run_demo(runner)
    with app.app_context(), state().unit_of_work() as uow:
        member_key = accounts.create_api_key(uow, email=MEMBER_EMAIL).key
    headers = {"Authorization": f"Bearer {member_key}"}
    projects = client.get("/api/v1/org/demo/projects", headers=headers).json["projects"]
    assert len(projects) == 2
    facets = client.get(FACETS, headers=headers).json
    assert {p["project_key"] for p in facets["projects"]} == {p["key"] for p in projects}
    assert sum(entry["count"] for entry in facets["states"]) < SANDBOX_COUNT


def test_an_org_demo_made_by_hand_is_a_one_line_error(runner):
    assert runner.invoke(args=["orgs", "create", "demo"]).exit_code == 0
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = result.stderr.splitlines()
    assert OWNER_EMAIL in line and "not made by 'flask demo'" in line
