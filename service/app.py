"""The Flask app factory."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import swagger_ui_bundle
from flask import Flask, request, send_from_directory
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from sqlalchemy.orm import Session, sessionmaker

from service import dashboard
from service.api import auth, devices, event_subscriptions, health, lifecycle, pairs, plans, routing, webhooks
from service.api.context import close_db, drain_unread_body
from service.api.converters import IdConverter, MacConverter, idconverter_schema, reject_invalid_path_values
from service.api.schemas.common import MAC_PATTERN, nul_free_pattern, null_only_alternative
from service.api.problems import ProblemApi, problem
from service.broker import celery_enqueue
from service.commands.tenancy import TokenUseRecorder
from service.db import make_engine, make_session_factory
from service.observability import ratelimit, web
from service.observability.logging import configure_logging
from service.settings import Settings, load_settings

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass
class Extension:
    settings: Settings
    session_factory: sessionmaker[Session]
    enqueue: Callable[[str, Sequence[object]], None]
    broker_check: Callable[[], str]
    token_use: TokenUseRecorder | None = None


def create_app(settings: Settings | None = None, *, session_factory: sessionmaker[Session] | None = None,
               enqueue: Callable[[str, Sequence[object]], None] | None = None,
               broker_check: Callable[[], str] | None = None) -> Flask:
    settings = settings or load_settings()
    configure_logging(settings)
    app = Flask(__name__)
    app.session_interface = CookieSessions()
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.api_max_bytes,
        API_TITLE="ucmha",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/api/v1/docs/assets/",
        API_SPEC_OPTIONS={
            "info": {"description": "Keeps Grandstream UCM6300 HA pairs reachable through GDMS RemoteConnect "
                                    "and Cloud IM. Errors are RFC 9457 problem details."},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
        },
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
    )
    app.url_map.converters["mac"] = MacConverter
    app.url_map.converters["int"] = IdConverter  # a malformed id is named in the 404, see converters
    app.url_value_preprocessor(reject_invalid_path_values)
    routing.install(app)
    owns_engine = session_factory is None
    if session_factory is None:
        engine = make_engine(settings.database_url, hide_parameters=settings.is_production,
                             ping_every_checkout=False)  # see service.db.PING_AFTER_IDLE_S
        session_factory = make_session_factory(engine)
    if enqueue is None or broker_check is None:
        default_enqueue, default_check = celery_enqueue(settings)
        enqueue = enqueue or default_enqueue
        broker_check = broker_check or default_check
    app.extensions["ucmha"] = Extension(settings, session_factory, enqueue, broker_check,
                                        # its own thread only with a pool of our own (see the class)
                                        TokenUseRecorder(session_factory, background=owns_engine))
    # First hooks: request id, access log, metrics; /metrics.
    web.init_app(app, settings, session_factory, problem=problem)
    app.teardown_appcontext(close_db)
    app.teardown_request(drain_unread_body)
    app.before_request(_require_json_body)
    app.before_request(_require_patch_body)
    app.after_request(_no_content_no_type)

    api = ProblemApi(app)
    api.ma_plugin.converter.add_attribute_function(nul_free_pattern)
    api.ma_plugin.converter.add_attribute_function(null_only_alternative)
    api.register_converter(IdConverter, idconverter_schema)
    api.register_converter(MacConverter, lambda _converter: {"type": "string", "pattern": MAC_PATTERN})
    for module in (devices, plans, pairs, lifecycle, webhooks, event_subscriptions):
        api.register_blueprint(module.blp)
    event_subscriptions.document_events(api.spec)
    app.register_blueprint(health.blp)
    app.register_blueprint(dashboard.blp)
    _register_docs_assets(app)
    # After every blueprint: limits the admin blueprints (those guarded by require_token) and the
    # views marked @rate_limited; a 429 goes through the API's problem handler.
    ratelimit.init_app(app, settings, problem_handler=api.handle_http_exception, admin_key=auth.rate_limit_key,
                       admin_blueprints=[bp for bp in app.blueprints.values()
                                         if auth.require_token in bp.before_request_funcs.get(None, [])])
    return app


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed cookie sessions (the dashboard's sign-in), without building the signer for a
    request that brings no session cookie -- every API call and webhook: 2% of a webhook's CPU."""

    def open_session(self, app: Flask, request) -> SecureCookieSession | None:  # type: ignore[no-untyped-def]
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()  # what the base class answers then, after building the signer
        return super().open_session(app, request)


def _require_json_body():  # type: ignore[no-untyped-def]
    """415 for a body that is not JSON on the admin API (webhooks check their own body)."""
    if request.method not in BODY_METHODS or not request.path.startswith("/api/v1/"):
        return None
    if request.routing_exception is not None:  # no such route or method: 404/405 says so
        return None
    if request.path.startswith("/api/v1/webhooks/"):
        return None
    if not request.content_length and request.headers.get("Transfer-Encoding") is None:
        return None
    if request.mimetype != "application/json":
        return problem(415, "Unsupported Media Type", "Send the body as application/json.")
    return None


def _require_patch_body():  # type: ignore[no-untyped-def]
    """A PATCH without a body changes nothing: a mistake, refused (the document requires the body)."""
    if request.method != "PATCH" or not request.path.startswith("/api/v1/"):
        return None
    if request.routing_exception is not None:  # no such route or method: 404/405 says so
        return None
    if not request.content_length and request.headers.get("Transfer-Encoding") is None:
        return problem(400, "Bad Request", "Send the changes as a JSON object.", slug="body-required")
    return None


def _no_content_no_type(response):  # type: ignore[no-untyped-def]
    """A 204 has no body, so no body media type either (flask-smorest would say application/json)."""
    if response.status_code == 204:
        response.headers.pop("Content-Type", None)
    return response


def _register_docs_assets(app: Flask) -> None:
    """Swagger UI served from the swagger-ui-bundle package: nothing is loaded from a CDN."""
    folder = swagger_ui_bundle.swagger_ui_path

    @app.get("/api/v1/docs/assets/<path:filename>")
    def swagger_assets(filename):  # type: ignore[no-untyped-def]
        return send_from_directory(folder, filename, max_age=3600)
