"""The on-disk format: generations, atomic publication, locking, HNSW against exact search."""

from __future__ import annotations

import json
import logging
import multiprocessing
import time

import numpy as np
import pyarrow as pa
import pytest

from bienc_cli.errors import IncompatibleIndex, IndexCorrupt, IndexLocked, IndexNotFound
from bienc_cli.store import cache, graph, layout, lock, sidecar
from bienc_cli.store import generations as store
from tests.conftest import FakeEncoder


def _unit(rng, n, dim):
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _manifest(dim, n):
    return {
        "format": layout.FORMAT,
        "format_version": layout.FORMAT_VERSION,
        "model": {"dim": dim, "name": "fake", "path": "/nowhere", "fingerprint": "x"},
        "hnsw": {
            "space": "cosine",
            "M": 16,
            "ef_construction": 200,
            "ef": 64,
            "max_elements": n,
            "elements": n,
        },
        "counts": {"documents": n, "chunks": n, "deleted": 0, "next_label": n},
    }


def _write(root, vectors, labels=None):
    n, dim = vectors.shape
    labels = list(range(n)) if labels is None else labels
    hnsw = graph.new_hnsw(dim, n, M=16, ef_construction=200)
    hnsw.add_items(vectors, labels)
    table = sidecar.sidecar_schema().empty_table()
    table = pa.Table.from_pylist(
        [
            {"label": label, "doc_id": f"d{label}", "path": f"/p/{label}", "text": "t"}
            for label in labels
        ],
        schema=sidecar.sidecar_schema(),
    )
    with lock.write_lock(root, wait=0):
        return store.write_generation(root, hnsw, table, _manifest(dim, n))


def test_missing_index_is_reported(tmp_path):
    with pytest.raises(IndexNotFound):
        store.open_index(tmp_path / "nothing")


def test_write_then_open_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    vectors = _unit(rng, 50, 16)
    gen_dir = _write(tmp_path / "idx", vectors)
    generation = store.open_index(tmp_path / "idx")
    assert generation.dir == gen_dir
    assert generation.manifest["generation"] == 1
    files = generation.manifest["files"]
    assert set(files) == {layout.VECTORS, layout.SIDECAR, layout.LOOKUP}
    assert files[layout.VECTORS]["bytes"] == (gen_dir / layout.VECTORS).stat().st_size
    index = generation.load_hnsw()
    assert index.ef == 64  # restored from the manifest
    labels, sims = graph.knn(index, vectors[:3], 1, live=50)
    assert labels[:, 0].tolist() == [0, 1, 2]
    assert np.allclose(sims[:, 0], 1.0, atol=1e-5)  # similarity, not distance


def test_hnsw_agrees_with_exact_search(tmp_path):
    rng = np.random.default_rng(1)
    vectors = _unit(rng, 2000, 32)
    queries = _unit(rng, 50, 32)
    _write(tmp_path / "idx", vectors)
    index = store.open_index(tmp_path / "idx").load_hnsw()
    index.set_ef(200)
    labels, sims = graph.knn(index, queries, 10, live=2000)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(labels.tolist(), exact.tolist())])
    assert recall >= 0.98
    expected = np.take_along_axis(queries @ vectors.T, labels.astype(np.int64), axis=1)
    assert np.allclose(sims, expected, atol=1e-4)  # reported scores are true cosines


def test_k_is_clamped_to_live_items(tmp_path):
    rng = np.random.default_rng(2)
    vectors = _unit(rng, 5, 8)
    _write(tmp_path / "idx", vectors)
    index = store.open_index(tmp_path / "idx").load_hnsw()
    index.mark_deleted(0)
    labels, _ = graph.knn(index, vectors[:1], 100, live=4)
    assert labels.shape == (1, 4) and 0 not in labels[0]


def test_knn_answers_where_the_graph_strands_near_identical_vectors():
    # 400 vectors that differ in one or two coordinates, as chunks of boilerplate
    # documents do: hnswlib's greedy search reaches fewer than k of them and raises
    # "Cannot return the results in a contiguous 2D array" (seen in CI's crash test).
    encoder = FakeEncoder()
    texts = [f"version 3 of document {i}: " + "words " * 200 for i in range(400)]
    vectors = encoder.encode(texts)
    query = encoder.encode(["version 3 of document 7"])
    failures = 0
    for seed in range(6):
        index = graph.new_hnsw(384, 400, M=16, ef_construction=200)
        index.set_num_threads(1)
        order = np.random.default_rng(seed).permutation(400)
        index.add_items(vectors[order], order)
        index.mark_deleted(int(order[0]))
        index.set_ef(16)
        try:
            index.knn_query(query, k=200)
        except RuntimeError:
            failures += 1
        labels, sims = graph.knn(index, query, 200, live=399)
        scores = (query @ vectors.T)[0]
        scores[order[0]] = -np.inf  # deleted
        found = labels[0].astype(np.int64)
        assert len(set(found.tolist())) == 200 and int(order[0]) not in found
        assert np.allclose(sims[0], scores[found], atol=1e-5)  # true cosines, best first
        assert np.all(np.diff(sims[0]) <= 1e-6)
        assert sims[0][0] == pytest.approx(scores.max(), abs=1e-5)
    assert failures > 0  # the case the fallback exists for really happens


class _Stranded:
    """A real index whose graph search always comes up short, as a stranded graph's does."""

    def __init__(self, index):
        self._index = index

    def __getattr__(self, name):
        return getattr(self._index, name)

    def knn_query(self, *args, **kwargs):
        raise RuntimeError("Cannot return the results in a contiguous 2D array.")


def test_knn_falls_back_to_exact_search_over_live_items():
    rng = np.random.default_rng(5)
    vectors = _unit(rng, 600, 16)
    queries = _unit(rng, 300, 16)  # more than one fallback block
    index = graph.new_hnsw(16, 600, M=8, ef_construction=50)
    index.add_items(vectors, np.arange(600))
    for label in (0, 1, 2):
        index.mark_deleted(label)
    scores = queries @ vectors.T
    scores[:, :3] = -np.inf
    labels, sims = graph.knn(_Stranded(index), queries, 5, live=597)
    assert labels.astype(np.int64).tolist() == np.argsort(-scores, axis=1)[:, :5].tolist()
    assert np.allclose(sims, np.sort(scores, axis=1)[:, ::-1][:, :5], atol=1e-5)

    odd = lambda label: label % 2 == 1  # noqa: E731
    labels, _ = graph.knn(_Stranded(index), queries[:4], 5, live=298, filter=odd)
    assert labels.shape == (4, 5) and all(int(label) % 2 for label in labels.ravel())


def test_knn_without_fallback_reports_what_the_graph_could_not_find():
    rng = np.random.default_rng(6)
    vectors = _unit(rng, 100, 16)
    index = graph.new_hnsw(16, 100, M=8, ef_construction=50)
    index.add_items(vectors, np.arange(100))
    index.set_ef(20)
    labels, sims = graph.knn(_Stranded(index), vectors[:3], 5, live=100, fallback=False)
    assert (labels == graph.NOT_FOUND).all() and np.isneginf(sims).all()
    assert index.ef == 20  # measured at the ef asked for, not a widened one


def test_live_labels_leaves_out_deleted_items():
    index = graph.new_hnsw(4, 5000, M=8, ef_construction=20)
    index.add_items(np.random.default_rng(0).random((5000, 4), dtype=np.float32))
    for label in (3, 4096, 4999):
        index.mark_deleted(label)
    assert graph.live_labels(index) == [i for i in range(5000) if i not in (3, 4096, 4999)]


def test_new_generation_replaces_old_and_keeps_one_previous(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "idx"
    for _ in range(4):
        _write(root, _unit(rng, 10, 8))
    assert (root / layout.CURRENT).read_text().strip() == "g000004"
    assert sorted(p.name for p in root.glob("g*")) == ["g000003", "g000004"]


def test_the_live_generation_is_kept_not_one_that_was_never_published(tmp_path):
    import shutil

    rng = np.random.default_rng(3)
    root = tmp_path / "idx"
    _write(root, _unit(rng, 10, 8))
    # a run killed between renaming its folder into place and publishing it
    shutil.copytree(root / "g000001", root / "g000002")
    assert (root / layout.CURRENT).read_text().strip() == "g000001"
    _write(root, _unit(rng, 10, 8))
    assert (root / layout.CURRENT).read_text().strip() == "g000003"
    assert sorted(p.name for p in root.glob("g*")) == ["g000001", "g000003"]


def test_next_write_removes_exports_killed_midway(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "idx"
    _write(root, _unit(rng, 10, 8))
    models = root / layout.MODELS
    export = models / "abc123"
    killed = [models / ".abc123.tmp-x1y2", models / ".abc123-int8.tmp-z3", models / ".abc.old-q"]
    for folder in (export, *killed):
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"graph")
    _write(root, _unit(rng, 10, 8))
    assert sorted(p.name for p in models.iterdir()) == ["abc123"]


def test_failed_write_leaves_previous_generation(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    root = tmp_path / "idx"
    _write(root, _unit(rng, 10, 8))

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pyarrow.parquet.write_table", full)
    from bienc_cli.errors import StorageError

    with pytest.raises(StorageError, match="disk is full"):
        _write(root, _unit(rng, 10, 8))
    assert store.open_index(root).manifest["generation"] == 1
    assert not list(root.glob(".tmp-*"))


def test_interrupted_write_leaves_previous_generation(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    root = tmp_path / "idx"
    _write(root, _unit(rng, 10, 8))
    monkeypatch.setattr(store, "publish", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        _write(root, _unit(rng, 10, 8))
    generation = store.open_index(root)
    assert generation.manifest["generation"] == 1
    assert generation.load_hnsw().get_current_count() == 10


def test_other_format_version_is_incompatible(tmp_path):
    rng = np.random.default_rng(6)
    gen_dir = _write(tmp_path / "idx", _unit(rng, 3, 8))
    manifest = json.loads((gen_dir / layout.MANIFEST).read_text())
    manifest["format_version"] = 99
    (gen_dir / layout.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleIndex, match="format version 99"):
        store.open_index(tmp_path / "idx")


def test_truncated_graph_is_reported_as_corrupt(tmp_path):
    rng = np.random.default_rng(7)
    gen_dir = _write(tmp_path / "idx", _unit(rng, 30, 8))
    data = (gen_dir / layout.VECTORS).read_bytes()
    (gen_dir / layout.VECTORS).write_bytes(data[: len(data) // 3])
    with pytest.raises(IndexCorrupt):
        store.open_index(tmp_path / "idx").load_hnsw()


def _hold_lock(root, ready, seconds):
    with lock.write_lock(root, wait=None):
        ready.set()
        time.sleep(seconds)


def test_second_writer_waits_or_gives_up(tmp_path):
    root = tmp_path / "idx"
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(root, ready, 1.5))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(IndexLocked, match="another bienc process"):
            with lock.write_lock(root, wait=0):
                pass
        started = time.monotonic()
        with lock.write_lock(root, wait=30):  # waits for the holder to finish
            assert time.monotonic() - started > 0.2
    finally:
        holder.join()


def test_document_vectors_are_token_weighted_means(tmp_path):
    rng = np.random.default_rng(8)
    vectors = _unit(rng, 3, 8)
    hnsw = graph.new_hnsw(8, 3, M=16, ef_construction=100)
    hnsw.add_items(vectors, [0, 1, 2])
    rows = [
        {"label": 0, "doc_id": "b", "chunk": 0, "n_tokens": 30, "path": "/b"},
        {"label": 1, "doc_id": "a", "chunk": 0, "n_tokens": 10, "path": "/a"},
        {"label": 2, "doc_id": "b", "chunk": 1, "n_tokens": 10, "path": "/b"},
    ]
    table = pa.Table.from_pylist(rows, schema=sidecar.sidecar_schema())
    with lock.write_lock(tmp_path / "idx", wait=0):
        store.write_generation(tmp_path / "idx", hnsw, table, _manifest(8, 3))
    docs = store.document_vectors(store.open_index(tmp_path / "idx"), columns=["path"])
    assert docs.doc_ids == ["a", "b"] and docs.table["path"].to_pylist() == ["/a", "/b"]
    expected_b = 30 * vectors[0] + 10 * vectors[2]
    expected_b /= np.linalg.norm(expected_b)
    assert np.allclose(docs.vectors[0], vectors[1], atol=1e-5)
    assert np.allclose(docs.vectors[1], expected_b, atol=1e-5)


def test_lookup_matches_the_sidecar(tmp_path):
    rng = np.random.default_rng(9)
    _write(tmp_path / "idx", _unit(rng, 2000, 8))
    generation = store.open_index(tmp_path / "idx")
    rows = generation.lookup([5, 1999, 0, 77], columns=("doc_id", "path"))
    assert sorted(rows) == [0, 5, 77, 1999]
    assert rows[77] == {"label": 77, "doc_id": "d77", "path": "/p/77"}
    assert generation.lookup(range(1500)).keys() == set(range(1500))  # more than SQLite's 999
    scanned = [tuple(r) for r in generation.scan_lookup(("label", "doc_id"))]
    assert scanned == [(i, f"d{i}") for i in range(2000)]


def test_a_damaged_cache_shard_is_logged_and_the_others_kept(tmp_path, caplog):
    embeddings = cache.EmbeddingCache(tmp_path, "fp")
    embeddings.append(["a"], np.ones((1, 3), np.float32))
    damaged = embeddings.dir / "0-damaged.npz"
    damaged.write_bytes(b"not a shard")
    with caplog.at_level(logging.WARNING, logger="bienc_cli.store.cache"):
        vectors = embeddings.load()
    assert list(vectors) == ["a"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert str(damaged) in caplog.records[0].getMessage()


def test_the_layout_comment_names_every_file_of_an_index():
    names = [layout.CURRENT, layout.LOCK, layout.VECTORS, layout.SIDECAR, layout.LOOKUP]
    names += [layout.MANIFEST, f"{layout.MODELS}/", f"{layout.CACHE}/", layout.TMP_CURRENT]
    assert [n for n in names if n not in layout.__doc__] == []
