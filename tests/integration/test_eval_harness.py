"""The evaluation harness end to end on a small demo catalogue: real milvus-lite, packaged
models, through the HTTP API."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.config import Settings
from lookalike.embedding import ImageEmbedder, TextEmbedder
from lookalike.eval.runner import evaluate

pytestmark = pytest.mark.weights  # the harness embeds with the packaged models


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("eval")


def test_harness_reports_every_figure_and_sees_query_understanding(
        settings: Settings, embedders: tuple[ImageEmbedder, TextEmbedder], work_dir: Path) -> None:
    runs = {mode: evaluate(settings, catalogue="demo", n_products=150, work_dir=work_dir,
                           image_queries=15, ann_queries=3 if mode == "boost" else 0,
                           extra={"infer": mode}, embedders=embedders)
            for mode in ("off", "boost")}
    boost, off = runs["boost"], runs["off"]
    assert boost["text"]["queries"] >= 40  # queries with at least one matching product
    assert boost["text"]["p@10"] >= 0.8 > off["text"]["p@10"]
    assert boost["text"]["p@10_constrained"] >= 0.8
    for run in runs.values():
        assert 0 <= run["image"]["p@10"] <= 1 and run["image"]["exact_p@10"] > 0
        assert run["image"]["recall@10"] <= run["image"]["p@10"]  # 14+ relevant per category
    # Without boosts the API ranks the same vectors as exact search.
    assert off["image"]["ratio_to_exact"] >= 0.98
    assert set(boost["ann"]["buckets"]) <= {"≥50%", "10–50%", "1–10%", "<1%"}
    assert 0.5 <= boost["ann"]["overall"] <= 1


def test_a_test_split_catalogue_is_other_articles(
        settings: Settings, embedders: tuple[ImageEmbedder, TextEmbedder], work_dir: Path) -> None:
    from lookalike.eval.catalogue import build_catalogue

    train = build_catalogue(kind="demo", n_products=20, work_dir=work_dir)
    test = build_catalogue(kind="test", n_products=20, work_dir=work_dir)
    assert [p.category for p in train] != [p.category for p in test]
    assert Path(train[0].images[0]).read_bytes() != Path(test[0].images[0]).read_bytes()
