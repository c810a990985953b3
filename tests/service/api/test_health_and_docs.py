"""/healthz, /readyz, the OpenAPI document and the self-hosted docs."""
from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from service.app import create_app
from service.db import make_engine, make_session_factory

from .helpers import assert_problem

RULE_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
NOT_IN_SPEC = ("/api/v1/openapi.json", "/api/v1/docs")


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.get_json()["status"] == "ok"


def test_readyz_when_everything_is_up(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_is_503_when_the_broker_is_down(settings, session_factory, enqueued):
    app = create_app(settings, session_factory=session_factory, enqueue=enqueued,
                     broker_check=lambda: "unreachable: X")
    r = app.test_client().get("/readyz")
    problem = assert_problem(r, 503)
    assert problem["checks"] == {"database": "ok", "broker": "unreachable: X"}
    # liveness does not depend on the broker
    assert app.test_client().get("/healthz").status_code == 200


def test_readyz_is_503_when_the_database_is_down(settings, enqueued):
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    try:
        app = create_app(settings, session_factory=make_session_factory(engine), enqueue=enqueued,
                         broker_check=lambda: "ok")
        problem = assert_problem(app.test_client().get("/readyz"), 503)
        assert problem["checks"]["broker"] == "ok"
        assert problem["checks"]["database"].startswith("unreachable")
    finally:
        engine.dispose()


def test_health_needs_no_token(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


# --- OpenAPI -------------------------------------------------------------------------------------

@pytest.fixture
def spec(client) -> dict[str, Any]:
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    return r.get_json()


def _resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        assert part in node, f"dangling $ref {ref}"
        node = node[part]
    return node


def _walk_refs(node: Any, spec: dict[str, Any]) -> int:
    count = 0
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                _resolve(spec, value)
                count += 1
            else:
                count += _walk_refs(value, spec)
    elif isinstance(node, list):
        for item in node:
            count += _walk_refs(item, spec)
    return count


def test_openapi_document_is_valid_openapi_3(spec):
    assert re.fullmatch(r"3\.(0|1)\.\d+", spec["openapi"])
    assert spec["info"]["title"] and spec["info"]["version"]
    assert isinstance(spec["paths"], dict) and spec["paths"]
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    for path, item in spec["paths"].items():
        assert path.startswith("/")
        declared = set(re.findall(r"{([^}]+)}", path))
        for key, op in item.items():
            if key == "parameters":
                continue
            assert key in methods, (path, key)
            assert op["responses"], (path, key)
            for code in op["responses"]:
                assert code == "default" or re.fullmatch(r"[1-5]\d\d", code), (path, code)
        # every templated path parameter is declared as a required path parameter
        params = item.get("parameters", []) + [p for k, op in item.items() if k != "parameters"
                                               for p in op.get("parameters", [])]
        in_path = {p["name"] for p in params if p.get("in") == "path"}
        assert declared <= in_path, (path, declared, in_path)
        assert all(p["required"] is True for p in params if p.get("in") == "path")
    assert _walk_refs(spec, spec) > 10
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


def test_openapi_lists_every_api_route(app, spec):
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule.startswith(NOT_IN_SPEC):
            continue
        path = RULE_PARAM.sub(r"{\1}", rule.rule)
        assert path in spec["paths"], f"{rule.rule} is not in the OpenAPI document"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in spec["paths"][path], f"{method} {rule.rule} is not in the OpenAPI document"


def test_openapi_documents_the_problem_schema(spec):
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "violations"} <= set(problem["properties"])
    violation = _resolve(spec, problem["properties"]["violations"]["items"]["$ref"])
    assert {"rule", "code", "detail"} <= set(violation["properties"])
    # error responses point at it
    refs = []
    for item in spec["paths"].values():
        for key, op in item.items():
            if key != "parameters":
                for code, response in op["responses"].items():
                    if code == "default" or code.startswith(("4", "5")):
                        response = _resolve(spec, response["$ref"]) if "$ref" in response else response
                        refs += [c["schema"].get("$ref") for c in response.get("content", {}).values()]
    assert refs and set(refs) == {"#/components/schemas/Problem"}


def test_openapi_describes_pagination_and_bodies(spec):
    devices = spec["paths"]["/api/v1/devices"]
    names = {p["name"] for p in devices["get"]["parameters"]}
    assert {"limit", "cursor"} <= names
    limit = next(p for p in devices["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"].get("maximum") == 500 and limit["schema"].get("default") == 50
    body = devices["post"]["requestBody"]["content"]["application/json"]["schema"]
    create = _resolve(spec, body["$ref"])
    assert {"mac", "model", "firmware"} <= set(create["required"])


# --- docs ----------------------------------------------------------------------------------------

def test_docs_are_self_hosted(client):
    r = client.get("/api/v1/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    for url in assets:
        assert not re.match(r"(https?:)?//", url), f"{url} is loaded from another host"
        assert url.startswith("/api/v1/docs/assets/"), url
    assert "/api/v1/openapi.json" in html
    for url in assets:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.get_data()) > 1000
    js = [u for u in assets if u.endswith(".js")]
    assert js and client.get(js[0]).mimetype in ("text/javascript", "application/javascript")


def test_missing_docs_asset_is_404(client):
    assert client.get("/api/v1/docs/assets/nope.js").status_code == 404
    assert client.get("/api/v1/docs/assets/../../../etc/passwd").status_code == 404


def test_docs_need_no_token(client):
    assert client.get("/api/v1/openapi.json").status_code == 200
    assert client.get("/api/v1/docs").status_code == 200


def test_database_in_readyz_is_the_apps(database_url, settings, enqueued):
    """readyz asks the database the app was built with (here: the test database via a real engine)."""
    engine = sa.create_engine(database_url)
    try:
        app = create_app(settings, session_factory=sessionmaker(bind=engine), enqueue=enqueued,
                         broker_check=lambda: "ok")
        assert app.test_client().get("/readyz").status_code == 200
    finally:
        engine.dispose()


def test_the_pair_documents_its_procedure(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    procedure = schemas["Pair"]["properties"]["procedure"]
    # A nullable nested object is written out inline: the object's own properties, or null.
    assert procedure["nullable"] is True
    documented = procedure["properties"]
    assert {"kind", "state", "steps", "next_step", "case", "stage", "from", "to"} <= set(documented)
