"""lite_executor's pure parts against milvus-lite's own (the server-side parts run in
tests/integration/test_lite_patch.py, against an unpatched server)."""

from __future__ import annotations

import itertools
import json

import pytest
from milvus_lite.engine import projection
from milvus_lite.schema.types import CollectionSchema, DataType, FieldSchema

from lookalike.store import lite_executor

SCHEMA = CollectionSchema(fields=[
    FieldSchema("pk", DataType.VARCHAR, is_primary=True, max_length=32),
    FieldSchema("cat", DataType.VARCHAR, max_length=8),
    FieldSchema("price", DataType.FLOAT),
    FieldSchema("v", DataType.FLOAT_VECTOR, dim=2),
], enable_dynamic_field=True)

RECORDS = [
    {"pk": "a", "cat": "x", "price": 1.5, "v": [0.1, 0.2], "_seq": 3, "_partition": "_default"},
    {"pk": "b", "cat": "y", "$meta": json.dumps({"colour": "red", "cat": "shadowed"})},
    {"pk": "c", "cat": "z", "$meta": {"size": "M"}, "extra": 7, "price": 2.0},
    {"pk": "d", "$meta": "not json"},
    {"cat": "no pk"},
]


@pytest.mark.parametrize(("fields", "kind"), itertools.product(
    [None, ["*"], ["cat"], ["cat", "v"], ["pk"], ["colour"], ["cat", "size", "extra"],
     ["price", "colour"]],
    ["search", "query", "get"]))
def test_project_record_equals_milvus_lites(fields: list[str] | None, kind: str) -> None:
    plan = projection.build_projection_plan(fields, SCHEMA, api_kind=kind)
    for record in RECORDS:
        want = projection.project_record(dict(record), SCHEMA, plan)
        got = lite_executor.project_record(dict(record), SCHEMA, plan)
        assert got == want and list(got) == list(want), (fields, kind, record)
