"""Admin commands: ``flask db``, ``orgs``, ``users``, ``members``, ``tokens``.

Each prints its result as the last line of stdout; a mistake the command finds exits 1 and a
usage mistake (click's: a bad option or argument) exits 2, each with one line on stderr.
Every write goes through the unit of work.
"""

from __future__ import annotations

from datetime import timedelta

import click
from flask import Flask, current_app

from facets.cli.demo import demo_command
from facets.cli.errors import OneLineGroup

# What the commands use (alembic, the models, the extensions) is imported in their bodies, so
# that ``flask --help`` does not load it. models.Role's values (tests/test_cli_startup.py).
ROLES = ("owner", "admin", "member")

db_cli = OneLineGroup("db", help="Database schema (Alembic migrations).")
orgs_cli = OneLineGroup("orgs", help="Organizations.")
users_cli = OneLineGroup("users", help="Users.")
members_cli = OneLineGroup("members", help="Org memberships.")
tokens_cli = OneLineGroup("tokens", help="API keys.")


def _database_url() -> str:
    from facets.config import normalize_database_url

    return normalize_database_url(current_app.config["DATABASE_URL"])


# Keys may live long, but their expiry must stay a date (datetime ends at year 9999).
MAX_KEY_LIFETIME_S = 100 * 366 * 24 * 3600


def run_migration(step, revision: str) -> None:
    """Run one Alembic step; a revision it cannot resolve is a CLI error, not a traceback."""
    from alembic.util import CommandError

    try:
        step(_database_url(), revision)
    except CommandError as exc:
        raise click.ClickException(" ".join(str(exc).split())) from None


def run_service(action, **kwargs):
    """Run one service function in its own unit of work; domain errors become CLI errors."""
    from facets.extensions import state
    from models import DomainError

    try:
        with state().unit_of_work() as uow:
            return action(uow, **kwargs)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from None


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from models import migrate

    run_migration(migrate.upgrade, revision)
    click.echo(f"database at {revision}")


@db_cli.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' for an empty schema)."""
    from models import migrate

    run_migration(migrate.downgrade, revision)
    click.echo(f"database at {revision}")


@db_cli.command("current")
def db_current() -> None:
    """Show the applied revision."""
    from models import migrate

    migrate.current(_database_url())


@orgs_cli.command("create")
@click.argument("slug")
@click.option("--name", help="Display name (default: the slug).")
def orgs_create(slug: str, name: str | None) -> None:
    """Create an org; prints its id."""
    from models.services import accounts

    click.echo(run_service(accounts.create_org, slug=slug, name=name).id)


@users_cli.command("create")
@click.argument("email")
def users_create(email: str) -> None:
    """Create a user; prints its id."""
    from models.services import accounts

    click.echo(run_service(accounts.create_user, email=email).id)


@members_cli.command("add")
@click.argument("slug")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), required=True)
def members_add(slug: str, email: str, role: str) -> None:
    """Make EMAIL a member of org SLUG with a role (or change their role)."""
    from models import Role
    from models.services import accounts

    run_service(accounts.add_member, org_slug=slug, email=email, role=Role(role))
    click.echo(f"{email} is {role} of {slug}")


@tokens_cli.command("create")
@click.argument("email")
@click.option(
    "--expires-in",
    type=click.IntRange(min=1, max=MAX_KEY_LIFETIME_S),
    help="Lifetime in seconds (at most 100 years).",
)
def tokens_create(email: str, expires_in: int | None) -> None:
    """Issue an API key for EMAIL; prints the key (shown once, stored hashed)."""
    from models.services import accounts

    lifetime = timedelta(seconds=expires_in) if expires_in else None
    click.echo(run_service(accounts.create_api_key, email=email, expires_in=lifetime).key)


@users_cli.command("revoke-sessions")
@click.argument("email")
@click.option("--api-keys", is_flag=True, help="Revoke every API key of the user too.")
def users_revoke_sessions(email: str, api_keys: bool) -> None:
    """End every JWT of EMAIL issued before now (and with --api-keys every API key)."""
    from models.services import accounts

    done = run_service(accounts.revoke_sessions, email=email, api_keys=api_keys)
    keys = f" and {done.api_keys} API keys" if api_keys else ""
    click.echo(f"revoked the JWTs of {email} issued up to {done.at.isoformat()}{keys}")


@tokens_cli.command("revoke")
@click.argument("key")
def tokens_revoke(key: str) -> None:
    """Revoke an API key, given whole or by its public prefix (sk_ and 8 hex digits)."""
    from models.services import accounts

    prefix = accounts.api_key_prefix(key)
    run_service(accounts.revoke_api_key, prefix=prefix)
    click.echo(f"revoked {prefix}")


def init_app(app: Flask) -> None:
    for group in (db_cli, orgs_cli, users_cli, members_cli, tokens_cli, demo_command):
        app.cli.add_command(group)
