"""Routes of the support dashboard (`/dashboard`)."""
from __future__ import annotations

import hashlib
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from flask import (Blueprint, Response, abort, current_app, flash, g, redirect, render_template, request,
                   url_for)
from markupsafe import Markup
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from service import queries, subscription_queries
from service.api.context import db
from service.api.presenters import pair_view
from service.commands import pairs as commands
from service.commands.context import CommandContext
from service.commands.snapshots import EpochConflict
from service.domain.errors import DomainError, NotFound
from service.domain.mac import InvalidMac, normalize_mac
from service.models import Device, Event, EventDelivery, HaPair, utcnow
from service.text import printable, unstorable

from . import auth, formatting, listing, live, story

blp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates",
                static_folder="static", static_url_path="/static")

READ_METHODS = frozenset({"GET", "HEAD"})
# Endpoints reachable without a session, and POSTs any signed-in role may make.
PUBLIC_ENDPOINTS = frozenset({"dashboard.login", "dashboard.logout", "dashboard.static"})
ANY_ROLE_POSTS = frozenset({"dashboard.login", "dashboard.logout"})
EVENTS_PER_PAGE = 50
# The timeline's filter: value, label (`queries.EVENT_FILTERS`).
EVENT_FILTER_LABELS = (("all", "Everything"), ("failovers", "Failovers"), ("alarms", "Alarms"))
MAX_EVENT_ID = 2**63 - 1  # events.id is a BIGINT
MAX_REASON = 500
STATIC_DIR = Path(__file__).resolve().parent / "static"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


# --- request guard, headers, template context -------------------------------------------------

@blp.before_request
def guard() -> Response | None:
    """Authenticate (cookie re-checked against the token table), then CSRF, then role."""
    endpoint = request.endpoint or ""
    if endpoint == "dashboard.static":
        return None
    had_session = auth.had_session()
    who = auth.current()
    if endpoint not in PUBLIC_ENDPOINTS and who is None:
        if request.method in READ_METHODS:
            if had_session:
                flash("Your session has ended or its token was revoked. Sign in again.", "error")
            return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
        abort(401)
    if request.method not in READ_METHODS:
        if not auth.csrf_ok(request.form.get(auth.CSRF_FIELD)):
            if endpoint == "dashboard.login":
                return None  # the sign-in view explains it on the form itself
            abort(400, description="The form's security token is missing or stale. Reload the page and try again.")
        if endpoint not in ANY_ROLE_POSTS and (who is None or not who.can_write):
            abort(403, description="Your token has the support role, which is read-only.")
    return None


@blp.after_request
def security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@lru_cache(maxsize=16)
def _static_version(filename: str) -> str:
    try:
        return hashlib.sha256((STATIC_DIR / filename).read_bytes()).hexdigest()[:10]
    except OSError:
        return "0"


def static_url(filename: str) -> str:
    return url_for("dashboard.static", filename=filename, v=_static_version(filename))


@blp.record_once
def _render_stored_text(state: Any) -> None:
    """Every value a page shows goes through `_printable`: a page renders whatever is stored."""
    state.app.jinja_env.finalize = _printable


def _printable(value: Any) -> Any:
    """Text as stored may hold lone surrogates (see service/text.py), which no page can encode."""
    if isinstance(value, Markup):
        return Markup(printable(value))
    if isinstance(value, str):
        return printable(value)
    return value


@blp.context_processor
def template_context() -> dict[str, Any]:
    return {"who": auth.current(), "csrf_token": auth.csrf_token, "csrf_field": auth.CSRF_FIELD,
            "fmt": formatting.HELPERS, "static_url": static_url, "now": utcnow(),
            "live_etag": g.get("live_etag"), "live_poll_ms": live.POLL_MS}


def _error_page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("dashboard_error.html", status=status, title=title, message=message), status


@blp.errorhandler(HTTPException)
def http_error(error: HTTPException):  # type: ignore[no-untyped-def]
    if error.code and error.code >= 500:
        current_app.logger.error("dashboard error", exc_info=error)
        return _error_page(500, "Something went wrong", "The server failed to handle the request.")
    messages = {
        400: "The request could not be handled.",
        401: "Sign in first.",
        403: "You are not allowed to do this.",
        404: "There is no such page.",
        405: "This page does not accept that method.",
    }
    message = error.description if error.code in (400, 403) and error.description else messages.get(
        error.code or 400, error.description or "")
    return _error_page(error.code or 400, error.name, message)


@blp.errorhandler(DomainError)
def domain_error(error: DomainError):  # type: ignore[no-untyped-def]
    if isinstance(error, NotFound):
        return _error_page(404, "Not found", error.detail)
    return _error_page(error.http_status, error.title, error.detail)


def _who() -> auth.SignedIn:
    who = auth.current()
    assert who is not None  # the guard let the request through
    return who


# --- sign-in ----------------------------------------------------------------------------------

@blp.route("/login", methods=["GET", "POST"])
def login():  # type: ignore[no-untyped-def]
    target = auth.safe_next(request.values.get("next"), url_for("dashboard.pairs"))
    if request.method == "GET":
        if auth.current() is not None:
            return redirect(target)
        return render_template("dashboard_login.html", next=target, error=None)
    if not auth.csrf_ok(request.form.get(auth.CSRF_FIELD)):
        return render_template("dashboard_login.html", next=target,
                               error="The sign-in form expired. Paste your token again."), 400
    who = auth.sign_in(request.form.get("token", ""))
    if who is None:
        return render_template("dashboard_login.html", next=target,
                               error="That token is not valid or has been revoked."), 401
    current_app.logger.info("dashboard sign-in", extra={"token_id": who.principal.token_id,
                                                         "org_id": who.principal.org_id})
    return redirect(target, code=303)


@blp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    auth.sign_out()
    flash("You are signed out.", "info")
    return redirect(url_for("dashboard.login"), code=303)


# --- the pair list ----------------------------------------------------------------------------

@blp.get("/")
def index():  # type: ignore[no-untyped-def]
    return redirect(url_for("dashboard.pairs", **request.args))


@blp.get("")
def pairs():  # type: ignore[no-untyped-def]
    who = _who()
    filters = listing.parse_filters(request.args)
    try:
        after = listing.decode_cursor(request.args.get("after"))
        before = listing.decode_cursor(request.args.get("before"))
    except listing.BadCursor:
        abort(400, description="That page link is not valid. Start again from the first page.")
    session = db()
    now = utcnow()
    tag = live.etag(live.list_fingerprint(session, who.principal.org_id), who, now)
    unchanged = live.not_modified(tag)
    if unchanged is not None:
        return unchanged
    page = listing.list_page(session, who.principal.org_id, filters, after=after,
                             before=None if after else before, now=now)
    totals = listing.totals(session, who.principal.org_id)
    return live.tagged(render_template("dashboard_pairs.html", page=page, filters=filters, totals=totals,
                                       statuses=listing.STATUSES, page_sizes=listing.PAGE_SIZES,
                                       first_page=after is None and before is None), tag)


# --- one pair ---------------------------------------------------------------------------------

def _node(pair: HaPair, device: Device, site: str, now: Any) -> dict[str, Any]:
    plan = device.plan
    return {
        "site": site,
        "device": device,
        "is_active": device.id == pair.active_device_id,
        "plan": plan,
        "plan_counts": queries.plan_counts(plan, now) if plan is not None else False,
    }


@blp.get("/pairs/<int:pair_id>")
def pair(pair_id: int):  # type: ignore[no-untyped-def]
    who = _who()
    org_id = who.principal.org_id
    session = db()
    before = request.args.get("before", type=int)
    if before is not None and not 0 < before <= MAX_EVENT_ID:
        abort(400, description="That page link is not valid. Start again from the newest events.")
    kind = request.args.get("kind") or "all"
    if kind not in queries.EVENT_FILTERS:
        abort(400, description="Show failovers, alarms or everything.")
    if not 0 < pair_id <= listing.MAX_ID:
        raise NotFound(f"No HA pair {pair_id} in this organization.", code="pair_not_found")
    now = utcnow()
    tag = live.etag(live.pair_fingerprint(session, org_id, pair_id), who, now)
    unchanged = live.not_modified(tag)
    if unchanged is not None:
        return unchanged
    row = queries.pair_by_id(session, org_id, pair_id)  # another organization's pair -> 404
    alarms = queries.open_alarms(session, row.id)
    view = pair_view(row, [a.kind for a in alarms], now)
    events = queries.paginate(session, queries.events_stmt(org_id, row.id, kind), Event.id, EVENTS_PER_PAGE,
                              before, descending=True)
    nodes = [_node(row, row.primary, "Primary", now), _node(row, row.secondary, "Secondary", now)]
    badges = listing.attention_badges(row, [(a.kind, a.detail) for a in alarms])
    facts = story.story_facts(row)
    around = [] if kind == "alarms" else queries.events_of_epochs(session, org_id, row.id,
                                                                  sorted(story.switch_epochs(events.items)))
    lines = story.timeline_lines(events.items, around, facts)
    sites = {row.primary.mac: "Primary", row.secondary.mac: "Secondary"}
    return live.tagged(render_template(
        "dashboard_pair.html", pair=row, view=view, nodes=nodes, alarms=alarms,
        alarm_labels={a.kind: listing.alarm_label(a.kind, sites)[0] for a in alarms},
        events=events, lines=lines, badges=badges, older=before is not None, kind=kind,
        event_filters=EVENT_FILTER_LABELS, firmware_differs=row.primary.firmware != row.secondary.firmware,
        deliveries=subscription_queries.recent_pair_deliveries(session, org_id, row.id)), tag)


# --- event subscriptions --------------------------------------------------------------------------

DELIVERIES_PER_PAGE = 25
DELIVERY_STATES = ("pending", "failed", "delivered")
HEALTH_WINDOW = timedelta(hours=24)


@blp.get("/subscriptions")
def subscriptions():  # type: ignore[no-untyped-def]
    """Who is told when a pair fails over, and whether it is keeping up."""
    who = _who()
    now = utcnow()
    rows = subscription_queries.subscription_health(db(), who.principal.org_id, now - HEALTH_WINDOW)
    return render_template("dashboard_subscriptions.html", rows=rows)


@blp.get("/subscriptions/<int:subscription_id>")
def subscription(subscription_id: int):  # type: ignore[no-untyped-def]
    who = _who()
    org_id = who.principal.org_id
    session = db()
    sub = subscription_queries.subscription_by_id(session, org_id, subscription_id)  # another org's -> 404
    state = request.args.get("state") or None
    if state is not None and state not in DELIVERY_STATES:
        abort(400, description="Show pending, failed or delivered deliveries, or all of them.")
    before = request.args.get("before", type=int)
    if before is not None and not 0 < before <= MAX_EVENT_ID:
        abort(400, description="That page link is not valid. Start again from the newest deliveries.")
    deliveries = queries.paginate(session, subscription_queries.deliveries_stmt(org_id, sub.id, state=state),
                                  EventDelivery.id, DELIVERIES_PER_PAGE, before, descending=True)
    return render_template("dashboard_subscription.html", sub=sub, deliveries=deliveries, state=state,
                           states=DELIVERY_STATES, older=before is not None)


def _command_context() -> CommandContext:
    """Like `service.api.context.command_context()`, from the dashboard's principal."""
    who = _who()
    ext = current_app.extensions["ucmha"]
    return CommandContext(session=db(), settings=ext.settings, org_id=who.principal.org_id,
                          actor=f"token:{who.principal.token_id}", enqueue=ext.enqueue)


def _require_pair(pair_id: int) -> None:
    """404 for a pair that is not the caller's, before anything else is looked at."""
    if not 0 < pair_id <= listing.MAX_ID:
        raise NotFound(f"No HA pair {pair_id} in this organization.", code="pair_not_found")
    found = db().execute(
        select(HaPair.id).where(HaPair.id == pair_id, HaPair.org_id == _who().principal.org_id)
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"No HA pair {pair_id} in this organization.", code="pair_not_found")


def _back(pair_id: int) -> Response:
    return redirect(url_for("dashboard.pair", pair_id=pair_id), code=303)


def _refused(pair_id: int, message: str) -> Response:
    """Back to the pair with why nothing was done; the command's partial work is rolled back."""
    db().rollback()
    flash(message, "error")
    return _back(pair_id)


@blp.post("/pairs/<int:pair_id>/resolve")
def resolve(pair_id: int):  # type: ignore[no-untyped-def]
    _require_pair(pair_id)
    reason = " ".join((request.form.get("reason") or "").split())
    try:
        active_mac = normalize_mac(request.form.get("active_mac") or "")
    except InvalidMac:
        flash("Choose which node is to be Active.", "error")
        return _back(pair_id)
    if not reason:
        flash("Give a reason for the ruling; it is kept in the pair's timeline.", "error")
        return _back(pair_id)
    if len(reason) > MAX_REASON:
        flash(f"Keep the reason under {MAX_REASON} characters.", "error")
        return _back(pair_id)
    if unstorable(reason):  # the API's rule (service/text.py); the form decoder already replaced bad UTF-8
        flash("The reason holds characters that cannot be stored (NUL). Type it again.", "error")
        return _back(pair_id)
    try:
        result = commands.resolve(_command_context(), pair_id, active_mac, reason)
    except NotFound:
        raise
    except DomainError as exc:
        return _refused(pair_id, f"Not resolved: {exc.detail}")
    except EpochConflict:
        return _refused(pair_id, "The pair changed while this was being applied. Check its state and try again.")
    current_app.logger.info("dashboard resolve", extra={"pair_id": pair_id, "active_mac": active_mac})
    flash(f"Resolved: {result.active.mac} is Active now (epoch {result.epoch}); the upstream is being repointed.",
          "success")
    return _back(pair_id)


@blp.post("/pairs/<int:pair_id>/resync")
def resync(pair_id: int):  # type: ignore[no-untyped-def]
    _require_pair(pair_id)
    try:
        result = commands.resync(_command_context(), pair_id)
    except NotFound:
        raise
    except DomainError as exc:
        return _refused(pair_id, f"Resync not requested: {exc.detail}")
    pushed = [listing.TARGET_LABELS.get(s.target, s.target) for s in result.syncs if s.state == "pending"]
    if pushed:
        flash(f"Resync requested: {' and '.join(pushed)} will be pushed upstream again.", "success")
    else:
        flash("Resync recorded; nothing is owed upstream (no domain or binding, or a rule blocks it).", "info")
    return _back(pair_id)
