"""The upstream cloud simulator: a Flask app implementing the API of spec/api.md
("The upstream cloud APIs the workers call") plus test-only `/_sim/*` endpoints.

Envelope: every upstream answer, the token endpoint included, is
`{"retCode": int, "msg": str, "data": {...}}` with HTTP 200; a non-zero retCode is an error
(codes in `simulator.codes`). Only an unknown endpoint (HTTP 404) and injected faults use
other HTTP statuses.

State lives in this process's memory: run it as one process (werkzeug threaded, or gunicorn
with a single worker and any number of threads), never several gunicorn workers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from flask import Flask, Response, jsonify, request

from simulator import codes, payloads
from simulator.auth import (
    TokenStore,
    expected_signature,
    hashed_password,
    secure_equals,
    signature_matches,
)
from simulator.drop import drop_connection
from simulator.faults import FaultInjector, FaultRule, FaultRuleError, parse_rules
from simulator.receiver import ConfigError, Receivers
from simulator.settings import SimSettings
from simulator.state import Result, SimState

TOKEN_ENDPOINT = "oauth/token"


class Simulator:
    """Everything one simulator instance owns; the Flask views are thin wrappers over it."""

    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self.state = SimState()
        self.tokens = TokenStore(settings.token_ttl_s, settings.refresh_token_ttl_s)
        self.faults = FaultInjector(settings.random_seed)
        self.receivers = Receivers()
        self.actions: dict[str, Callable[[dict[str, Any]], Result]] = {
            "ucmrc/domain/bind": lambda b: self.state.bind_domain(
                payloads.domain(b), payloads.mac(b)
            ),
            "ucmrc/domain/unbind": lambda b: self.state.unbind_domain(payloads.domain(b)),
            "ucmrc/connection/switch": lambda b: self.state.switch_connection(
                payloads.domain(b), payloads.mac(b), payloads.epoch(b)
            ),
            "ucmrc/connection/detail": lambda b: self.state.connection_detail(payloads.domain(b)),
            "im/binding/switch": lambda b: self.state.switch_binding(
                payloads.binding_id(b), payloads.mac(b), payloads.epoch(b)
            ),
            "im/binding/detail": lambda b: self.state.binding_detail(payloads.binding_id(b)),
        }

    def reset(self) -> None:
        self.faults.clear()
        self.tokens.clear()
        self.state.reset()
        self.receivers.reset()

    # --- request handling with faults around it ---------------------------------------------

    def serve(self, endpoint: str, handler: Callable[[], Result]) -> Response:
        decision = self.faults.decide(endpoint)
        if decision.latency_s:
            self.faults.sleep(decision.latency_s)
        fault = decision.fault
        if fault is not None and not fault.after_effect:
            self.state.count_call(endpoint, f"fault:{fault.kind}")
            return self._fault_response(fault, None)
        result = handler()
        if fault is not None:
            label = f"fault:{fault.kind}:after_{codes.name(result.ret_code)}"
            self.state.count_call(endpoint, label)
            return self._fault_response(fault, result)
        self.state.count_call(endpoint, codes.name(result.ret_code))
        return _envelope_response(result)

    def _fault_response(self, fault: FaultRule, effect: Result | None) -> Response:
        if fault.kind == "http_5xx":
            return Response("simulated upstream failure\n", fault.status, mimetype="text/plain")
        if fault.kind == "http_429":
            resp = Response("simulated rate limit\n", fault.status, mimetype="text/plain")
            resp.headers["Retry-After"] = _retry_after_value(fault)
            return resp
        if fault.kind == "timeout":
            sleep_s = fault.sleep_s
            self.faults.sleep(self.settings.timeout_fault_sleep_s if sleep_s is None else sleep_s)
            if effect is not None:
                return _envelope_response(effect)
            return Response("simulated gateway timeout\n", 504, mimetype="text/plain")
        if fault.kind == "drop":
            if drop_connection(request.environ):
                return Response(b"", 200)
            return Response("drop fault unsupported by this server\n", 500, mimetype="text/plain")
        # business_error
        return _envelope_response(Result(fault.ret_code, fault.msg))

    # --- the upstream API --------------------------------------------------------------------

    def token(self) -> Result:
        form = request.form
        s = self.settings
        if not (
            secure_equals(form.get("client_id", ""), s.client_id)
            and secure_equals(form.get("client_secret", ""), s.client_secret)
        ):
            return Result(codes.BAD_CREDENTIALS, "invalid client")
        grant_type = form.get("grant_type", "")
        if grant_type == "password":
            username_ok = secure_equals(form.get("username", ""), s.username)
            password_ok = signature_matches(form.get("password", ""), hashed_password(s.password))
            if not (username_ok and password_ok):
                return Result(codes.BAD_CREDENTIALS, "invalid username or password")
        elif grant_type == "refresh_token":
            owner = self.tokens.redeem_refresh(form.get("refresh_token", ""))
            if owner != s.client_id:
                return Result(codes.REFRESH_TOKEN_INVALID, "refresh token invalid or expired")
        else:
            return Result(codes.BAD_REQUEST, "grant_type must be password or refresh_token")
        self.state.count_grant(grant_type)
        issued = self.tokens.issue(s.client_id)
        return Result.ok(
            {
                "access_token": issued.access_token,
                "refresh_token": issued.refresh_token,
                "expires_in": issued.expires_in,
                "token_type": "bearer",
            }
        )

    def api_call(self, endpoint: str) -> Result:
        action = self.actions.get(endpoint)
        if action is None:
            return Result(codes.NOT_FOUND, f"unknown endpoint {endpoint}", http_status=404)
        raw = request.get_data(cache=True)
        refused = self._check_signed_request(raw)
        if refused is not None:
            return refused
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return Result(codes.BAD_REQUEST, "body is not valid JSON")
        if not isinstance(body, dict):
            return Result(codes.BAD_REQUEST, "body must be a JSON object")
        try:
            return action(body)
        except payloads.PayloadError as exc:
            return Result(codes.BAD_REQUEST, str(exc))

    def _check_signed_request(self, raw_body: bytes) -> Result | None:
        args = request.args
        client_id = self.tokens.client_of(args.get("access_token", ""))
        if client_id is None:
            return Result(codes.TOKEN_INVALID, "access token invalid or expired")
        if "client_secret" in args:
            return Result(codes.BAD_REQUEST, "client_secret must never be sent")
        try:
            timestamp_ms = int(args.get("timestamp", ""))
        except ValueError:
            return Result(codes.TIMESTAMP_SKEW, "timestamp missing or not in milliseconds")
        if abs(time.time() * 1000 - timestamp_ms) > self.settings.max_clock_skew_s * 1000:
            return Result(codes.TIMESTAMP_SKEW, "timestamp too far from server time")
        params = [
            (k, v)
            for k, v in args.items(multi=True)
            if k not in ("signature", "client_id", "client_secret")
        ]
        # The signed text includes the client's id and secret, which the server knows from
        # the token rather than from the query.
        params += [("client_id", client_id), ("client_secret", self.settings.client_secret)]
        if not signature_matches(args.get("signature", ""), expected_signature(params, raw_body)):
            return Result(codes.BAD_SIGNATURE, "signature mismatch")
        return None


def _envelope_response(result: Result) -> Response:
    resp = jsonify(result.envelope())
    resp.status_code = result.http_status
    return resp


def _retry_after_value(fault: FaultRule) -> str:
    if fault.retry_after_format == "http_date":
        return formatdate(time.time() + fault.retry_after_s, usegmt=True)
    seconds = fault.retry_after_s
    return str(int(seconds)) if seconds == int(seconds) else str(seconds)


def _json_or_none() -> Any:
    return request.get_json(silent=True)


def create_app(settings: SimSettings | None = None) -> Flask:
    sim = Simulator(settings or SimSettings.from_env())
    app = Flask("ucmha-simulator")
    app.extensions["ucmha_simulator"] = sim

    @app.post("/oapi/oauth/token")
    def oauth_token() -> Response:
        return sim.serve(TOKEN_ENDPOINT, sim.token)

    @app.post("/oapi/v1.0.0/<path:endpoint>")
    def oapi(endpoint: str) -> Response:
        return sim.serve(endpoint, lambda: sim.api_call(endpoint))

    # --- an event subscriber's endpoint (see simulator.receiver) ------------------------------

    @app.post("/receiver/<name>")
    def receiver(name: str) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, extra = sim.receivers.receive(name, headers, request.get_data())
        resp = Response(b"" if status == 204 else b"{}", status, mimetype="application/json")
        resp.headers.update(extra)
        return resp

    @app.put("/_sim/receivers/<name>")
    def sim_receiver_configure(name: str) -> tuple[Response, int] | Response:
        try:
            return jsonify(sim.receivers.configure(name, _json_or_none()))
        except ConfigError as exc:
            return jsonify({"error": str(exc)}), 400

    @app.get("/_sim/receivers/<name>")
    def sim_receiver_view(name: str) -> Response:
        return jsonify(sim.receivers.view(name))

    # --- test-only inspection and control; unauthenticated by design ------------------------

    @app.get("/_sim/health")
    def sim_health() -> Response:
        return jsonify({"ok": True})

    @app.get("/_sim/state")
    def sim_state() -> Response:
        return jsonify({**sim.state.snapshot(), "faults": sim.faults.rules()})

    @app.post("/_sim/reset")
    def sim_reset() -> Response:
        sim.reset()
        return jsonify({"ok": True})

    @app.get("/_sim/faults")
    def sim_faults_list() -> Response:
        return jsonify(sim.faults.rules())

    @app.put("/_sim/faults")
    def sim_faults_set() -> tuple[Response, int] | Response:
        try:
            rules = parse_rules(_json_or_none())
        except FaultRuleError as exc:
            return jsonify({"error": str(exc)}), 400
        sim.faults.set_rules(rules)
        return jsonify(sim.faults.rules())

    @app.delete("/_sim/faults")
    def sim_faults_clear() -> Response:
        sim.faults.clear()
        return jsonify([])

    @app.post("/_sim/tokens/expire")
    def sim_tokens_expire() -> Response:
        body = _json_or_none()
        include_refresh = isinstance(body, dict) and body.get("refresh_tokens") is True
        sim.tokens.expire_all(include_refresh=include_refresh)
        return jsonify({"ok": True, "refresh_tokens_expired": include_refresh})

    return app
