"""Searches on small indexes are exact: a graph trapped among identical vectors must not
give a wrong top hit (#14 item 16)."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from bienc_cli.cli.main import app
from bienc_cli.store import layout
from bienc_cli.store.graph import exact_knn, graph_items, knn, live_labels, new_hnsw, unit_items

runner = CliRunner()


def test_repeated_word_file_does_not_hide_the_right_document(tmp_path, fake_encoder):
    """The issue's shape: ~900 identical chunks of one repeated word beside a few files."""
    corpus = tmp_path / "corpus"
    deep = corpus / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    (corpus / "repeated.txt").write_text(("tennis " * 150_000).strip())
    (deep / "note.txt").write_text("A note at the bottom of a very deep folder about tennis.\n")
    (corpus / "bread.txt").write_text("Bread dough needs flour, water, salt and yeast.\n")
    (corpus / "rockets.txt").write_text("Rockets burn fuel to reach orbit.\n")
    index = tmp_path / "idx"
    assert runner.invoke(app, ["index", str(corpus), "-i", str(index), "-q"]).exit_code == 0
    result = runner.invoke(
        app,
        ["query", "a note at the bottom of a very deep folder about tennis", "-k", "1"]
        + ["-i", str(index), "-f", "json"],
        catch_exceptions=False,
    )
    (hit,) = json.loads(result.stdout)
    assert hit["path"].endswith("note.txt") and hit["score"] > 0.9


def _clustered(rng, n_distinct, copies, dim=16):
    """Unit vectors where a few are repeated many times (planted duplicate clusters)."""
    base = rng.normal(size=(n_distinct, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    repeat = np.ones(n_distinct, dtype=int)
    repeat[: len(copies)] = copies
    return np.repeat(base, repeat, axis=0)


def test_top_hit_equals_exact_search_with_duplicate_clusters():
    """Seeded random small indexes with planted clusters of identical vectors: the top hit of
    knn (what query and dedup use) has the exact search's score, for every query."""
    for seed in range(30):
        rng = np.random.default_rng(seed)
        copies = rng.integers(50, 400, size=rng.integers(1, 4))
        vectors = _clustered(rng, int(rng.integers(5, 60)), copies)
        rng.shuffle(vectors)
        graph = new_hnsw(vectors.shape[1], len(vectors), M=4, ef_construction=10)
        graph.add_items(vectors, np.arange(len(vectors)))
        graph.set_ef(1)
        queries = vectors[rng.integers(0, len(vectors), 20)] + rng.normal(
            scale=0.05, size=(20, vectors.shape[1])
        ).astype(np.float32)
        _, found = knn(graph, queries, 1, live=len(vectors))
        _, exact = exact_knn(unit_items(graph, np.arange(len(vectors))), queries, 1)
        np.testing.assert_allclose(found[:, 0], exact[:, 0], atol=1e-5, err_msg=f"seed {seed}")


def test_graph_items_read_the_file_as_hnswlib_does(tmp_path):
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(300, 24)).astype(np.float32)
    graph = new_hnsw(24, 300, M=16, ef_construction=50)
    graph.add_items(vectors, np.arange(1000, 1300))
    for label in (1000, 1150, 1299):
        graph.mark_deleted(label)
    path = tmp_path / layout.VECTORS
    graph.save_index(str(path))
    labels, matrix = graph_items(path, 24)
    assert sorted(labels.tolist()) == sorted(live_labels(graph))
    np.testing.assert_allclose(matrix, graph.get_items(labels, return_type="numpy"), atol=1e-6)
