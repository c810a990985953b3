"""The `ucmha` console script: bootstrap organizations and tokens, run migrations."""
from __future__ import annotations

import json
import sys

import click
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service import migrate
from service.db import make_engine, make_session_factory, unit_of_work
from service.models import ApiToken, Organization, utcnow
from service.security import hash_token, new_api_token
from service.settings import SettingsError, load_settings


def _factory():  # type: ignore[no-untyped-def]
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    return make_session_factory(make_engine(settings.database_url, hide_parameters=settings.is_production))


def _print(obj: dict) -> None:
    click.echo(json.dumps(obj, default=str))


@click.group()
def main() -> None:
    """ucmha administration."""


@main.group()
def org() -> None:
    """Organizations."""


@org.command("create")
@click.argument("name")
def org_create(name: str) -> None:
    try:
        with unit_of_work(_factory()) as session:
            row = Organization(name=name)
            session.add(row)
            session.flush()
            out = {"id": row.id, "name": row.name}
    except IntegrityError as exc:
        raise click.ClickException(f"organization {name!r} already exists") from exc
    _print(out)


@org.command("list")
def org_list() -> None:
    with unit_of_work(_factory()) as session:
        for row in session.execute(select(Organization).order_by(Organization.id)).scalars():
            _print({"id": row.id, "name": row.name})


@main.group()
def token() -> None:
    """API tokens (shown once, stored hashed)."""


@token.command("create")
@click.option("--org", "org_name", required=True, help="organization name")
@click.option("--role", type=click.Choice(["admin", "support"]), required=True)
@click.option("--name", default=None, help="a label for the token")
def token_create(org_name: str, role: str, name: str | None) -> None:
    secret = new_api_token()
    with unit_of_work(_factory()) as session:
        organization = session.execute(select(Organization).where(Organization.name == org_name)).scalar_one_or_none()
        if organization is None:
            raise click.ClickException(f"no organization named {org_name!r}")
        row = ApiToken(org_id=organization.id, role=role, token_hash=hash_token(secret), prefix=secret[:12], name=name)
        session.add(row)
        session.flush()
        out = {"token": secret, "id": row.id, "org": organization.name, "org_id": organization.id, "role": role}
    _print(out)


@token.command("revoke")
@click.argument("token_id", type=int)
def token_revoke(token_id: int) -> None:
    with unit_of_work(_factory()) as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            raise click.ClickException(f"no token {token_id}")
        row.revoked_at = row.revoked_at or utcnow()
        out = {"id": row.id, "revoked_at": row.revoked_at.isoformat()}
    _print(out)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    migrate.upgrade(load_settings().database_url, revision)


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    migrate.downgrade(load_settings().database_url, revision)


if __name__ == "__main__":
    sys.exit(main())
