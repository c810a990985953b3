from __future__ import annotations

from flask import jsonify, url_for
from flask_smorest import Blueprint

from service import pair_pages, queries
from service.commands import pairs as commands
from service.models import Event, utcnow

from .auth import require_token
from .context import command_context, db, principal
from .paging import page_answer
from .presenters import pair_json, pair_view, pair_view_now
from .problems import LOCATION_HEADER
from .schemas.common import page_body
from .schemas.pairs import (CloudImSettingsSchema, CustomDomainSchema, EventListArgs, EventPageSchema,
                            PairCreateSchema,
                            PairListArgs, PairPageSchema, PairSchema, PreflightSchema,
                            ResolveSchema)

blp = Blueprint("pairs", __name__, url_prefix="/api/v1/ha-pairs", description="HA pairs")
blp.before_request(require_token)


@blp.post("/preflight")
@blp.arguments(PairCreateSchema)
@blp.response(200, PreflightSchema)
def preflight(data):
    checks = commands.run_preflight(command_context(), data)
    return {"ok": all(c.ok for c in checks), "checks": [c.as_dict() for c in checks]}


@blp.post("")
@blp.arguments(PairCreateSchema)
@blp.response(201, PairSchema, headers=LOCATION_HEADER)
def create_pair(data):
    pair = commands.create_pair(command_context(), data)
    return pair_view_now(pair), {"Location": url_for("pairs.get_pair", pair_id=pair.id)}


@blp.get("")
@blp.arguments(PairListArgs, location="query")
@blp.response(200, PairPageSchema)
def list_pairs(args):
    org_id = principal().org_id
    stmt = queries.pair_list_stmt(org_id, status=args["status"], active_site=args["active_site"],
                                  needs_attention=args["needs_attention"], q=args["q"],
                                  after_id=args["after_id"])
    page = pair_pages.pair_page(db(), stmt, args["limit"], args["after_id"])
    now = utcnow()
    # Serialized here rather than by PairPageSchema (which still documents it): see pair_json.
    return jsonify(page_body([pair_json(pair_view(p, page.alarm_kinds.get(p.id, []), now))  # type: ignore[arg-type]
                              for p in page.items], page.next_id))


@blp.get("/<int:pair_id>")
@blp.response(200, PairSchema)
def get_pair(pair_id):
    return pair_view_now(queries.pair_by_id(db(), principal().org_id, pair_id))


@blp.put("/<int:pair_id>/custom-domain")
@blp.arguments(CustomDomainSchema)
@blp.response(200, PairSchema)
def put_custom_domain(data, pair_id):
    return pair_view_now(commands.set_custom_domain(command_context(), pair_id, data["domain"]))


@blp.delete("/<int:pair_id>/custom-domain")
@blp.response(200, PairSchema)
def delete_custom_domain(pair_id):
    return pair_view_now(commands.delete_custom_domain(command_context(), pair_id))


@blp.put("/<int:pair_id>/cloud-im")
@blp.arguments(CloudImSettingsSchema)
@blp.response(200, PairSchema)
def put_cloud_im(data, pair_id):
    return pair_view_now(commands.set_cloud_im(command_context(), pair_id, data["enabled"], data["server"]))


@blp.post("/<int:pair_id>/resolve")
@blp.arguments(ResolveSchema)
@blp.response(200, PairSchema)
def resolve(data, pair_id):
    return pair_view_now(commands.resolve(command_context(), pair_id, data["active_mac"], data["reason"]))


@blp.post("/<int:pair_id>/resync")
@blp.response(202, PairSchema)
def resync(pair_id):
    return pair_view_now(commands.resync(command_context(), pair_id))


@blp.get("/<int:pair_id>/events")
@blp.arguments(EventListArgs, location="query")
@blp.response(200, EventPageSchema)
def events(args, pair_id):
    """The pair's timeline, newest first; `kind` narrows it to failovers or alarms."""
    queries.pair_by_id(db(), principal().org_id, pair_id)
    return page_answer(queries.events_stmt(principal().org_id, pair_id, args["kind"]), Event.id, args,
                       descending=True)
