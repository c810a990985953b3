"""The fleet's control endpoint: what `ucmha demo failover` and benchmarks talk to.

Unauthenticated by design (it only makes simulated nodes talk), so it listens on loopback unless
told otherwise; never publish it.

- `GET  /_fleet/health`
- `GET  /_fleet/pairs`                         each pair: nodes, who they believe is Active, recent steps
- `POST /_fleet/pairs/{id}/failover`           `{"reason"?: force_switch|network_port_disconnect|heart_beat_lost, "to_mac"?}`
- `POST /_fleet/pairs/{id}/split-brain`
- `POST /_fleet/pairs/{id}/fault`              `{"source": wan_lan|heartbeat, "state": raised|cleared}`
- `POST /_fleet/pairs/{id}/backup`             `{"kind"?: full|external_sync, "result"?: success|failure}`
- `POST /_fleet/pairs/{id}/replay`             `{"steps"?: int}` the guide's switch log, back to back
- `POST /_fleet/load`                          `{"count", "concurrency"?, "type"?}` -> a load summary

Each step answers when its notifications have been answered, with every delivery's HTTP status
and the service's outcome.
"""
from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from .fleet import Fleet
from .node import Delivery

MAX_LOAD = 100_000


def create_control_app(fleet: Fleet) -> Flask:
    app = Flask("ucmha-fleet")

    def body() -> dict[str, Any]:
        raw = request.get_json(silent=True)
        return raw if isinstance(raw, dict) else {}

    def answer(step: Callable[[], list[Delivery]]) -> Any:
        try:
            deliveries = step()
        except LookupError as exc:
            return _problem(404, str(exc))
        except ValueError as exc:
            return _problem(422, str(exc))
        except FutureTimeout:
            return _problem(504, "the simulated nodes did not finish in time")
        return jsonify({"deliveries": [d.as_dict() for d in deliveries],
                        "delivered": all(d.delivered for d in deliveries)})

    @app.get("/_fleet/health")
    def health() -> Any:
        dead = [s["id"] for s in fleet.snapshot() if not s["running"]]
        return (jsonify({"status": "ok", "pairs": len(fleet.runners)}) if not dead else
                _problem(503, f"pair runners stopped: {dead}"))

    @app.get("/_fleet/pairs")
    def pairs() -> Any:
        return jsonify({"api_url": fleet.config.api_url, "org": fleet.config.org, "pairs": fleet.snapshot()})

    @app.post("/_fleet/pairs/<int:pair_id>/failover")
    def failover(pair_id: int) -> Any:
        data = body()
        return answer(lambda: fleet.failover(pair_id, str(data.get("reason") or "force_switch"),
                                             data.get("to_mac") or None))

    @app.post("/_fleet/pairs/<int:pair_id>/split-brain")
    def split_brain(pair_id: int) -> Any:
        return answer(lambda: fleet.split_brain(pair_id))

    @app.post("/_fleet/pairs/<int:pair_id>/fault")
    def fault(pair_id: int) -> Any:
        data = body()
        source, state = data.get("source", "heartbeat"), data.get("state", "raised")
        if source not in ("wan_lan", "heartbeat") or state not in ("raised", "cleared"):
            return _problem(422, "source is wan_lan or heartbeat; state is raised or cleared")
        return answer(lambda: fleet.fault(pair_id, source, state))

    @app.post("/_fleet/pairs/<int:pair_id>/backup")
    def backup(pair_id: int) -> Any:
        data = body()
        kind, result = data.get("kind", "full"), data.get("result", "success")
        if kind not in ("full", "external_sync") or result not in ("success", "failure"):
            return _problem(422, "kind is full or external_sync; result is success or failure")
        return answer(lambda: fleet.backup(pair_id, kind, result))

    @app.post("/_fleet/pairs/<int:pair_id>/replay")
    def replay(pair_id: int) -> Any:
        steps = body().get("steps")
        if steps is not None and (not isinstance(steps, int) or steps < 1):
            return _problem(422, "steps must be a positive integer")
        return answer(lambda: fleet.replay(pair_id, steps))

    @app.post("/_fleet/load")
    def load() -> Any:
        data = body()
        count, concurrency = data.get("count"), data.get("concurrency", 8)
        if not isinstance(count, int) or not 1 <= count <= MAX_LOAD:
            return _problem(422, f"count must be an integer from 1 to {MAX_LOAD}")
        if not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
            return _problem(422, "concurrency must be an integer from 1 to 256")
        try:
            summary = fleet.post_many(count, concurrency, str(data.get("type", "ha.status")))
        except ValueError as exc:
            return _problem(422, str(exc))
        return jsonify(summary.as_dict())

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return _problem(exc.code or 500, exc.description or exc.name)

    return app


def _problem(status: int, detail: str) -> Any:
    response = jsonify({"status": status, "detail": detail})
    response.status_code = status
    response.content_type = "application/problem+json"
    return response
