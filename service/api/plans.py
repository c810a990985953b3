from __future__ import annotations

from flask import url_for
from flask_smorest import Blueprint

from service import queries
from service.commands import plans as commands
from service.models import Plan, utcnow

from .auth import require_token
from .context import command_context, db, principal
from .problems import LOCATION_HEADER
from .paging import page_answer
from .schemas.plans import PlanCreateSchema, PlanListArgs, PlanPageSchema, PlanSchema, PlanUpdateSchema

blp = Blueprint("plans", __name__, url_prefix="/api/v1/plans", description="UCMRC subscription plans")
blp.before_request(require_token)


def _view(plan: Plan) -> Plan:
    plan.counts_for_ha = queries.plan_counts(plan, utcnow())  # type: ignore[attr-defined]
    return plan


@blp.post("")
@blp.arguments(PlanCreateSchema)
@blp.response(201, PlanSchema, headers=LOCATION_HEADER)
def create_plan(data):
    plan = _view(commands.create_plan(command_context(), data))
    return plan, {"Location": url_for("plans.get_plan", plan_id=plan.id)}


@blp.get("")
@blp.arguments(PlanListArgs, location="query")
@blp.response(200, PlanPageSchema)
def list_plans(args):
    return page_answer(queries.plan_list_stmt(principal().org_id, args["device_mac"]), Plan.id, args,
                       view=lambda plans: [_view(p) for p in plans])


@blp.get("/<int:plan_id>")
@blp.response(200, PlanSchema)
def get_plan(plan_id):
    return _view(queries.plan_by_id(db(), principal().org_id, plan_id))


@blp.patch("/<int:plan_id>")
@blp.arguments(PlanUpdateSchema)
@blp.response(200, PlanSchema)
def update_plan(changes, plan_id):
    return _view(commands.update_plan(command_context(), plan_id, changes))


@blp.delete("/<int:plan_id>")
@blp.response(204)
def delete_plan(plan_id):
    commands.delete_plan(command_context(), plan_id)
