"""The `ucmha` console script: organizations and tokens, the schema, support look-ups, the demo.

It reads the same settings as the service (so it works from any directory: see
`settings.default_var_dir`), calls the command and query layers like the API does, and prints
JSON or, for the support commands without `--json`, a table (`--json` is one JSON document; a list
is also offered as JSON Lines with `--jsonl`, one object per line, for streaming).
Every failure is one line on stderr and exit status 1; `--traceback` shows the details.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, Callable, Iterable

import click
import requests
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service import migrate, queries
from service.api.presenters import pair_view
from service.api.schemas.pairs import EventSchema, PairSchema
from service.queries import EVENT_FILTERS
from service.commands import tenancy
from service.commands.context import CommandContext
from service.dashboard import story
from service.db import make_engine, make_session_factory, unit_of_work
from service.domain import alarms as alarm_kinds
from service.domain.errors import DomainError
from service.domain.targets import SYNC_TARGETS
from service.models import ApiToken, Event, HaPair, utcnow
from service.settings import Settings, SettingsError, load_settings
from service.text import printable

DEFAULT_FLEET_URL = "http://127.0.0.1:8091"
FAILOVER_REASONS = ("force_switch", "network_port_disconnect", "heart_beat_lost")


class Runtime:
    """Settings and the database, opened on first use (so `--help` needs neither)."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._factory: sessionmaker[Session] | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    def sessions(self) -> sessionmaker[Session]:
        if self._factory is None:
            self._factory = make_session_factory(
                make_engine(self.settings.database_url, hide_parameters=self.settings.is_production))
        return self._factory

    def context(self, session: Session, org_id: int | None = None) -> CommandContext:
        def no_enqueue(task: str, args: Any) -> None:
            # Nothing the CLI does owes upstream work; were it to, the sweeper would pick it up.
            return None
        return CommandContext(session=session, settings=self.settings, org_id=org_id, actor="cli",
                              enqueue=no_enqueue)

    def database_label(self) -> str:
        try:
            return make_url(self.settings.database_url).render_as_string(hide_password=True)
        except (SettingsError, ValueError):
            return "the database"


def _one_line(text: str) -> str:
    first = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
    return first[:300]


def _database_problem(runtime: Runtime, exc: SQLAlchemyError) -> str:
    reason = _one_line(str(getattr(exc, "orig", None) or exc))
    hint = ""
    if "no such table" in reason or "does not exist" in reason:
        hint = " (the schema is missing: run `ucmha db upgrade`)"
    return f"database {runtime.database_label()}: {reason}{hint}"


class Cli(click.Group):
    """Turns every failure into one line: the person on call needs the reason, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # the CLI's outer boundary: anything else is reported, not dumped
            if ctx.params.get("traceback"):
                raise
            raise click.ClickException(_describe(ctx.ensure_object(Runtime), exc)) from exc


def _describe(runtime: Runtime, exc: Exception) -> str:
    if isinstance(exc, SettingsError):
        return f"configuration: {exc}"
    if isinstance(exc, DomainError):
        return exc.detail
    if isinstance(exc, SQLAlchemyError):
        return _database_problem(runtime, exc)
    if isinstance(exc, requests.RequestException):
        return f"cannot reach {getattr(exc.request, 'url', 'the fleet')}: {type(exc).__name__}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or type(exc).__name__}: {exc.filename or ''}".rstrip(": ")
    return f"unexpected {type(exc).__name__}: {_one_line(str(exc))} (run with --traceback for details)"


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, default=str))


def _echo_list(items: list[Any], output: str) -> None:
    """``json``: one JSON array; ``jsonl``: one object per line."""
    if output == "jsonl":
        for item in items:
            _echo_json(item)
    else:
        _echo_json(items)


def list_output(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--json`` (one JSON array) and ``--jsonl`` (JSON Lines) for a command that lists; a table
    without either."""
    func = click.option("--jsonl", "output", flag_value="jsonl", help="JSON Lines: one object per line")(func)
    return click.option("--json", "output", flag_value="json", help="one JSON array instead of a table")(func)


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def _table(headers: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
    cells = [tuple("-" if v is None or v == "" else str(v) for v in row) for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for row in [headers, *cells]:
        click.echo(printable("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip()))


@click.group(cls=Cli)
@click.option("--traceback", is_flag=True, help="show the full traceback of an unexpected error")
@click.pass_context
def main(ctx: click.Context, traceback: bool) -> None:
    """ucmha administration and support.

    Reads the service's settings from the environment; without DATABASE_URL it uses the embedded
    SQLite database in UCMHA_VAR_DIR (default: the checkout's var/, or ~/.local/state/ucmha).
    """
    ctx.ensure_object(Runtime)


pass_runtime = click.make_pass_decorator(Runtime, ensure=True)


def _in_transaction(runtime: Runtime, work: Callable[[Session], Any]) -> Any:
    with unit_of_work(runtime.sessions()) as session:
        return work(session)


# --- organizations and tokens -------------------------------------------------------------------

@main.group()
def org() -> None:
    """Organizations."""


@org.command("create")
@click.argument("name")
@pass_runtime
def org_create(runtime: Runtime, name: str) -> None:
    def work(session: Session) -> dict[str, Any]:
        row = tenancy.create_organization(runtime.context(session), name)
        return {"id": row.id, "name": row.name}
    _echo_json(_in_transaction(runtime, work))


@org.command("list")
@pass_runtime
def org_list(runtime: Runtime) -> None:
    for row in _in_transaction(runtime, lambda s: [{"id": o.id, "name": o.name} for o in queries.organizations(s)]):
        _echo_json(row)


@main.group()
def token() -> None:
    """API tokens (shown once, stored hashed)."""


@token.command("create")
@click.option("--org", "org_name", required=True, help="organization name")
@click.option("--role", type=click.Choice(tenancy.ROLES), required=True)
@click.option("--name", default=None, help="a label for the token")
@pass_runtime
def token_create(runtime: Runtime, org_name: str, role: str, name: str | None) -> None:
    def work(session: Session) -> dict[str, Any]:
        issued = tenancy.create_token(runtime.context(session), org_name, role, name)
        return {"token": issued.secret, "id": issued.row.id, "org": org_name, "org_id": issued.row.org_id,
                "role": role}
    _echo_json(_in_transaction(runtime, work))


@token.command("revoke")
@click.argument("token_id", type=int)
@pass_runtime
def token_revoke(runtime: Runtime, token_id: int) -> None:
    def work(session: Session) -> dict[str, Any]:
        row = tenancy.revoke_token(runtime.context(session), token_id)
        return {"id": row.id, "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None}
    _echo_json(_in_transaction(runtime, work))


def _token_view(row: ApiToken) -> dict[str, Any]:
    return {"id": row.id, "org": row.organization.name, "role": row.role, "name": row.name, "prefix": row.prefix,
            "created_at": row.created_at.isoformat(),
            "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None}


@token.command("list")
@click.option("--org", "org_name", default=None, help="only this organization's tokens")
@list_output
@pass_runtime
def token_list(runtime: Runtime, org_name: str | None, output: str | None) -> None:
    """Every token: id, organization, role, created, last used, revoked (never the token)."""
    def work(session: Session) -> list[dict[str, Any]]:
        org_id = tenancy.organization_by_name(session, org_name).id if org_name else None
        return [_token_view(row) for row in queries.api_tokens(session, org_id)]
    views = _in_transaction(runtime, work)
    if output:
        _echo_list(views, output)
        return
    _table(("ID", "ORG", "ROLE", "NAME", "PREFIX", "CREATED", "LAST USED", "REVOKED"),
           ((v["id"], v["org"], v["role"], v["name"], v["prefix"] + "…", _when(v["created_at"]),
             _when(v["last_used_at"]), _when(v["revoked_at"])) for v in views))


# --- support look-ups ---------------------------------------------------------------------------

def _org_id(session: Session, org_name: str | None) -> int:
    if org_name:
        return tenancy.organization_by_name(session, org_name).id
    orgs = queries.organizations(session)
    if len(orgs) == 1:
        return orgs[0].id
    if not orgs:
        raise click.ClickException("there is no organization yet (ucmha org create NAME)")
    raise click.ClickException("several organizations: pass --org NAME (one of: "
                               + ", ".join(o.name for o in orgs[:10]) + ("…" if len(orgs) > 10 else "") + ")")


org_option = click.option("--org", "org_name", default=None,
                          help="organization name (may be left out when there is only one)")
json_option = click.option("--json", "as_json", is_flag=True, help="JSON instead of a table")


def _pair_json(session: Session, pair: HaPair, alarms: dict[int, list[str]]) -> dict[str, Any]:
    return PairSchema().dump(pair_view(pair, alarms.get(pair.id, []), utcnow()))


@main.group()
def pairs() -> None:
    """HA pairs, as support sees them (read only)."""


@pairs.command("list")
@org_option
@click.option("--needs-attention", is_flag=True, help="only pairs that need attention")
@click.option("--status", type=click.Choice(("paired", "standalone", "split_brain", "replacing", "dissolved")))
@click.option("--search", "q", default=None, help="MAC (any spelling or part), name, site or domain")
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True)
@list_output
@pass_runtime
def pairs_list(runtime: Runtime, org_name: str | None, needs_attention: bool, status: str | None, q: str | None,
               limit: int, output: str | None) -> None:
    def work(session: Session) -> list[dict[str, Any]]:
        stmt = queries.pair_list_stmt(_org_id(session, org_name), status=status, q=q,
                                      needs_attention=True if needs_attention else None)
        page = queries.paginate(session, stmt, HaPair.id, limit, None)
        alarms = queries.open_alarm_kinds(session, [p.id for p in page.items])
        return [_pair_json(session, p, alarms) for p in page.items]
    views = _in_transaction(runtime, work)
    if output:
        _echo_list(views, output)
        return
    _table(("ID", "STATUS", "ACTIVE", "SITE", "EPOCH", "REMOTECONNECT", "CLOUD IM", "ALARMS", "DOMAIN", "ATTENTION"),
           ((v["id"], v["status"], v["active_mac"], _site(v), v["epoch"], v["sync"]["remote_connect"]["state"],
             v["sync"]["cloud_im"]["state"], v["alarms_open"], v["custom_domain"], _attention(v))
            for v in views))


def _site(view: dict[str, Any]) -> str:
    return "primary" if view["active_mac"] == view["primary_mac"] else "secondary"


def _attention(view: dict[str, Any]) -> str:
    """The pair's attention reasons in words (the JSON keeps the API's codes)."""
    sites = {view["primary_mac"]: "Primary", view["secondary_mac"]: "Secondary"}
    return ", ".join(alarm_kinds.words(reason, sites) for reason in view.get("attention") or [])


@pairs.command("show")
@click.argument("pair_id", type=int)
@org_option
@json_option
@pass_runtime
def pairs_show(runtime: Runtime, pair_id: int, org_name: str | None, as_json: bool) -> None:
    def work(session: Session) -> dict[str, Any]:
        pair = queries.pair_by_id(session, _org_id(session, org_name), pair_id)
        return _pair_json(session, pair, queries.open_alarm_kinds(session, [pair.id]))
    view = _in_transaction(runtime, work)
    if as_json:
        _echo_json(view)
        return
    last = view.get("last_switch")
    lines = [
        ("pair", f"{view['id']}  {view['status']}  epoch {view['epoch']}"),
        ("primary", view["primary_mac"] + ("  (Active)" if view["active_mac"] == view["primary_mac"] else "")),
        ("secondary", view["secondary_mac"] + ("  (Active)" if view["active_mac"] == view["secondary_mac"] else "")),
        ("custom domain", view["custom_domain"] or "-"),
        ("cloud im", (f"{view['cloud_im']['server']}, bound to {view['cloud_im']['bound_mac'] or '-'}"
                      if view["cloud_im"]["enabled"] else "off")),
        ("last switch", f"{_when(last['at'])} to {last['to_mac']} ({last['reason']})" if last else "-"),
        ("alarms open", str(view["alarms_open"])),
        ("attention", _attention(view) or "-"),
    ]
    for target in SYNC_TARGETS:
        sync = view["sync"][target]
        text = f"{sync['state']}: desired {sync['desired_mac'] or '-'}, applied {sync['applied_mac'] or '-'}"
        text += f" at epoch {sync['applied_epoch']}" if sync["applied_epoch"] is not None else ""
        text += f", {sync['attempts']} attempts, last error: {sync['last_error']}" if sync["last_error"] else ""
        lines.append((f"sync {target}", text))
    for violation in view.get("violations") or []:
        lines.append(("violation", f"{violation.get('rule')} {violation.get('code')}: {violation.get('detail')}"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(printable(f"{key.ljust(width)}  {value}"))


@pairs.command("events")
@click.argument("pair_id", type=int)
@org_option
@click.option("--kind", type=click.Choice(EVENT_FILTERS), default="all", show_default=True,
              help="failovers: one switch event per failover; alarms: alarms raised and cleared")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@list_output
@pass_runtime
def pairs_events(runtime: Runtime, pair_id: int, org_name: str | None, kind: str, limit: int,
                 output: str | None) -> None:
    """The pair's timeline, newest first: in words, a failover on one line, repeats once with a count
    (--json/--jsonl: the API's events)."""
    def work(session: Session) -> list[Any]:
        org_id = _org_id(session, org_name)
        pair = queries.pair_by_id(session, org_id, pair_id)
        page = queries.paginate(session, queries.events_stmt(org_id, pair_id, kind=kind), Event.id, limit, None,
                                descending=True)
        if output:
            return [EventSchema().dump(event) for event in page.items]
        around = [] if kind == "alarms" else queries.events_of_epochs(session, org_id, pair_id,
                                                                      sorted(story.switch_epochs(page.items)))
        return story.timeline_lines(page.items, around, story.story_facts(pair))
    result = _in_transaction(runtime, work)
    if output:
        _echo_list(result, output)
        return
    _table(("AT", "WHAT", "EPOCH", "REPEATS", "WHAT HAPPENED"),
           ((_span(line), line.label, line.epoch, f"x{line.count}" if line.count > 1 else "",
             f"{line.text} ({line.outcome})" if line.outcome else line.text) for line in result))


def _span(line: story.Line) -> str:
    if line.count > 1 and line.first_at is not None:
        return f"{_when(line.first_at)} to {_when(line.at)[11:]}"
    return _when(line.at)


# --- the demo fleet -----------------------------------------------------------------------------

@main.group()
def demo() -> None:
    """The simulated node fleet that `python3 dev.py run` starts (simulator/fleet)."""


@demo.command("failover")
@click.argument("pair_id", type=int)
@click.option("--reason", type=click.Choice(FAILOVER_REASONS), default="force_switch", show_default=True)
@click.option("--to", "to_mac", default=None, help="the node that takes over (default: the Standby)")
@click.option("--fleet", "fleet_url", envvar="UCMHA_FLEET_URL", default=DEFAULT_FLEET_URL, show_default=True,
              help="the fleet's control endpoint")
@json_option
def demo_failover(pair_id: int, reason: str, to_mac: str | None, fleet_url: str, as_json: bool) -> None:
    """Make the simulated nodes of PAIR_ID fail over now; prints what the service answered."""
    if reason == "heart_beat_lost":
        # On stderr: --json keeps stdout one document.
        click.echo("The Active goes silent; its peer claims once the pair's heartbeat timeout (7 s unless the pair "
                   "sets another) has passed since the Active last showed itself alive. Waiting for that claim…",
                   err=True)
    try:
        resp = requests.post(f"{fleet_url.rstrip('/')}/_fleet/pairs/{pair_id}/failover",
                             json={"reason": reason, "to_mac": to_mac}, timeout=90)
    except requests.ConnectionError as exc:
        raise click.ClickException(f"no node fleet at {fleet_url} (is `python3 dev.py run` running?)") from exc
    try:
        answer = resp.json()
    except ValueError:
        answer = {"detail": resp.text[:200]}
    if resp.status_code != 200:
        raise click.ClickException(f"fleet: {answer.get('detail') or resp.status_code}")
    if as_json:
        _echo_json(answer)
    else:
        for d in answer.get("deliveries", []):
            click.echo(f"{d['type']:<16} from {d['mac']}  HTTP {d['status']}  {d.get('outcome') or d.get('error') or ''}")
    if not answer.get("delivered"):
        sys.exit(1)


# --- schema -------------------------------------------------------------------------------------

@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_runtime
def db_upgrade(runtime: Runtime, revision: str) -> None:
    migrate.upgrade(runtime.settings.database_url, revision)


@db.command("downgrade")
@click.argument("revision")
@pass_runtime
def db_downgrade(runtime: Runtime, revision: str) -> None:
    migrate.downgrade(runtime.settings.database_url, revision)


if __name__ == "__main__":
    sys.exit(main())
