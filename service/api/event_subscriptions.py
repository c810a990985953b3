"""Event subscriptions: who is told about failovers, split brains, repoints, alarms and procedures."""
from __future__ import annotations

from typing import Any

import marshmallow as ma
from apispec import APISpec
from flask_smorest import Blueprint

from service import subscription_queries
from service.commands import subscriptions as commands
from service.models import EventDelivery, EventSubscription

from .auth import require_token
from .context import command_context, db, principal
from .paging import page_answer
from .schemas.common import PageArgs
from .schemas.event_subscriptions import (EVENT_DATA, DeliveryListArgs, DeliveryPageSchema, DeliverySchema,
                                          SubscriptionCreatedSchema, SubscriptionCreateSchema,
                                          SubscriptionPageSchema, SubscriptionSchema, SubscriptionSecretSchema,
                                          SubscriptionUpdateSchema)

blp = Blueprint("event_subscriptions", __name__, url_prefix="/api/v1/event-subscriptions",
                description="Signed webhooks to your endpoints when a pair fails over, splits, repoints or alarms "
                            "(Standard Webhooks; see the callbacks of the create operation for every payload)")
blp.before_request(require_token)

SIGNING = ("Every delivery is a POST with the event as JSON and the Standard Webhooks headers `webhook-id` (the "
           "event id: the same on every retry, so drop repeats), `webhook-timestamp` and `webhook-signature` "
           "(`v1,<base64 HMAC-SHA256 of id.timestamp.body>`; two signatures separated by a space during the 24 h "
           "after a secret rotation). Answer 2xx within 10 s; anything else is retried with backoff for about a "
           "day (Retry-After is honoured), after which the subscription is disabled and an alarm raised.")


def _callbacks() -> dict[str, Any]:
    return {
        event_type: {"{$request.body#/url}": {"post": {
            "summary": f"{event_type} event",
            "description": SIGNING,
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{_component(event_type)}"}}}},
            "responses": {"2XX": {"description": "received"}},
        }}}
        for event_type in EVENT_DATA
    }


def _component(event_type: str) -> str:
    return "Event_" + event_type.replace(".", "_")


def document_events(spec: APISpec) -> None:
    """The payload of every event type as a component schema (referenced by the callbacks)."""
    for event_type, data in EVENT_DATA.items():
        envelope = type(_component(event_type), (ma.Schema,), {
            "id": ma.fields.String(metadata={"description": "stable event id, also the webhook-id header",
                                             "example": "evt_5f0c1d2e3a4b4c5d8e9fa0b1c2d3e4f5"}),
            "type": ma.fields.String(metadata={"enum": [event_type]}),
            "occurred_at": ma.fields.DateTime(),
            "pair_id": ma.fields.Integer(),
            "data": ma.fields.Nested(data),
        })
        spec.components.schema(_component(event_type), schema=envelope)


@blp.post("")
@blp.arguments(SubscriptionCreateSchema)
@blp.response(201, SubscriptionCreatedSchema)
@blp.doc(callbacks=_callbacks())
def create_subscription(data):
    issued = commands.create(command_context(), data)
    issued.subscription.secret = issued.secret  # type: ignore[attr-defined]
    return issued.subscription


@blp.get("")
@blp.arguments(PageArgs, location="query")
@blp.response(200, SubscriptionPageSchema)
def list_subscriptions(args):
    return page_answer(subscription_queries.subscriptions_stmt(principal().org_id), EventSubscription.id, args)


@blp.get("/<int:subscription_id>")
@blp.response(200, SubscriptionSchema)
def get_subscription(subscription_id):
    return subscription_queries.subscription_by_id(db(), principal().org_id, subscription_id)


@blp.patch("/<int:subscription_id>")
@blp.arguments(SubscriptionUpdateSchema)
@blp.response(200, SubscriptionSchema)
def update_subscription(changes, subscription_id):
    return commands.update(command_context(), subscription_id, changes)


@blp.delete("/<int:subscription_id>")
@blp.response(204)
def delete_subscription(subscription_id):
    commands.delete(command_context(), subscription_id)


@blp.post("/<int:subscription_id>/secret")
@blp.response(200, SubscriptionSecretSchema)
def rotate_secret(subscription_id):
    issued = commands.rotate_secret(command_context(), subscription_id)
    return {"id": issued.subscription.id, "secret": issued.secret,
            "previous_secret_valid_until": issued.subscription.previous_secret_valid_until}


@blp.get("/<int:subscription_id>/deliveries")
@blp.arguments(DeliveryListArgs, location="query")
@blp.response(200, DeliveryPageSchema)
def list_deliveries(args, subscription_id):
    org_id = principal().org_id
    subscription_queries.subscription_by_id(db(), org_id, subscription_id)
    stmt = subscription_queries.deliveries_stmt(org_id, subscription_id, state=args["state"],
                                                event_type=args["type"], pair_id=args["pair_id"])
    return page_answer(stmt, EventDelivery.id, args, descending=True)


@blp.post("/<int:subscription_id>/deliveries/<int:delivery_id>/redeliver")
@blp.response(202, DeliverySchema)
def redeliver(subscription_id, delivery_id):
    return commands.redeliver(command_context(), subscription_id, delivery_id)
