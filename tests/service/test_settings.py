"""Settings: fail fast in production without secrets, safe defaults in development, typed values."""
from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import DEV_ENCRYPTION_KEY, DEV_SECRET, Settings, SettingsError, load_settings

SECRETS = ("UCMHA_SECRET_KEY", "UCMHA_ENCRYPTION_KEY", "UCMHA_UPSTREAM_PASSWORD", "UCMHA_UPSTREAM_CLIENT_SECRET")
PG = "postgresql+psycopg://ucmha@db:5432/ucmha"


def production(**env: str) -> dict[str, str]:
    base = {"UCMHA_ENV": "production", "DATABASE_URL": PG, "UCMHA_SECRET_KEY": "s" * 40,
            "UCMHA_ENCRYPTION_KEY": "k" * 44, "UCMHA_UPSTREAM_PASSWORD": "p", "UCMHA_UPSTREAM_CLIENT_SECRET": "c"}
    base.update(env)
    return {k: v for k, v in base.items() if v is not None}


def test_production_without_any_secret_names_them_all():
    with pytest.raises(SettingsError) as caught:
        load_settings({"UCMHA_ENV": "production", "DATABASE_URL": PG})
    message = str(caught.value)
    for name in SECRETS:
        assert name in message


@pytest.mark.parametrize("missing", SECRETS)
def test_production_without_one_secret_names_exactly_that_one(missing):
    env = production()
    del env[missing]
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert missing in message
    assert all(other not in message for other in SECRETS if other != missing)


@pytest.mark.parametrize("missing", SECRETS)
def test_an_empty_secret_counts_as_missing(missing):
    with pytest.raises(SettingsError, match=missing):
        load_settings(production(**{missing: ""}))


def test_production_refuses_sqlite():
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        load_settings(production(DATABASE_URL="sqlite:///var/ucmha.db"))
    env = production()
    del env["DATABASE_URL"]
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        load_settings(env)


def test_production_with_everything_set():
    settings = load_settings(production())
    assert settings.is_production
    assert settings.secret_key == "s" * 40 and settings.encryption_key == "k" * 44
    assert settings.upstream_password == "p" and settings.upstream_client_secret == "c"
    assert settings.secret_key != DEV_SECRET
    assert settings.database_url == PG


def test_development_defaults(tmp_path: Path):
    settings = load_settings({"UCMHA_VAR_DIR": str(tmp_path)})
    assert settings.env == "development" and not settings.is_production
    assert settings.secret_key == DEV_SECRET and settings.encryption_key == DEV_ENCRYPTION_KEY
    assert settings.database_url == f"sqlite:///{tmp_path / 'ucmha.db'}"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path / 'celery-broker.db'}"
    defaults = Settings()
    assert settings.webhook_tolerance_s == defaults.webhook_tolerance_s == 300
    assert settings.webhook_max_bytes == 64 * 1024
    assert settings.secret_rotation_overlap_s == 24 * 3600
    assert settings.repoint_base_delay_s == defaults.repoint_base_delay_s
    assert settings.redis_url is None


def test_load_settings_reads_only_the_given_mapping(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("UCMHA_ENV", "production")
    settings = load_settings({})
    assert settings.env == "development"


def test_load_settings_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch):
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UCMHA_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", PG)
    with pytest.raises(SettingsError, match="UCMHA_SECRET_KEY"):
        load_settings()


def test_values_come_from_the_environment():
    settings = load_settings({"UCMHA_ENV": "test", "DATABASE_URL": PG, "REDIS_URL": "redis://r:6379/0",
                              "UCMHA_WEBHOOK_TOLERANCE_S": "120", "UCMHA_REPOINT_BASE_DELAY_S": "0.25",
                              "UCMHA_UPSTREAM_BASE_URL": "https://gdms.example.com/", "UCMHA_SECRET_KEY": "x" * 32})
    assert settings.env == "test"
    assert settings.redis_url == "redis://r:6379/0" and settings.broker_url == "redis://r:6379/0"
    assert settings.webhook_tolerance_s == 120 and settings.repoint_base_delay_s == 0.25
    assert settings.upstream_base_url == "https://gdms.example.com"
    assert settings.secret_key == "x" * 32


def test_explicit_broker_url_wins_over_redis():
    settings = load_settings({"REDIS_URL": "redis://r:6379/0", "UCMHA_BROKER_URL": "amqp://mq//"})
    assert settings.broker_url == "amqp://mq//"


@pytest.mark.parametrize("name", ["UCMHA_WEBHOOK_TOLERANCE_S", "UCMHA_NODE_SILENT_AFTER_S",
                                  "UCMHA_REPOINT_FAILING_AFTER", "UCMHA_STATUS_LIVENESS_WINDOW_S"])
@pytest.mark.parametrize("raw", ["abc", "1.5", "10s", "0x10"])
def test_bad_integers_are_rejected(name, raw):
    with pytest.raises(SettingsError) as caught:
        load_settings({name: raw})
    assert name in str(caught.value) and repr(raw) in str(caught.value)


@pytest.mark.parametrize("name", ["UCMHA_REPOINT_BASE_DELAY_S", "UCMHA_UPSTREAM_READ_TIMEOUT_S"])
def test_bad_numbers_are_rejected(name):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: "soon"})


def test_empty_numbers_fall_back_to_defaults():
    assert load_settings({"UCMHA_WEBHOOK_TOLERANCE_S": ""}).webhook_tolerance_s == 300


@pytest.mark.parametrize("mode", ["prod", "PRODUCTION", "staging"])
def test_unknown_mode_is_rejected(mode):
    with pytest.raises(SettingsError, match="UCMHA_ENV"):
        load_settings({"UCMHA_ENV": mode})


def test_settings_are_frozen_and_overridable():
    settings = load_settings({})
    with pytest.raises(AttributeError):
        settings.env = "production"  # type: ignore[misc]
    changed = settings.with_overrides(webhook_tolerance_s=5)
    assert changed.webhook_tolerance_s == 5 and settings.webhook_tolerance_s == 300


def test_the_event_ca_bundle_must_be_a_readable_file(tmp_path: Path):
    assert load_settings({"UCMHA_ENV": "development"}).event_ca_bundle is None
    bundle = tmp_path / "private-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert load_settings({"UCMHA_ENV": "development", "UCMHA_EVENT_CA_BUNDLE": str(bundle)}).event_ca_bundle == str(bundle)
    with pytest.raises(SettingsError, match="UCMHA_EVENT_CA_BUNDLE must name a readable file"):
        load_settings({"UCMHA_ENV": "development", "UCMHA_EVENT_CA_BUNDLE": str(tmp_path / "missing.pem")})


# --- several database hosts (a Patroni cluster) ------------------------------------------------

MULTI = "postgresql+psycopg://ucmha:pw@db1:5451,db2:5452/ucmha?target_session_attrs=read-write"


def connect_args(url: str) -> dict[str, object]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    return engine.dialect.create_connect_args(engine.url)[1]


def test_the_multi_host_database_url_reaches_libpq_with_every_host_and_port():
    settings = load_settings({"DATABASE_URL": MULTI})
    args = connect_args(settings.database_url)
    assert (args["host"], args["port"]) == ("db1,db2", "5451,5452")
    assert args["target_session_attrs"] == "read-write" and args["dbname"] == "ucmha"
    assert args["user"] == "ucmha" and args["password"] == "pw"


def test_the_multi_host_form_is_accepted_in_production_and_by_ucmha_database_url():
    assert connect_args(load_settings(production(DATABASE_URL=MULTI)).database_url)["host"] == "db1,db2"
    assert connect_args(load_settings({"UCMHA_DATABASE_URL": MULTI}).database_url)["port"] == "5451,5452"


def test_a_host_without_its_port_gets_the_default_one():
    args = connect_args(load_settings({"DATABASE_URL": "postgresql+psycopg://u@db1,db2:5433/x"}).database_url)
    assert (args["host"], args["port"]) == ("db1,db2", "5432,5433")


def test_hosts_given_both_ways_are_refused_with_both_forms_shown():
    with pytest.raises(SettingsError) as caught:
        load_settings({"DATABASE_URL": "postgresql+psycopg://u@db1:1,db2:2/x?host=db3:3"})
    assert "user@h1:5432,h2:5432/x" in str(caught.value) and "user@/x?host=h1:5432&host=h2:5432" in str(caught.value)


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://u@db1:5432/x",
    "postgresql+psycopg://u@/x?host=db1:1&host=db2:2",
    "sqlite:////tmp/x.db",
])
def test_single_host_and_sqlalchemy_forms_are_left_as_they_are(url):
    assert load_settings({"DATABASE_URL": url}).database_url == url


def test_the_migrations_take_the_multi_host_form_through_the_same_settings(tmp_path):
    from service import migrate

    url = load_settings({"DATABASE_URL": MULTI}).database_url
    assert migrate.alembic_config(url).get_main_option("sqlalchemy.url") == url


# --- Redis through Sentinel -------------------------------------------------------------------

SENTINELS = "sentinel://r1:26401;sentinel://r2:26402;sentinel://r3:26403"


def test_a_sentinel_broker_with_its_master_name_in_the_url():
    settings = load_settings({"UCMHA_BROKER_URL": SENTINELS + "?master_name=ucmha"})
    assert settings.broker_url == SENTINELS and settings.redis_sentinel_master == "ucmha"


def test_a_sentinel_broker_with_its_master_name_as_a_setting_and_a_database():
    settings = load_settings({"UCMHA_BROKER_URL": "sentinel://r1:26401;sentinel://r2:26402/3",
                              "UCMHA_REDIS_SENTINEL_MASTER": "ucmha"})
    assert settings.broker_url == "sentinel://r1:26401/3;sentinel://r2:26402/3"
    assert settings.redis_sentinel_master == "ucmha"


def test_a_sentinel_redis_url_is_the_broker_too():
    settings = load_settings({"REDIS_URL": SENTINELS + "?master_name=ucmha"})
    assert settings.redis_url == settings.broker_url == SENTINELS and settings.redis_sentinel_master == "ucmha"


def test_the_rate_limiters_form_of_sentinels_is_accepted():
    settings = load_settings({"REDIS_URL": "redis+sentinel://r1:26401,r2:26402/ucmha"})
    assert settings.redis_url == "sentinel://r1:26401;sentinel://r2:26402"
    assert settings.redis_sentinel_master == "ucmha"


@pytest.mark.parametrize("env", [
    {"UCMHA_BROKER_URL": SENTINELS},
    {"REDIS_URL": SENTINELS},
    {"UCMHA_BROKER_URL": SENTINELS + "?master_name=a", "UCMHA_REDIS_SENTINEL_MASTER": "b"},
    {"UCMHA_BROKER_URL": SENTINELS + "?master_name=a", "REDIS_URL": SENTINELS + "?master_name=b"},
])
def test_sentinels_without_exactly_one_master_name_are_refused_naming_the_setting(env):
    with pytest.raises(SettingsError, match="UCMHA_REDIS_SENTINEL_MASTER"):
        load_settings(env)


def test_a_sentinel_list_mixed_with_another_scheme_is_refused():
    with pytest.raises(SettingsError, match="sentinel://"):
        load_settings({"UCMHA_BROKER_URL": "sentinel://r1:26401;redis://r2:6379", "UCMHA_REDIS_SENTINEL_MASTER": "m"})


def test_the_broker_and_the_rate_limiter_are_built_from_the_same_sentinels():
    from service.broker import publishing_conf
    from service.observability.ratelimit import storage_location

    settings = load_settings({"REDIS_URL": "sentinel://:pw@r1:26401;sentinel://:pw@r2:26402/2",
                              "UCMHA_REDIS_SENTINEL_MASTER": "ucmha"})
    options = publishing_conf(settings)["broker_transport_options"]
    assert options["master_name"] == "ucmha"
    uri, storage_options = storage_location(settings)
    assert uri == "redis+sentinel://:pw@r1:26401,r2:26402/ucmha"
    assert storage_options["db"] == 2 and storage_options["use_replicas"] is False


def test_a_plain_redis_broker_has_no_sentinel_options():
    from service.broker import publishing_conf

    settings = load_settings({"REDIS_URL": "redis://r:6379/0"})
    assert settings.redis_sentinel_master is None
    assert "master_name" not in publishing_conf(settings)["broker_transport_options"]
