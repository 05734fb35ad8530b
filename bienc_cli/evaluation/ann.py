"""`bienc eval --ann`: how much the HNSW graph loses against exact search.

Every query is searched exactly (brute force over the stored vectors) and through the graph
at a ladder of ``ef``, and the document metrics are scored on the exact rankings too.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from bienc_cli.evaluation.metrics import mean_scores, score_query
from bienc_cli.evaluation.records import AnnAudit
from bienc_cli.query import search as query
from bienc_cli.store import generations as store
from bienc_cli.store import graph
from bienc_cli.store.documents import label_documents

if TYPE_CHECKING:
    import numpy as np

EF_LADDER = (10, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def ann_recall(exact_scores: np.ndarray, found_scores: np.ndarray, k: int) -> float:
    """Mean over queries of the share of the approximate top ``k`` that belongs to the exact one.

    Rows hold cosine similarities, best first. A result counts when it scores at least the
    exact k-th similarity (less 1e-5), as ann-benchmarks counts by distance threshold: two
    identical chunks (a copied file) are interchangeable, not a miss.
    """
    if len(exact_scores) == 0 or k == 0:
        return 1.0
    threshold = exact_scores[:, k - 1 : k] - 1e-5
    return float((found_scores[:, :k] >= threshold).sum() / (k * len(exact_scores)))


def exact_top(
    query_vectors: np.ndarray, labels: np.ndarray, matrix: np.ndarray, k: int, batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and cosine similarities of the ``k`` nearest chunks by brute force (unit vectors)."""
    import numpy as np

    k = min(k, len(labels))
    out_labels = np.zeros((len(query_vectors), k), dtype=np.uint64)
    out_scores = np.zeros((len(query_vectors), k), dtype=np.float32)
    for start in range(0, len(query_vectors), batch):
        scores = query_vectors[start : start + batch] @ matrix.T
        if k < scores.shape[1]:
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            part = np.tile(np.arange(scores.shape[1]), (len(scores), 1))
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        chosen = np.take_along_axis(part, order, axis=1)
        out_labels[start : start + batch] = labels[chosen]
        out_scores[start : start + batch] = np.take_along_axis(part_scores, order, axis=1)
    return out_labels, out_scores


def ann_audit(generation, eval_set, qrels, ks, depth, names, options, encoder_factory):
    """Chunk recall of the graph against exact search over the ``ef`` ladder, and the document
    metrics with exact search: the ceiling HNSW is measured against."""
    started = time.perf_counter()
    texts = list(dict.fromkeys(q.text for q in eval_set.queries))
    factory = encoder_factory or query.load_encoder  # looked up now: tests patch it there
    vectors = factory(query.index_model(generation)).encode(texts)
    labels, matrix = store.chunk_vectors(generation)
    live = len(labels)
    # The graph is measured against its own items: one per distinct vector (identical
    # chunks share one), so a copied file does not count as the graph's miss.
    items = generation.items()
    graph_live = len(items[0])
    ks_live = [k for k in ks if k <= graph_live] or [graph_live]
    fetch = min(live, max(4 * depth, 50))
    exact_labels, _ = exact_top(vectors, labels, matrix, max(fetch, max(ks_live)))
    _, exact_scores = exact_top(vectors, *items, max(ks_live))
    del items

    index = generation.load_hnsw()
    stored_ef = int(generation.manifest["hnsw"]["ef"])
    # Up to the first ef that covers every item (a search that wide is exhaustive).
    ladder = sorted({*(ef for ef in EF_LADDER if ef < graph_live), stored_ef})
    ladder = sorted({*ladder, next((ef for ef in EF_LADDER if ef >= graph_live), EF_LADDER[-1])})
    curve, min_ef = [], {f"recall@{k}": None for k in ks_live}
    stored_recall: dict[str, float] = {}
    for ef in ladder:
        point: dict[str, Any] = {"ef": ef}
        for k in ks_live:
            # the graph's own answers: no widening, no exact fallback to flatter it (knn
            # raises ef to k when lower, as hnswlib itself does)
            _, found = graph.knn(index, vectors, k, live=graph_live, fallback=False, ef=ef)
            recall = ann_recall(exact_scores, found, k)
            point[f"recall@{k}"] = recall
            if recall >= options.target_recall and min_ef[f"recall@{k}"] is None:
                min_ef[f"recall@{k}"] = max(ef, k)
            if ef == stored_ef:
                stored_recall[f"recall@{k}"] = recall
        curve.append(point)
        if all(point[f"recall@{k}"] >= 1.0 for k in ks_live) and ef >= stored_ef:
            break
    # What `bienc query -k K` gets: for document results it fetches max(4K, 50) chunks and
    # searches with ef at least that, so it may do better than the stored ef alone.
    query_ef, query_recall = {}, {}
    for k in ks_live:
        ef = max(stored_ef, min(graph_live, max(4 * k, 50)))
        _, found = graph.knn(index, vectors, k, live=graph_live, fallback=False, ef=ef)
        query_ef[f"recall@{k}"], query_recall[f"recall@{k}"] = (
            ef,
            ann_recall(exact_scores, found, k),
        )

    # Document metrics with exact search: the ceiling HNSW is measured against.
    doc_of = label_documents(generation)
    rankings = []
    for vector, row in zip(vectors, exact_labels):
        ranking = list(dict.fromkeys(doc_of[int(label)] for label in row))
        if len(ranking) < depth and len(row) < live:  # many chunks of few documents
            everything, _ = exact_top(vector[None, :], labels, matrix, live)
            ranking = list(dict.fromkeys(doc_of[int(label)] for label in everything[0]))
        rankings.append(ranking[:depth])
    del matrix
    ranking_of = dict(zip(texts, rankings))
    exact = mean_scores(
        [score_query(ranking_of[q.text], qrels[q.id], ks) for q in eval_set.queries], names
    )
    return AnnAudit(
        ks=ks_live,
        target=options.target_recall,
        stored_ef=stored_ef,
        curve=curve,
        min_ef=min_ef,
        stored_recall=stored_recall,
        meets_target=all(v >= options.target_recall for v in stored_recall.values()),
        query_ef=query_ef,
        query_recall=query_recall,
        exact=exact,
        chunks=live,
        seconds=time.perf_counter() - started,
    )
