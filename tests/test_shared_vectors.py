"""Identical vectors share one graph item (#14 item 16b): many identical items would trap
the greedy HNSW search among them, so above EXACT_SEARCH_LIMIT a query could return k
wrong items. These tests patch the limit to 0 so that every search goes through the graph."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from bienc_cli.cli.main import app
from bienc_cli.indexing.request import IndexRequest, IndexSettings
from bienc_cli.indexing.run import run_index
from bienc_cli.indexing.verify import verify_index
from bienc_cli.query.search import QueryOptions, search
from bienc_cli.store import generations as store
from bienc_cli.store import layout
from bienc_cli.store.graph import exact_knn, new_hnsw

runner = CliRunner()
TENNIS = "A note at the bottom of a very deep folder about tennis."


@pytest.fixture
def graph_only(monkeypatch):
    """Every search through the graph, none exact."""
    monkeypatch.setattr("bienc_cli.store.graph.EXACT_SEARCH_LIMIT", 0)


def _issue_corpus(tmp_path):
    """The issue's shape: ~900 identical chunks of one repeated word beside a few files."""
    corpus = tmp_path / "corpus"
    deep = corpus / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    (corpus / "repeated.txt").write_text(("tennis " * 150_000).strip())
    (deep / "note.txt").write_text(TENNIS + "\n")
    (corpus / "bread.txt").write_text("Bread dough needs flour, water, salt and yeast.\n")
    (corpus / "rockets.txt").write_text("Rockets burn fuel to reach orbit.\n")
    return corpus


def _index(root, *sources, **kwargs):
    return run_index(IndexRequest(root=root, sources=[str(s) for s in sources], **kwargs))


def _query(index, text, *args):
    result = runner.invoke(
        app,
        ["query", text, "-i", str(index), "-f", "json", *args],
        catch_exceptions=False,
    )
    return json.loads(result.stdout)


def _verified(root):
    result = verify_index(root, check_model=False)
    assert result.ok, [c for c in result.checks if not c.ok]
    return store.open_index(root)


def test_repeated_word_file_does_not_trap_the_graph(tmp_path, fake_encoder, graph_only):
    index = tmp_path / "idx"
    _index(index, _issue_corpus(tmp_path))
    (hit,) = _query(index, TENNIS.lower().rstrip("."), "-k", "1")
    assert hit["path"].endswith("note.txt") and hit["score"] > 0.9


def test_graph_holds_one_item_per_distinct_vector(tmp_path, fake_encoder):
    index = tmp_path / "idx"
    _index(index, _issue_corpus(tmp_path))
    generation = _verified(index)
    table = generation.read_sidecar(columns=["text", "vector_label"])
    distinct = len(np.unique(fake_encoder.encode(table["text"].to_pylist()), axis=0))
    labels, _ = generation.items()
    assert generation.live_count > 600 and len(labels) == distinct == generation.vector_count
    assert distinct < 10
    assert set(labels.tolist()) == set(table["vector_label"].to_pylist())


def test_a_hit_lists_every_chunk_that_shares_its_vector(tmp_path, fake_encoder, graph_only):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (corpus / name).write_text("Copied license header, all rights reserved.\n")
    (corpus / "other.txt").write_text("Rockets burn fuel to reach orbit.\n")
    index = tmp_path / "idx"
    _index(index, corpus)
    assert _verified(index).vector_count == 2
    hits = _query(index, "license header rights reserved", "--chunks", "-k", "3")
    assert sorted(h["path"].rsplit("/", 1)[1] for h in hits) == ["a.txt", "b.txt", "c.txt"]
    assert len({h["score"] for h in hits}) == 1
    documents = _query(index, "license header rights reserved", "-k", "4")
    assert [d["path"].rsplit("/", 1)[1] for d in documents][3:] == ["other.txt"]
    # a filter that lets through only some chunks of an item returns exactly those
    (hit,) = _query(index, "license header rights reserved", "--path", "b.txt")
    assert hit["path"].endswith("b.txt")


def test_top_hit_equals_exact_search_on_indexes_with_duplicate_clusters(
    tmp_path, fake_encoder, graph_only
):
    """Seeded random small indexes with planted clusters of identical files: the top hit of a
    query through the graph has the score of an exact search over every chunk."""
    words = "alpha beta gamma delta river stone cloud fire tennis bread orbit salt".split()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        corpus = tmp_path / f"corpus{seed}"
        corpus.mkdir()
        texts = [" ".join(rng.choice(words, rng.integers(1, 8))) for _ in range(12)]
        for i, text in enumerate(texts):
            copies = int(rng.integers(20, 120)) if i < rng.integers(1, 4) else 1
            for copy in range(copies):
                (corpus / f"f{i}-{copy}.txt").write_text(text)
        index = tmp_path / f"idx{seed}"
        _index(index, corpus, settings=IndexSettings(ef=8))  # a narrow search
        generation = _verified(index)
        queries = [" ".join(rng.choice(words, 3)) for _ in range(10)]
        found = search(index, queries, QueryOptions(k=1, chunks=True))
        candidates = store.chunk_vectors(generation)
        _, exact = exact_knn(candidates, fake_encoder.encode(queries), 1)
        scores = [hits[0].score for hits in found]
        np.testing.assert_allclose(scores, exact[:, 0], atol=1e-5, err_msg=f"seed {seed}")


def test_incremental_runs_keep_items_and_chunks_in_step(tmp_path, fake_encoder, graph_only):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    header = "Copied license header, all rights reserved.\n"
    (corpus / "a.txt").write_text(header)
    (corpus / "other.txt").write_text("Rockets burn fuel to reach orbit.\n")
    index = tmp_path / "idx"
    no_compaction = IndexSettings(compact_ratio=1.0)
    _index(index, corpus, settings=no_compaction)

    def state():
        generation = _verified(index)
        counts = generation.manifest["counts"]
        hits = _query(index, header, "--chunks", "-k", "5")
        paths = sorted(h["path"].rsplit("/", 1)[1] for h in hits if h["score"] > 0.99)
        return counts["chunks"], counts["vectors"], counts["deleted"], paths

    assert state() == (2, 2, 0, ["a.txt"])
    (corpus / "b.txt").write_text(header)  # another member of the same item
    report = _index(index, corpus, settings=no_compaction)
    assert report.chunks_reused == 1 and report.chunks_encoded == 0
    assert state() == (3, 2, 0, ["a.txt", "b.txt"])
    (corpus / "a.txt").unlink()  # the item's first chunk goes; b.txt still uses it
    _index(index, corpus, settings=no_compaction)
    assert state() == (2, 2, 0, ["b.txt"])
    (corpus / "a.txt").write_text(header)  # back again: the same item, nothing encoded
    assert _index(index, corpus, settings=no_compaction).chunks_encoded == 0
    assert state() == (3, 2, 0, ["a.txt", "b.txt"])
    (corpus / "a.txt").unlink()
    (corpus / "b.txt").unlink()  # the last members: the item is deleted
    _index(index, corpus, settings=no_compaction)
    assert state() == (1, 1, 1, [])
    (corpus / "c.txt").write_text(header)  # a new item for the vector
    _index(index, corpus, settings=IndexSettings(compact_ratio=0.0))  # and compacted
    assert state() == (2, 2, 0, ["c.txt"])


def _to_old_format(root):
    """Rewrite the live generation as bienc wrote it before vector_label: every chunk its own
    graph item at its label, no vector_label column, no vectors count."""
    generation = store.open_index(root)
    table = generation.read_sidecar()
    vectors = store.row_vectors(generation, table["vector_label"].to_numpy())
    labels = table["label"].to_pylist()
    graph = new_hnsw(generation.dim, len(labels), M=16, ef_construction=200)
    graph.add_items(vectors, labels)
    graph.save_index(str(generation.dir / layout.VECTORS))
    pq.write_table(table.drop_columns(["vector_label"]), generation.dir / layout.SIDECAR)
    with sqlite3.connect(generation.dir / layout.LOOKUP) as db:
        db.execute("DROP INDEX chunks_vector_label")
        db.execute("ALTER TABLE chunks DROP COLUMN vector_label")
    manifest = generation.manifest
    del manifest["counts"]["vectors"]
    manifest["hnsw"].update(max_elements=len(labels), elements=len(labels))
    for name, entry in manifest["files"].items():
        data = (generation.dir / name).read_bytes()
        entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (generation.dir / layout.MANIFEST).write_text(json.dumps(manifest))
    assert "vector_label" not in pq.read_schema(generation.dir / layout.SIDECAR).names


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "graph"])
def test_an_index_written_before_vector_labels_still_works(
    tmp_path, fake_encoder, monkeypatch, exact
):
    if not exact:
        monkeypatch.setattr("bienc_cli.store.graph.EXACT_SEARCH_LIMIT", 0)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    header = "Copied license header, all rights reserved.\n"
    (corpus / "a.txt").write_text(header)
    (corpus / "b.txt").write_text(header)
    (corpus / "other.txt").write_text("Rockets burn fuel to reach orbit.\n")
    index = tmp_path / "idx"
    _index(index, corpus)
    _to_old_format(index)
    old = _verified(index)
    assert old.vector_count == old.live_count == 3  # identical chunks, separate items
    hits = _query(index, "license header rights reserved", "--chunks", "-k", "2")
    assert sorted(h["path"].rsplit("/", 1)[1] for h in hits) == ["a.txt", "b.txt"]
    (hit,) = _query(index, "rockets orbit", "-k", "1", "--path", "other.txt")
    assert hit["path"].endswith("other.txt")
    docs = store.document_vectors(old)
    assert np.allclose(docs.vectors[0], docs.vectors[1])  # dedup sees a.txt = b.txt
    (corpus / "c.txt").write_text(header)  # an incremental run on the old index
    report = _index(index, corpus)
    assert report.chunks_reused == 1 and report.chunks_encoded == 0
    assert _verified(index).vector_count == 3  # c.txt shares an old item
    (corpus / "other.txt").unlink()  # a compaction merges the old index's duplicates
    assert _index(index, corpus, settings=IndexSettings(compact_ratio=0.0)).compacted
    compacted = _verified(index)
    assert (compacted.live_count, compacted.vector_count) == (3, 1)
    (corpus / "other.txt").write_text("Rockets burn fuel to reach orbit.\n")
    _index(index, corpus, rebuild=True)  # and so does a rebuild
    rebuilt = _verified(index)
    assert (rebuilt.live_count, rebuilt.vector_count) == (4, 2)
