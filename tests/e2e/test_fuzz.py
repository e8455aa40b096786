"""Schemathesis fuzzes the real app against its own /openapi.json (loopback, bounded examples).

Every generated request, valid or not, must get a declared status (never a 5xx) with a body
that matches the declared schema. Writes are fuzzed without the admin key (401 is their
declared answer), so the shared catalogue is never changed.

Driven through hypothesis directly: schemathesis' pytest plugin (`from_fixture`) does not run
under pytest 9.
"""

from __future__ import annotations

import sys

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

if sys.version_info < (3, 11):  # requires-python is 3.10: no builtin there
    from exceptiongroup import BaseExceptionGroup  # hypothesis's own backport

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 20  # per operation and mode
# What the contract promises: no 5xx, and every answer declared (status, content type, headers,
# body). Not "every schema-valid request is accepted": a few rules (min_price <= max_price,
# LOOKALIKE_MAX_TOP_K) are checked in code and answered with a declared 422.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


def test_no_server_errors_and_responses_match_the_schema(app_url: str) -> None:
    assert app_url.startswith("http://127.0.0.1:")
    schema = schemathesis.openapi.from_url(f"{app_url}/openapi.json")
    examples: dict[str, int] = {}
    failures: dict[str, str] = {}
    for result, mode in ((r, m) for r in schema.get_all_operations() for m in GenerationMode):
        operation = result.ok()
        label = f"{operation.label} [{mode.value}]"  # valid, and deliberately invalid, requests
        examples[label] = 0

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            examples[label] += 1  # noqa: B023 - run() is called in this iteration
            case.call_and_validate(checks=CHECKS, timeout=60)

        try:
            run()
        except Unsatisfiable:
            if mode is not GenerationMode.NEGATIVE:
                raise
            del examples[label]  # nothing to get wrong: no parameters, no body
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every operation's failure
            failures[label] = f"{type(exc).__name__}: {str(exc)[:1500]}"
    print(f"fuzz examples: {sum(examples.values())} over {len(examples)} operations: {examples}")
    assert len(examples) >= 15 and sum(examples.values()) >= 15 * 5
    assert not failures, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
