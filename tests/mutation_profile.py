"""A pytest plugin for `make mutation` only (pyproject [tool.mutmut] loads it with `-p`).

Every mutant runs the same Hypothesis tests, so they must see the same examples: a random seed
would let one mutant survive by luck and the next die, and the example database would carry a
failing example from one mutant to the next. Shrinking is skipped: a mutant is killed by the
first failing example, and its minimal form is of no use to the report.

Each property test runs at most MAX_EXAMPLES generated examples (its explicit @example cases
too): a surviving mutant of the ranking runs every property test that reaches it, and at the
suite's 200-300 examples each that is minutes per mutant on a 2-core box. So the mutation score
is a lower bound on what `make test`, with its full example counts, would kill.
"""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings

MAX_EXAMPLES = 25

settings.register_profile(
    "mutation",
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    print_blob=False,
)
settings.load_profile("mutation")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test's own @settings(max_examples=...) outranks any profile, so the cap is applied to
    # the settings @given stored on the test (read when the test runs; Hypothesis 6.170).
    for item in items:
        test = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if own is not None and own.max_examples > MAX_EXAMPLES:
            test._hypothesis_internal_use_settings = settings(own, max_examples=MAX_EXAMPLES)
