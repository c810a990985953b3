"""The API against its own OpenAPI document, fuzzed by schemathesis: no server error, and every
answer conforms to the documented response schemas. Bounded and seeded (derandomized)."""
from __future__ import annotations

import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

EXAMPLES_PER_OPERATION = 16  # about 26 operations: a few hundred requests, well under a minute


def test_the_api_honours_its_own_openapi_document(app, tenant):  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        # Valid and invalid requests alike: bad input must get a documented 4xx, never a 500.
        @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
               | operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):  # type: ignore[no-untyped-def]
            case.call_and_validate(headers=tenant.admin(), checks=[not_a_server_error, response_schema_conformance])

        try:
            check()
        except Exception as exc:  # collected: one report naming every operation that failed
            failures[operation.label] = str(exc)[:1500]
    assert operations >= 20
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
