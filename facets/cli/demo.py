"""``flask demo``: an org full of realistic, skewed demo data, created once, and a key to see it."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

import click
from flask.cli import with_appcontext

from facets.cli.errors import OneLineCommand

if TYPE_CHECKING:  # the models are imported when the command runs: ``flask --help`` is light
    from models.uow import UnitOfWork

DEMO_ORG = "demo"
OWNER_EMAIL = "demo@example.com"
MEMBER_EMAIL = "dev@example.com"
SANDBOX_COUNT = 3000
SEED = 20240501

# (key, name, weight): a few big projects, a long tail, one left empty.
PROJECTS = (
    ("checkout", "Checkout API", 34),
    ("search", "Search Indexer", 22),
    ("ml-train", "ML Training", 15),
    ("etl", "Data Pipeline", 10),
    ("mobile", "Mobile Backend", 6),
    ("billing", "Billing Service", 4),
    ("www", "Marketing Website", 2),
    ("docs", "Docs Preview", 0),
)
NO_PROJECT_WEIGHT = 7
MEMBER_PROJECTS = ("mobile", "www")
STATE_WEIGHTS = {"running": 25, "paused": 15, "killed": 60}


def _user(uow: UnitOfWork, email: str) -> None:
    from models.services import accounts

    if accounts.find_user(uow, email=email) is None:
        accounts.create_user(uow, email=email)


def seed(uow: UnitOfWork) -> int:
    """Create the demo org and its data; returns the number of sandboxes created (0 if present)."""
    from sqlalchemy import select

    from models import Org, Role
    from models.services import accounts, projects, sandboxes
    from models.services.common import lock_access

    if uow.session.scalar(select(Org.id).where(Org.slug == DEMO_ORG)) is not None:
        return 0
    accounts.create_org(uow, slug=DEMO_ORG, name="Demo Inc.")
    for email, role in ((OWNER_EMAIL, Role.OWNER), (MEMBER_EMAIL, Role.MEMBER)):
        _user(uow, email)
        accounts.add_member(uow, org_slug=DEMO_ORG, email=email, role=role)
    owner = accounts.get_user(uow, email=OWNER_EMAIL)
    access = lock_access(uow, org_slug=DEMO_ORG, user_id=owner.id)
    # keeping the rows referenced keeps them in the session's identity map: no re-reads
    made = {
        key: projects.create_project(uow, access=access, key=key, name=name)
        for key, name, _ in PROJECTS
    }
    for key in MEMBER_PROJECTS:
        projects.add_project_member(uow, access=access, project_id=made[key].id, email=MEMBER_EMAIL)

    rng = random.Random(SEED)
    homes = [made[key].id for key, _, _ in PROJECTS] + [None]
    home_weights = [weight for _, _, weight in PROJECTS] + [NO_PROJECT_WEIGHT]
    to_kill = []
    for _ in range(SANDBOX_COUNT):
        (project_id,) = rng.choices(homes, home_weights)
        (final,) = rng.choices(list(STATE_WEIGHTS), list(STATE_WEIGHTS.values()))
        initial = "running" if final == "killed" else final
        sandbox = sandboxes.create_sandbox(uow, access=access, project_id=project_id, state=initial)
        if final != initial:
            to_kill.append(sandbox)
    # killed only after every create: the first kill flushes all inserts as one batch, and the
    # held rows are then found in the identity map instead of being read back one by one
    for sandbox in to_kill:
        sandboxes.update_sandbox(uow, access=access, sandbox_id=sandbox.id, state="killed")
    return SANDBOX_COUNT


@click.command("demo", cls=OneLineCommand)
@with_appcontext
def demo_command() -> None:
    """Create the demo org (once) and print an API key for its owner as the last line."""
    from facets.extensions import state
    from models import DomainError
    from models.services import accounts

    started = time.monotonic()
    with state().unit_of_work() as uow:
        created = seed(uow)
    if created:
        took = time.monotonic() - started
        summary = f"{len(PROJECTS)} projects, {created} sandboxes"
        click.echo(f"created org '{DEMO_ORG}': {summary} ({took:.1f}s)")
    else:
        click.echo(f"org '{DEMO_ORG}' already exists; left as it is")
    click.echo(f"owner {OWNER_EMAIL}; member {MEMBER_EMAIL} sees {', '.join(MEMBER_PROJECTS)}")
    try:
        with state().unit_of_work() as uow:
            click.echo(accounts.create_api_key(uow, email=OWNER_EMAIL).key)
    except DomainError as exc:  # an org 'demo' made by hand, without the demo's owner
        hint = f"org '{DEMO_ORG}' was not made by 'flask demo'"
        raise click.ClickException(f"{exc.detail} ({hint})") from None
