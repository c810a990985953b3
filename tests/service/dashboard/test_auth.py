"""Sign-in with an API token, the session cookie, revocation, logout and CSRF."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from service.models import ApiToken, DashboardSession, Event, utcnow

from service.dashboard.auth import MAX_SESSION_AGE_S

from .helpers import CSRF_INPUT, csrf_of, post, sign_in


def test_dashboard_requires_sign_in(client):
    r = client.get("/dashboard")
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/dashboard/login?next=/dashboard")
    page = client.get("/dashboard/login")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="token"' in html and CSRF_INPUT.search(html)


def test_sign_in_with_a_good_token(client, tenant):
    r = sign_in(client, tenant.support_token)
    assert r.status_code == 303 and r.headers["Location"] == "/dashboard"
    page = client.get("/dashboard")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert tenant.name in html and 'data-testid="role">support<' in html


def test_session_cookie_is_httponly_lax_and_holds_no_token(app, client, tenant):
    r = sign_in(client, tenant.admin_token)
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    assert tenant.admin_token not in value
    data = app.session_interface.get_signing_serializer(app).loads(value)
    assert set(data["dashboard"]) == {"key"} and len(data["dashboard"]["key"]) >= 32
    assert tenant.admin_token not in repr(data)


def test_sign_in_with_a_bad_token(client):
    r = sign_in(client, "ucmha_not-a-real-token")
    assert r.status_code == 401
    assert "not valid or has been revoked" in r.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302


def test_sign_in_with_an_empty_or_huge_token(client):
    assert sign_in(client, "").status_code == 401
    assert sign_in(client, "x" * 5000).status_code == 401


def test_sign_in_with_a_revoked_token(client, tenant, db_session):
    db_session.execute(update(ApiToken).where(ApiToken.org_id == tenant.org_id, ApiToken.role == "admin")
                       .values(revoked_at=utcnow()))
    db_session.commit()
    r = sign_in(client, tenant.admin_token)
    assert r.status_code == 401
    assert client.get("/dashboard").status_code == 302


def test_revoking_the_token_ends_the_session(client, tenant, db_session):
    assert sign_in(client, tenant.admin_token).status_code == 303
    assert client.get("/dashboard").status_code == 200
    db_session.execute(update(ApiToken).where(ApiToken.org_id == tenant.org_id, ApiToken.role == "admin")
                       .values(revoked_at=utcnow()))
    db_session.commit()
    r = client.get("/dashboard")
    assert r.status_code == 302 and "/dashboard/login" in r.headers["Location"]
    login = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "token was revoked" in login


def test_a_tampered_cookie_is_no_session(client, tenant):
    sign_in(client, tenant.admin_token)
    client.set_cookie("session", "eyJkYXNoYm9hcmQiOnsidG9rZW5faWQiOjF9fQ.forged.signature")
    assert client.get("/dashboard").status_code == 302


def test_logout(client, tenant):
    sign_in(client, tenant.admin_token)
    r = post(client, "/dashboard/logout")
    assert r.status_code == 303 and r.headers["Location"] == "/dashboard/login"
    assert client.get("/dashboard").status_code == 302


def _cookie(client) -> str:  # type: ignore[no-untyped-def]
    return client.get_cookie("session").value


def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(app, client, tenant, seeder, db_session):
    pair = seeder.pair(tenant.admin(), domain="signed-out.example.com")
    sign_in(client, tenant.admin_token)
    stolen, csrf = _cookie(client), csrf_of(client)
    assert post(client, "/dashboard/logout").status_code == 303

    replay = app.test_client()
    replay.set_cookie("session", stolen)
    r = replay.get("/dashboard")
    assert r.status_code == 302 and "/dashboard/login" in r.headers["Location"]
    replay.set_cookie("session", stolen)
    assert post(replay, f"/dashboard/pairs/{pair['id']}/resync", csrf=csrf).status_code == 401
    assert db_session.execute(select(func.count()).select_from(Event).where(
        Event.pair_id == pair["id"], Event.kind == "resync_requested")).scalar_one() == 0


def test_signing_out_ends_that_session_only(app, tenant):
    first, second = app.test_client(), app.test_client()
    sign_in(first, tenant.admin_token)
    sign_in(second, tenant.admin_token)
    post(first, "/dashboard/logout")
    assert first.get("/dashboard").status_code == 302
    assert second.get("/dashboard").status_code == 200


def test_revoking_the_token_ends_all_of_its_sessions(app, tenant, session_factory):
    from service.commands import tenancy
    from service.commands.context import CommandContext

    clients = [app.test_client() for _ in range(3)]
    for c in clients:
        sign_in(c, tenant.admin_token)
        assert c.get("/dashboard").status_code == 200
    session = session_factory()
    token_id = session.execute(select(ApiToken.id).where(ApiToken.org_id == tenant.org_id,
                                                         ApiToken.role == "admin")).scalar_one()
    ctx = CommandContext(session=session, settings=app.extensions["ucmha"].settings, org_id=None,
                         actor="cli", enqueue=lambda *_: None)
    tenancy.revoke_token(ctx, token_id)
    assert session.execute(select(func.count()).select_from(DashboardSession)
                           .where(DashboardSession.token_id == token_id)).scalar_one() == 0
    session.close()
    for c in clients:
        assert c.get("/dashboard").status_code == 302


def test_a_session_ends_after_its_maximum_age(client, tenant, db_session):
    sign_in(client, tenant.admin_token)
    db_session.execute(update(DashboardSession).values(
        created_at=utcnow() - timedelta(seconds=MAX_SESSION_AGE_S + 1)))
    db_session.commit()
    assert client.get("/dashboard").status_code == 302


def test_signing_in_again_ends_the_previous_session(app, client, tenant):
    sign_in(client, tenant.admin_token)
    old = _cookie(client)
    assert post(client, "/dashboard/login", {"token": tenant.support_token}).status_code == 303
    replay = app.test_client()
    replay.set_cookie("session", old)
    assert replay.get("/dashboard").status_code == 302


def test_logout_needs_csrf(client, tenant):
    sign_in(client, tenant.admin_token)
    assert post(client, "/dashboard/logout", csrf="wrong").status_code == 400
    assert client.get("/dashboard").status_code == 200


def test_sign_in_form_needs_csrf(client, tenant):
    client.get("/dashboard/login")
    r = client.post("/dashboard/login", data={"token": tenant.admin_token})
    assert r.status_code == 400
    assert "expired" in r.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302
    r = client.post("/dashboard/login", data={"token": tenant.admin_token, "csrf_token": "forged" * 8})
    assert r.status_code == 400


def test_sign_in_rotates_the_csrf_token(client, tenant):
    before = csrf_of(client)
    sign_in(client, tenant.admin_token)
    assert csrf_of(client) != before


def test_write_posts_need_csrf(admin_client, seeder, tenant, enqueued):
    pair = seeder.pair(tenant.admin(), domain="csrf.example.com")
    enqueued.calls.clear()
    for csrf in ("", "wrong-token"):
        r = post(admin_client, f"/dashboard/pairs/{pair['id']}/resync", csrf=csrf)
        assert r.status_code == 400
        assert "security token" in r.get_data(as_text=True)
    r = admin_client.post(f"/dashboard/pairs/{pair['id']}/resync")
    assert r.status_code == 400
    assert enqueued.calls == []


def test_unauthenticated_post_is_401(client, seeder, tenant):
    pair = seeder.pair(tenant.admin())
    r = post(client, f"/dashboard/pairs/{pair['id']}/resync")
    assert r.status_code == 401


def test_next_goes_back_inside_the_dashboard_only(client, tenant):
    r = sign_in(client, tenant.admin_token, next="/dashboard/pairs/1")
    assert r.headers["Location"] == "/dashboard/pairs/1"
    post(client, "/dashboard/logout")
    for evil in ("https://evil.example/", "//evil.example/dashboard", "/\\evil.example", "/api/v1/devices"):
        r = sign_in(client, tenant.admin_token, next=evil)
        assert r.headers["Location"] == "/dashboard", evil
        post(client, "/dashboard/logout")


def test_signed_in_visit_to_login_goes_to_the_list(admin_client):
    r = admin_client.get("/dashboard/login")
    assert r.status_code == 302 and r.headers["Location"] == "/dashboard"


def test_security_headers_and_static_assets(admin_client):
    r = admin_client.get("/dashboard")
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Cache-Control"] == "no-store"
    html = r.get_data(as_text=True)
    assert "http://" not in html.replace("http://localhost", "") and "https://" not in html  # no CDN, no web fonts
    css = admin_client.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert "@import" not in css.get_data(as_text=True) and "url(http" not in css.get_data(as_text=True)
    js = admin_client.get("/dashboard/static/dashboard.js")
    assert js.status_code == 200
