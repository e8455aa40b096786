"""The vectorised visibility masks against a direct transcription of milvus-lite's loops, and
the pin: the patch is written for exactly one milvus-lite version, and its upstreamable diff
(docs/milvus-lite-executor_indexed.diff) must still apply to the installed package.

No server and no database here, and lite_patch.apply() is never called in the test process (it
would patch milvus-lite for every later test); the patched server and the memtable snapshot
are tested in tests/integration/test_lite_patch.py.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import tomllib

from lookalike.store import lite_masks as lm
from lookalike.store import lite_patch


def reference_visible(sources, deletes, mt_deletes):
    """milvus-lite 3.2.2's _update_max_seqs + _build_local_mask, verbatim in spirit."""
    best: dict = {}
    for pks, seqs in sources:
        for pk, seq in zip(pks, seqs):
            if pk not in best or int(seq) > best[pk]:
                best[pk] = int(seq)
    out = []
    for pks, seqs in sources:
        mask = np.zeros(len(pks), dtype=bool)
        for i, (pk, seq) in enumerate(zip(pks, seqs)):
            seq = int(seq)
            if best.get(pk) != seq:
                continue
            if deletes.get(pk, -1) > seq:
                continue
            if pk in mt_deletes and mt_deletes[pk] > seq:
                continue
            mask[i] = True
        out.append(mask)
    return out


def random_sources(rng, n_sources, n_keys, rows, *, int_keys=False):
    """Sources with unique pks each, overlapping across sources; seqs unique overall."""
    seq = iter(rng.permutation(10 * n_sources * rows) + 1)
    sources = []
    for _ in range(n_sources):
        ids = rng.choice(n_keys, size=min(rows, n_keys), replace=False)
        pks = [int(i) for i in ids] if int_keys else [f"p{i}" for i in ids]
        sources.append((pks, np.array([next(seq) for _ in pks], dtype=np.uint64)))
    return sources


def vectorised_visible(sources, deletes, mt_deletes):
    arrays = [pa.array(p) for p, _ in sources]
    set_masks = lm.max_seq_masks(arrays, [s for _, s in sources])
    dkeys, dseqs = list(deletes), np.array(list(deletes.values()), dtype=np.uint64)
    mkeys, mseqs = list(mt_deletes), np.array(list(mt_deletes.values()), dtype=np.uint64)
    out = []
    for (pks, seqs), arr, set_mask in zip(sources, arrays, set_masks):
        index = {pk: i for i, pk in enumerate(pks)}
        m = lm.combine(set_mask,
                       lm.newer_mask(arr, seqs, dkeys, dseqs, target_index=index),
                       lm.newer_mask(arr, seqs, mkeys, mseqs, target_index=index),
                       invert=(False, True, True))
        out.append(np.ones(len(pks), dtype=bool) if m is None else m)
    return out


@pytest.mark.parametrize("int_keys", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_masks_match_milvus_lite_loops(seed: int, int_keys: bool) -> None:
    rng = np.random.default_rng(seed)
    sources = random_sources(rng, n_sources=4, n_keys=300, rows=120, int_keys=int_keys)
    all_pks = sorted({pk for pks, _ in sources for pk in pks}, key=str)
    max_seq = int(max(s.max() for _, s in sources))
    pick = rng.choice(len(all_pks), size=60, replace=False)
    deletes = {all_pks[i]: int(rng.integers(1, max_seq + 2)) for i in pick[:40]}
    mt_deletes = {all_pks[i]: int(rng.integers(1, max_seq + 2)) for i in pick[30:]}
    want = reference_visible(sources, deletes, mt_deletes)
    got = vectorised_visible(sources, deletes, mt_deletes)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)


def test_untouched_segments_need_no_mask() -> None:
    a, b = pa.array(["a", "b"]), pa.array(["c", "d"])
    assert lm.max_seq_masks([a, b], [np.array([1, 2]), np.array([3, 4])]) == [None, None]


def test_equal_seqs_never_shadow_each_other() -> None:
    # milvus-lite keeps both rows when two sources hold the same (pk, seq): so do we.
    masks = lm.max_seq_masks([pa.array(["a", "b"]), pa.array(["a"])],
                             [np.array([5, 1], dtype=np.uint64), np.array([5], dtype=np.uint64)])
    assert masks == [None, None]
    assert lm.newer_mask(pa.array(["a"]), np.array([5]), ["a"], np.array([5])) is None


@pytest.mark.parametrize("strategy", ["probe_target", "probe_keys", "arrow"])
def test_newer_mask_strategies_agree(strategy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    target = [f"k{i}" for i in rng.permutation(500)]
    tseqs = rng.integers(1, 1000, size=500).astype(np.uint64)
    keys = [f"k{i}" for i in rng.choice(800, size=200, replace=False)]
    kseqs = rng.integers(1, 1000, size=200).astype(np.uint64)
    kmap = dict(zip(keys, kseqs.tolist()))
    want = np.array([kmap.get(pk, -1) > int(s) for pk, s in zip(target, tseqs)])
    tindex = {pk: i for i, pk in enumerate(target)}
    kindex = {pk: j for j, pk in enumerate(keys)}
    if strategy == "probe_target":
        got = lm.newer_mask(pa.array(target), tseqs, keys, kseqs, target_index=tindex)
    elif strategy == "probe_keys":
        got = lm.newer_mask(pa.array(target), tseqs, keys, kseqs, key_index=kindex)
    else:
        monkeypatch.setattr(lm, "DICT_PROBE_LIMIT", 0)
        got = lm.newer_mask(pa.array(target), tseqs, keys, kseqs,
                            target_index=tindex, key_index=kindex)
    np.testing.assert_array_equal(want, got)


def test_combine() -> None:
    t, f = np.array([True, True]), np.array([True, False])
    assert lm.combine(None, None) is None
    assert lm.combine(t, None) is None  # all visible collapses to None
    np.testing.assert_array_equal(lm.combine(t, f), f)
    np.testing.assert_array_equal(lm.combine(t, f, invert=(False, True)), ~f)


def test_cosine_topk_matches_milvus_lite_brute_force() -> None:
    from milvus_lite.index.brute_force import BruteForceIndex  # unpatched in this process

    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((400, 24)).astype(np.float32)
    vecs[5] = 0.0  # zero vector: distance 1 in both
    queries = rng.standard_normal((3, 24)).astype(np.float32)
    valid = rng.random(400) > 0.3
    for mask in (None, valid):
        want_ids, want_d = BruteForceIndex(vecs, "COSINE").search(queries, 15, valid_mask=mask)
        got_ids, got_d = lm.cosine_topk(queries, vecs, lm.inverse_norms(vecs), 15, mask)
        np.testing.assert_array_equal(want_ids, got_ids)
        np.testing.assert_allclose(want_d, got_d, atol=1e-5)
    # Fewer valid rows than k: padded like BruteForceIndex.
    few = np.zeros(400, dtype=bool)
    few[[1, 2]] = True
    ids, d = lm.cosine_topk(queries, vecs, lm.inverse_norms(vecs), 5, few)
    assert set(ids[0, :2]) == {1, 2} and (ids[:, 2:] == -1).all() and np.isinf(d[:, 2:]).all()


def test_other_versions_run_unpatched(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setattr(lite_patch, "installed_version", lambda: "3.2.3")
    with caplog.at_level(logging.WARNING, logger=lite_patch.__name__):
        assert lite_patch.apply() is False
    assert "not 3.2.2" in caplog.text and not lite_patch.is_applied()


def test_env_switch_turns_patch_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lite_patch.ENV_SWITCH, "0")
    assert lite_patch.apply() is False and not lite_patch.is_applied()


REPO = Path(__file__).resolve().parents[2]
UPGRADE = ("the milvus-lite search patch is written for milvus-lite {want} and would not be "
           "applied to {got}: the server would run unpatched (correct, but search cost grows "
           "with the rows stored). Before changing the pin, follow docs/milvus-lite-patch.md "
           "('When milvus-lite changes'): re-check lookalike/store/lite_executor.py against the "
           "new executor_indexed.py, regenerate the diff, then move SUPPORTED_VERSION and "
           "constraints.txt together.")


def test_the_installed_milvus_lite_is_the_one_the_patch_is_for() -> None:
    """Fails loudly on an upgrade (or a resolver that ignored constraints.txt): the server
    itself only logs a warning and runs unpatched, which no other test would notice."""
    got = lite_patch.installed_version()
    assert got == lite_patch.SUPPORTED_VERSION, UPGRADE.format(want=lite_patch.SUPPORTED_VERSION,
                                                               got=got)


def test_the_pin_in_constraints_is_the_patched_version() -> None:
    pins = re.findall(r"^milvus-lite==(\S+)", (REPO / "constraints.txt").read_text(), re.MULTILINE)
    assert pins == [lite_patch.SUPPORTED_VERSION], UPGRADE.format(
        want=lite_patch.SUPPORTED_VERSION, got=pins)


def test_pyproject_allows_exactly_the_patched_version() -> None:
    """The versions a user can install are the versions the patch knows."""
    from packaging.requirements import Requirement

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (req,) = [Requirement(d) for d in deps if Requirement(d).name == "milvus-lite"]
    assert str(req.specifier) == f"=={lite_patch.SUPPORTED_VERSION}", UPGRADE.format(
        want=lite_patch.SUPPORTED_VERSION, got=req.specifier)


def test_the_upstream_diff_still_applies_to_the_installed_package(tmp_path: Path) -> None:
    """docs/milvus-lite-executor_indexed.diff is kept current: `git apply --check` against a
    copy of the installed milvus_lite package (the diff's paths are relative to site-packages)."""
    diff = REPO / "docs" / "milvus-lite-executor_indexed.diff"
    spec = importlib.util.find_spec("milvus_lite")
    assert spec is not None and spec.origin is not None
    shutil.copytree(Path(spec.origin).parent, tmp_path / "milvus_lite",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.so.*", "lib", "bin"))
    touched = set(re.findall(r"^\+\+\+ b/(\S+)", diff.read_text(), re.MULTILINE))
    assert touched and all((tmp_path / f).is_file() for f in touched), touched
    out = subprocess.run(["git", "apply", "--check", "-v", str(diff)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, ("the upstream diff no longer applies to the installed "
                                 f"milvus-lite:\n{out.stderr}")
