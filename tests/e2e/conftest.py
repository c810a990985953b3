from __future__ import annotations

import shutil

import pytest

from service import migrate
from tests.conftest import unavailable
from harness.stack import Stack, new_workdir, run_stack


@pytest.fixture(scope="module")
def stack(fresh_database):  # type: ignore[no-untyped-def]
    if shutil.which("redis-server") is None:
        unavailable("redis-server", FileNotFoundError("redis-server not on PATH"))
    url = fresh_database()
    migrate.upgrade(url)
    workdir = new_workdir()
    yield from run_stack(Stack(database_url=url, workdir=workdir), workdir)


def call_failed(request: pytest.FixtureRequest) -> bool:
    """In a function-scoped fixture's teardown: whether the test itself failed (its logs are then
    worth printing). `rep_call` is set by the hook below; a test that failed in setup has none."""
    report = getattr(request.node, "rep_call", None)
    return report is not None and report.failed


@pytest.fixture
def fresh_stack(stack, request):  # type: ignore[no-untyped-def]
    stack.truncate()
    yield stack
    if call_failed(request):
        print(stack.logs())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    """The chaos suite's measured recovery times, printed whether the tests pass or fail."""
    from tests.e2e import test_chaos

    if test_chaos.MEASURED:
        terminalreporter.section("chaos: time to converge after each fault")
        for line in test_chaos.MEASURED:
            terminalreporter.write_line(line)
