"""The docs stand on their own, name every setting the code reads, and their examples work."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
from werkzeug.serving import make_server

from service import migrate
from service.app import create_app
from service.models import ApiToken, Organization
from service.security import hash_token, new_api_token
from service.settings import NUMBER_VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "simulator" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The product's code (the tests and their harness document their own few variables in prose).
CODE = [*(ROOT / d for d in ("service", "workers", "simulator")), ROOT / "gunicorn.conf.py", ROOT / "dev.py"]
# How the code reads the environment: os.environ.get("X"), env.get("X"), env["X"], getenv("X"),
# _int(env, "X", ...), env.setdefault("X", ...), click's envvar="X"; and the table of numeric settings
# (service/settings.py NUMBER_VARIABLES), read in a loop.
ENV_READ = re.compile(r"""(?:environ\.get|getenv|environ\[|\benv\.get|\benv\[|\benv,\s*|setdefault\(|envvar=)\s*\(?\s*["']([A-Z][A-Z0-9_]{2,})["']""")
# Standard variables of the OS, not ours to document.
NOT_OURS = {"HOME", "XDG_STATE_HOME"}


def _code_files() -> Iterator[Path]:
    for path in CODE:
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from path.rglob("*.py")


def env_vars_read() -> set[str]:
    found = {name for path in _code_files() for name in ENV_READ.findall(path.read_text())}
    return (found | set(NUMBER_VARIABLES)) - NOT_OURS


def test_docs_do_not_point_outside_the_repository():
    link = re.compile(r"\]\(([^)#\s]+)")
    for doc in DOCS:
        text = doc.read_text()
        assert "../shared" not in text and "shared/spec" not in text, doc
        for target in link.findall(text):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (doc.parent / target).resolve().is_relative_to(ROOT), (doc, target)
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_the_scan_finds_the_known_ways_of_reading_the_environment():
    # Guards the regex itself: each of these is read in a different way.
    assert {"UCMHA_LOG_LEVEL", "UCMHA_WORKER_METRICS_BIND", "DATABASE_URL", "UCMHA_SIM_SEED", "UCMHA_WEB_WORKERS",
            "UCMHA_FLEET_URL", "UCMHA_VENV", "UCMHA_UPSTREAM_READ_TIMEOUT_S"} <= env_vars_read()


def test_every_environment_variable_is_in_the_readme_table_and_env_example():
    readme_rows = "\n".join(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("|"))
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", readme_rows))
    example = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]{2,})=", (ROOT / ".env.example").read_text(), re.M))
    example |= set(re.findall(r"\(?(?:also read as|or) ([A-Z][A-Z0-9_]{2,})\)?", (ROOT / ".env.example").read_text()))
    read = env_vars_read()
    assert not read - documented, f"read by the code, missing from the README tables: {sorted(read - documented)}"
    assert not read - example, f"read by the code, missing from .env.example: {sorted(read - example)}"


# --- the node integrator's examples, run against a real server ----------------------------------

def _example_macs() -> tuple[str, str]:
    """(PEER, MAC) of the curl example: the pair the examples post as (MAC the claiming node)."""
    text = (ROOT / "docs" / "node-integration.md").read_text()
    node = re.search(r"^MAC='([0-9A-F:]{17})'", text, re.M)
    peer = re.search(r"^PEER='([0-9A-F:]{17})'", text, re.M)
    assert node and peer, "the curl example names MAC and PEER"
    return peer.group(1), node.group(1)


PRIMARY, SECONDARY = _example_macs()


def test_the_examples_do_not_post_as_a_demo_node_and_say_where_the_demo_secrets_are():
    from simulator.fleet.seed import DEMO_PAIRS

    demo = {mac for pair in DEMO_PAIRS for mac in (pair.primary_mac, pair.secondary_mac)}
    text = (ROOT / "docs" / "node-integration.md").read_text()
    used = set(re.findall(r"[0-9A-F]{2}(?::[0-9A-F]{2}){5}", text))
    assert used and not used & demo, f"the examples use the demo fleet's MACs: {sorted(used & demo)}"
    assert "var/fleet.json" in text and "last_sequence" in text


def _block(section: str, language: str) -> str:
    text = (ROOT / "docs" / "node-integration.md").read_text()
    part = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"```{language}\n(.*?)```", part, re.S)
    assert match, f"no {language} block under {section!r}"
    return match.group(1)


def _set(code: str, pattern: str, value: str) -> str:
    new, count = re.subn(pattern, lambda m: m.group(1) + value, code, flags=re.M)
    assert count == 1, f"the example no longer has exactly one line matching {pattern!r}"
    return new


@pytest.fixture
def live_api(fresh_database) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """A real HTTP server on a fresh database, with the guide's pair; yields (base URL, node secret)."""
    url = fresh_database()
    migrate.upgrade(url)
    app = create_app(Settings(env="test", database_url=url, broker_url="memory://"),
                     enqueue=lambda task, args: None, broker_check=lambda: "ok")
    factory = app.extensions["ucmha"].session_factory
    token = new_api_token()
    with factory() as session:
        org = Organization(name="docs")
        session.add(org)
        session.flush()
        session.add(ApiToken(org_id=org.id, role="admin", token_hash=hash_token(token), prefix=token[:12]))
        session.commit()
    client, headers = app.test_client(), {"Authorization": f"Bearer {token}"}
    secrets = {}
    for mac in (PRIMARY, SECONDARY):
        r = client.post("/api/v1/devices", json={"mac": mac, "model": "UCM6304", "firmware": "1.0.15.8"},
                        headers=headers)
        secrets[mac] = r.get_json()["webhook_secret"]
    r = client.post("/api/v1/ha-pairs", json={"primary_mac": PRIMARY, "secondary_mac": SECONDARY, "use_ucmrc": False},
                    headers=headers)
    assert r.status_code == 201, r.get_json()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", secrets[SECONDARY]
    server.shutdown()
    factory.kw["bind"].dispose()


def test_curl_and_python_examples_are_signed_right(live_api):
    api, secret = live_api
    script = _block("Example: curl and openssl", "sh")
    script = _set(script, r"^(SECRET=)'[^']*'", f"'{secret}'")
    script = _set(script, r"^(API=)'[^']*'", f"'{api}'")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines[-1] == "202", (done.stdout, done.stderr)
    assert '"outcome": "applied"' in lines[0] or '"outcome":"applied"' in lines[0], lines[0]

    program = _block("Example: Python", "python")
    program = _set(program, r'^(SECRET = )"[^"]*"', f'"{secret}"')
    program = _set(program, r'^(API = )"[^"]*"', f'"{api}"')
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status, _, body = done.stdout.strip().partition(" ")
    assert status == "202" and "'status': 'accepted'" in body, done.stdout

    # A wrong secret is refused: the 202s above were not accepted by accident.
    wrong = _set(_block("Example: curl and openssl", "sh"), r"^(API=)'[^']*'", f"'{api}'")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", wrong], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "401", done.stdout


def test_the_readme_says_how_to_run_ucmha_and_that_the_upstream_simulator_forgets():
    text = (ROOT / "README.md").read_text()
    support = text.split("## Support from the command line", 1)[1].split("\n## ", 1)[0]
    assert ".venv/bin/ucmha" in support and ". .venv/bin/activate" in support
    assert "--jsonl" in support and "--kind" in support
    assert "keeps its state in\n  memory" in text or "keeps its state in memory" in text
